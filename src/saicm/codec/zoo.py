"""Trained models: the file format, where installed models live, and loading by name or path.

A saicm model file is a ``torch.save`` dict (loaded with ``weights_only=True``)::

    {"format": "saicm-model", "version": 2, "name": str, "arch": str, "config": dict,
     "state_dict": {...}, "hash": sha256-hex of the weights, "card": dict,
     "coding": {"padding": {"multiple", "placement", "mode"}, "scale_levels", "rounding"},
     "coded": uint8 tensor (optional)}

``coding`` is how the model pads, at what resolution its CDF tables were built (the tables
themselves are in ``state_dict`` and covered by the hash) and how decoded floats become pixels
(:class:`saicm.codec.registry.Coding`). Version-1 files have no ``coding`` and keep the coding
saicm always used for them (:data:`~saicm.codec.registry.SAICM_CODING`, with the resolution of
the tables they carry).

With ``storage="int8"`` the parameters are quantised per output channel to 8 bits and
rANS-coded (:mod:`saicm.utils.weight_coding`) into ``"coded"``, and ``"state_dict"`` keeps only
the buffers (CDF tables): for mbt2018-mean 7.7 MB (6.1 MB of coded weights, 1.6 MB of
tables) instead of 15.7 MB with float16 weights.

Installed models are found by name in, in order: the folders of ``$SAICM_MODELS``
(``os.pathsep``-separated), ``~/.cache/saicm/models``, and the models shipped inside the package.

Official LIC-TCM / SA-ICM checkpoints (a bare ``state_dict``, or one under ``"state_dict"`` as
LIC-TCM's training script saves them with optimiser state, possibly with DataParallel's
``module.`` prefix, with or without the CDF tables of ``update()``) load too, the architecture
found from their keys and shapes; they code as the authors' scripts do (the architecture's
``published`` coding; the tables they carry, else ones built at its resolution).
:func:`import_checkpoint` (``saicm models import``) installs one as a saicm model file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from compressai.models import CompressionModel
from compressai.models.base import get_scale_table

from ..errors import ModelError, SaicmError
from ..utils.io import atomic_path, read_weights_file
from .registry import (
    SAICM_CODING,
    Coding,
    Padding,
    create_model,
    get_architecture,
    list_architectures,
)
from .vbr import is_variable_rate

__all__ = [
    "DEFAULT_MODEL",
    "TrainedModel",
    "detect_architecture",
    "export_model",
    "import_checkpoint",
    "installed_models",
    "load_installed_model",
    "load_model",
    "model_dirs",
    "weights_hash",
]

FORMAT = "saicm-model"
#: Written: 2 (with ``coding``). Read: 1 and 2.
VERSION = 2
READ_VERSIONS = (1, 2)
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"
#: Buffers of CompressAI's entropy models that hold CDF tables (rebuilt by ``update()``; their
#: shapes depend on the weights and the scale table, not on the architecture).
TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")
#: The model ``saicm encode`` uses when none is named.
DEFAULT_MODEL = "sa-icm-mbt-hed-0.05"
#: How a model file keeps its parameters (see :func:`export_model`).
STORAGES = ("float32", "float16", "int8")


@dataclass
class TrainedModel:
    """A network with trained weights, ready to code (CDF tables updated, eval mode).

    Arguments:
        name: the name written into every ``.sic`` file it makes.
        arch: registered architecture name.
        config: the architecture's keyword arguments.
        net: the network.
        weights_hash: SHA-256 (hex) of the weights; ``.sic`` files carry its first 8 bytes.
        card: how it was trained (data, masks, loss, lambda, steps, results).
        path: the file it came from, if any.
        coding: padding rule, table resolution and output rounding of this model.
    """

    name: str
    arch: str
    config: dict[str, Any]
    net: CompressionModel
    weights_hash: str
    card: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    coding: Coding = SAICM_CODING

    @property
    def downsampling(self) -> int:
        """The network's total stride: ``z`` is this many times smaller than the padded image."""
        return get_architecture(self.arch).downsampling

    @property
    def padding(self) -> Padding:
        """How images are padded before coding (multiple, placement, fill)."""
        return self.coding.padding

    @property
    def scale_levels(self) -> int:
        """Scales of the Gaussian conditional's CDF tables this model codes with."""
        return _table_levels(self.net, self.path)

    @property
    def rounding(self) -> str:
        """How decoded floats become 8-bit pixels by default: ``nearest`` or ``floor``."""
        return self.coding.rounding

    @property
    def hash_prefix(self) -> bytes:
        return bytes.fromhex(self.weights_hash)[:8]


def weights_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every tensor, in name order."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def _table_levels(net: CompressionModel, path: Path | str | None) -> int:
    """Scales in the Gaussian conditional's table (0 if the network has none); raises
    :class:`ModelError` if any entropy model has no CDF tables (``update()`` never ran)."""
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional

    levels = 0
    for name, module in net.named_modules():
        if isinstance(module, (EntropyBottleneck, GaussianConditional)):
            if module._offset.numel() == 0:
                raise ModelError(f"{path}: {name} has no CDF tables")
            if isinstance(module, GaussianConditional):
                levels = int(module.scale_table.numel())
    return levels


def model_dirs() -> list[Path]:
    """Folders searched for installed models, first match wins."""
    dirs = [Path(p) for p in os.environ.get("SAICM_MODELS", "").split(os.pathsep) if p]
    dirs.append(Path.home() / ".cache" / "saicm" / "models")
    dirs.append(SHIPPED_DIR)
    return dirs


def _prepare(net: CompressionModel) -> CompressionModel:
    """Eval mode, no gradients, channels-last weights: oneDNN's convolutions run 1.5-1.7x
    faster that way on CPUs (mbt2018-mean, 768x512: benchmarks/codec_speed.py). Encoder and
    decoder both go through here, so they compute identically."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(memory_format=torch.channels_last)


def export_model(
    path: str | os.PathLike[str],
    net: CompressionModel,
    *,
    name: str,
    arch: str,
    config: dict[str, Any],
    card: dict[str, Any] | None = None,
    storage: str = "float32",
    coding: Coding | None = None,
) -> TrainedModel:
    """Write a trained network as a saicm model file (atomically) and return it loaded.

    The entropy models' CDF tables are rebuilt first (``update(force=True)``) with
    ``coding.scale_levels`` scales, so the file codes real bitstreams. ``storage`` is how
    parameters are kept: ``float32``, ``float16`` (half the size) or ``int8`` (per-channel 8-bit,
    rANS-coded: under half of float16). The tables are rebuilt from the stored (rounded) weights,
    so encoder and decoder agree. ``coding`` (default: the architecture's ``coding``) is written
    into the file.

    Raises:
        ModelError: unknown architecture or storage, an invalid name, or a padding multiple
            that is not a multiple of the network's stride.
    """
    from ..utils.weight_coding import decode_state, encode_state

    spec = get_architecture(arch)
    coding = coding or spec.coding
    _check_coding(coding, arch)
    _check_name(name)
    if storage not in STORAGES:
        raise ModelError(f"storage {storage!r}: choose {', '.join(STORAGES)}")
    params = {n for n, _ in net.named_parameters()}
    state = {
        k: v.detach().cpu().float() if k in params else v.detach().cpu().clone()
        for k, v in net.state_dict().items()
    }
    coded = None
    if storage == "float16":  # round parameters only; buffers (CDF tables) keep their precision
        state = {k: v.half().float() if k in params else v for k, v in state.items()}
    elif storage == "int8":  # the quantiles set the entropy bottleneck's range: kept exact
        coded = encode_state(
            {k: state[k] for k in params},
            bits=8,
            raw=frozenset(k for k in params if k.endswith("quantiles")),
        )
        state = {**state, **decode_state(coded)}
    fresh = create_model(arch, **config)
    fresh.load_state_dict(state)
    fresh.update(scale_table=get_scale_table(levels=coding.scale_levels), force=True)
    state = fresh.state_dict()
    if storage == "float16":
        state = {k: v.half() if k in params else v for k, v in state.items()}
    elif storage == "int8":
        state = {k: v for k, v in state.items() if k not in params}
    digest = weights_hash(_stored_weights(state, coded))
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "arch": arch,
        "config": dict(config),
        "state_dict": state,
        "hash": digest,
        "card": dict(card or {}),
        "coding": coding.to_dict(),
    }
    if coded is not None:  # a tensor: torch.save pickles bytes at ~1.5x their size
        blob["coded"] = coded_tensor(coded)
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    _load_file.cache_clear()
    return _from_blob(blob, Path(path))


def _check_name(name: str) -> None:
    if (
        not isinstance(name, str)
        or not name.strip()
        or name.startswith(".")
        or len(name.encode()) > 255
        or any(c in name for c in "/\\:" + os.sep + os.pathsep)
    ):
        raise ModelError(f"invalid model name {name!r}")


def _check_coding(coding: Coding, arch: str) -> None:
    stride = get_architecture(arch).downsampling
    if coding.padding.multiple % stride:
        raise ModelError(
            f"padding multiple {coding.padding.multiple} is not a multiple of {arch}'s stride "
            f"{stride}"
        )


def coded_tensor(coded: bytes) -> torch.Tensor:
    """Coded weights as the uint8 tensor a model file stores them in."""
    return torch.frombuffer(bytearray(coded), dtype=torch.uint8)


def _stored_weights(
    state: dict[str, torch.Tensor], coded: bytes | torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """The weights a file holds, as its hash covers them: float16 tensors as float16, coded
    (int8) parameters as they decode."""
    from ..utils.weight_coding import decode_state

    if coded is None:
        return dict(state)
    if isinstance(coded, torch.Tensor):
        coded = coded.numpy().tobytes()
    return {**state, **decode_state(coded)}


#: Largest value of an integer config entry a model file may hold (the shipped architectures use
#: at most 320): a crafted file must not make saicm build a network of terabytes.
MAX_CONFIG_INT = 1024


def _check_blob(blob: dict[str, Any], path: Path | None) -> None:
    """Types and ranges of a saicm model file's fields, before anything is built from them."""

    def bad(what: str) -> ModelError:
        return ModelError(f"{path}: not a valid saicm model file ({what})")

    name = blob.get("name")
    if not isinstance(name, str) or not 1 <= len(name.encode("utf-8", "replace")) <= 255:
        raise bad("its name must be 1 to 255 bytes of text")
    if not isinstance(blob.get("arch"), str):
        raise bad("its architecture must be a name")
    default = get_architecture(blob["arch"]).config
    config = blob.get("config") or {}
    if not isinstance(config, dict):
        raise bad("its config must be a mapping")
    for key, value in config.items():
        ref = default.get(key)
        ints = value if isinstance(value, (list, tuple)) else [value]
        if (
            key not in default
            or isinstance(ref, list) != isinstance(value, (list, tuple))
            or (isinstance(ref, list) and len(value) != len(ref))
            or not all(type(v) is int and 1 <= v <= MAX_CONFIG_INT for v in ints)
        ):
            raise bad(f"config {key!r} = {value!r}")
    state = blob.get("state_dict")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise bad("its state_dict must map names to tensors")
    if not isinstance(blob.get("hash"), str):
        raise bad("it records no hash of its weights")


def _from_blob(blob: dict[str, Any], path: Path | None) -> TrainedModel:
    _check_blob(blob, path)
    arch = blob["arch"]
    config = dict(blob.get("config") or {})
    try:
        stored = _stored_weights(blob["state_dict"], blob.get("coded"))
    except SaicmError as exc:
        raise ModelError(f"{path}: {exc}") from None
    digest = weights_hash(stored)
    state = {k: v.float() if v.dtype == torch.float16 else v for k, v in stored.items()}
    if blob["hash"] != digest:
        raise ModelError(f"{path}: weights do not match their recorded hash (file corrupted?)")
    net = create_model(arch, **config)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{path}: weights do not fit architecture {arch!r} ({first})") from None
    if is_variable_rate(net):
        try:
            net.check_anchors()
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None
    levels = _table_levels(net, path)
    if "coding" in blob:
        coding = Coding.from_dict(blob["coding"])
        if coding.scale_levels != levels:
            raise ModelError(
                f"{path}: its CDF tables have {levels} scales, its coding says "
                f"{coding.scale_levels}"
            )
    elif blob.get("version") == 1:  # written before files recorded their coding
        coding = replace(SAICM_CODING, scale_levels=levels)
    else:
        raise ModelError(f"{path}: model file has no coding settings")
    _check_coding(coding, arch)
    return TrainedModel(
        blob["name"], arch, config, _prepare(net), digest, blob.get("card") or {}, path, coding
    )


def _checkpoint_state(blob: Any, path: Path) -> dict[str, torch.Tensor]:
    """The network's state in a foreign checkpoint: a bare ``state_dict``, or one under
    ``"state_dict"`` (LIC-TCM's training layout adds ``epoch``, ``loss`` and optimiser state),
    DataParallel's ``module.`` prefix removed, CompressAI's old entropy-bottleneck names mapped."""
    from compressai.models.base import remap_old_keys

    if not isinstance(blob, dict):
        raise ModelError(f"{path}: not a model file or checkpoint")
    state = blob.get("state_dict", blob)
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        keys = ", ".join(sorted(map(str, blob))[:6])
        raise ModelError(
            f"{path}: not a model file or checkpoint (no state_dict of tensors; keys: {keys})"
        )
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    for module in sorted({k.split(".")[0] for k in state if "entropy_bottleneck" in k}):
        state = dict(remap_old_keys(module, state))
    return state


#: Names and shapes of each architecture's tensors (default config, CDF tables left out).
_SIGNATURES: dict[str, dict[str, tuple[int, ...]]] = {}


def _signature(arch: str, built: dict[str, CompressionModel] | None = None) -> dict:
    """``arch``'s tensor names and shapes; a network built to find them is left in ``built``."""
    if arch not in _SIGNATURES:
        with torch.no_grad():
            net = create_model(arch)
        _SIGNATURES[arch] = {
            k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith(TABLE_BUFFERS)
        }
        if built is not None:
            built[arch] = net
    return _SIGNATURES[arch]


def detect_architecture(
    state: dict[str, torch.Tensor],
    what: str = "checkpoint",
    built: dict[str, CompressionModel] | None = None,
) -> str:
    """The registered architecture (default configuration) whose tensor names and shapes are
    exactly those of ``state`` (CDF tables left out). Networks built on the way (the first time
    an architecture is looked at) are left in ``built``, to be reused.

    Raises:
        ModelError: none matches (the message names the closest and how it differs), or several.
    """
    got = {k: tuple(v.shape) for k, v in state.items() if not k.endswith(TABLE_BUFFERS)}
    matches, misses = [], []
    for arch in list_architectures():
        sig = _signature(arch, built)
        if sig == got:
            matches.append(arch)
            continue
        diff = sorted(set(sig) ^ set(got)) + sorted(
            k for k in set(sig) & set(got) if sig[k] != got[k]
        )
        misses.append((len(diff), arch, diff[0]))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ModelError(f"{what}: fits several architectures ({', '.join(matches)}); name one")
    n, arch, key = min(misses)
    sig = _signature(arch)
    detail = (
        f"{key}: {got.get(key, 'missing')} here, {sig.get(key, 'absent')} in {arch}"
        if key in got and key in sig
        else f"{key} {'only here' if key in got else 'missing'}"
    )
    raise ModelError(
        f"{what}: no registered architecture has these tensors (closest: {arch}, {n} differ, "
        f"e.g. {detail})"
    )


#: Official releases recognised from a checkpoint's file name: pattern, the names the release
#: publishes, the release, what the name says (SA-ICM's param_details.txt: icm_78 = alpha 0.78,
#: lambda 0.05) and the default installed name.
_RELEASES = (
    (
        re.compile(r"^icm_(\d\d)$"),
        ("icm_78", "icm_93"),
        "SA-ICM (Shindo et al., ICIP 2024) release: github.com/final-0/SA-ICM, weights "
        "https://drive.google.com/drive/folders/1J7rsrEFn20zLginAcyDzY5DdCMbYamgC",
        lambda m: {"alpha": int(m[1]) / 100, "lmbda": 0.05},
        lambda m, arch: f"sa-icm-{arch}-alpha{int(m[1]) / 100:g}",
    ),
    (
        re.compile(r"^sa-icm_(\d+(?:\.\d+)?)$"),
        tuple(f"sa-icm_0.0{i}" for i in range(2, 7)),
        "SA-ICM v2 release: github.com/final-0/SA-ICM-v2, weights "
        "https://drive.google.com/drive/folders/1s7SwxFbDiI0CH0jLYw35edyPPYpIVUoK",
        lambda m: {"lmbda": float(m[1])},
        lambda m, arch: f"sa-icm-{arch}-{float(m[1]):g}",
    ),
)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".pth.tar", ".pth", ".pt", ".tar", ".ckpt"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _describe_checkpoint(path: Path, arch: str, sha256: str) -> tuple[str, dict[str, Any]]:
    """Default model name and card of a foreign checkpoint, from its file name. A release is
    named only for the file names it publishes; other names of the same pattern give their
    alpha / lambda and say they only look like it."""
    stem = _stem(path)
    card: dict[str, Any] = {
        "source": f"foreign checkpoint {path.name}",
        "file": path.name,
        "sha256": sha256,
        "arch": arch,
    }
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", stem) or "checkpoint"
    for pattern, published, release, facts, naming in _RELEASES:
        m = pattern.match(stem)
        if m:
            card.update(facts(m))
            if stem in published:
                card["source"] = release
            else:
                card["source"] += f" (named like the files of the {release.split(':')[0]})"
            name = naming(m, arch)
            break
    return name.lstrip(".") or "checkpoint", card


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _from_checkpoint(blob: Any, path: Path, arch: str | None) -> tuple[TrainedModel, dict]:
    """A foreign checkpoint as a model coding as its authors' scripts do, and its state (float32
    parameters and the CDF tables it codes with) as a model file stores it."""
    state = _checkpoint_state(blob, path)
    built: dict[str, CompressionModel] = {}
    arch = arch or detect_architecture(state, str(path), built)
    spec = get_architecture(arch)
    coding = spec.published or spec.coding
    net = built.pop(arch, None) or create_model(arch)  # its random weights are all replaced
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{path}: not a {arch!r} checkpoint ({first})") from None
    # As the authors' update(): tables the checkpoint carries are kept (force=False), missing
    # ones are built at the published resolution.
    net.update(scale_table=get_scale_table(levels=coding.scale_levels), force=False)
    coding = replace(coding, scale_levels=_table_levels(net, path))
    stored = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    digest = weights_hash(stored)
    name, card = _describe_checkpoint(path, arch, _file_sha256(path))
    config = dict(spec.config)
    model = TrainedModel(name, arch, config, _prepare(net), digest, card, path, coding)
    return model, stored


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


@functools.lru_cache(maxsize=8)
def _load_file(path: Path, arch: str | None, stamp: tuple[int, int, int]) -> TrainedModel:
    """Load ``path``; ``stamp`` (mtime, size, inode) keys the cache, so a replaced file is read
    again."""
    blob = read_weights_file(path, "model file", ModelError)
    if isinstance(blob, dict) and blob.get("format") == FORMAT:
        if type(blob.get("version")) is not int or blob["version"] not in READ_VERSIONS:
            raise ModelError(f"{path}: model file version {blob.get('version')} not supported")
        if arch is not None and arch != blob["arch"]:
            raise ModelError(f"{path}: holds a {blob['arch']!r} model, not {arch!r}")
        return _from_blob(blob, path)
    return _from_checkpoint(blob, path, arch)[0]


def _install(blob: dict[str, Any], target: Path, force: bool) -> None:
    """Write ``blob`` to ``target`` atomically; without ``force`` never over an existing file
    (a hard link is the no-overwrite rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        torch.save(blob, tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        if force:
            os.replace(tmp, target)
            return
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise ModelError(f"{target} exists; not replaced (--overwrite replaces it)") from None
        except OSError:  # a file system without hard links: the check before must do
            if target.exists():
                raise ModelError(
                    f"{target} exists; not replaced (--overwrite replaces it)"
                ) from None
            os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def import_checkpoint(
    path: str | os.PathLike[str],
    name: str | None = None,
    *,
    force: bool = False,
    folder: str | os.PathLike[str] | None = None,
) -> TrainedModel:
    """Install a foreign checkpoint (the LIC-TCM / SA-ICM authors' files) as a saicm model.

    The architecture is found from the tensors' names and shapes; the model codes as the
    authors' scripts do (the architecture's ``published`` :class:`Coding`; the CDF tables the
    checkpoint carries, else ones built at its resolution). The card names the release (from the
    file name: ``icm_78.pth.tar`` -> alpha 0.78, lambda 0.05; ``sa-icm_0.05.pth.tar`` -> lambda
    0.05) and the SHA-256 of the original file. The file is written atomically into ``folder``
    (default: the first of :func:`model_dirs`) as ``NAME.pt``.

    Arguments:
        path: the checkpoint (loaded with ``weights_only=True``: no code runs).
        name: the installed name (default: from the file name, e.g. ``sa-icm-tcm-0.05``).
        force: replace a model of that name (installed anywhere on the search path).

    Raises:
        ModelError: not a checkpoint of a registered architecture, an invalid name, a saicm
            model file, or a model of that name already installed (without ``force``).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint")
    blob = read_weights_file(path, "checkpoint", ModelError)
    if isinstance(blob, dict) and blob.get("format") == FORMAT:
        raise ModelError(f"{path}: already a saicm model file (copy it into {model_dirs()[0]})")
    model, stored = _from_checkpoint(blob, path, None)
    name = name if name is not None else model.name
    _check_name(name)
    existing = _find_installed(name)
    if existing is not None and not force:
        raise ModelError(
            f"a model named {name!r} is installed ({existing}); choose another --name or --force"
        )
    dest = Path(folder) if folder is not None else model_dirs()[0]
    target = dest / f"{name}.pt"
    out = {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "arch": model.arch,
        "config": dict(model.config),
        "state_dict": stored,
        "hash": model.weights_hash,
        "card": dict(model.card),
        "coding": model.coding.to_dict(),
    }
    _install(out, target, force)
    back = read_weights_file(target, "model file", ModelError)  # what was written reads back
    if not isinstance(back, dict) or weights_hash(back.get("state_dict", {})) != out["hash"]:
        raise ModelError(f"{target}: written file does not read back (disk full?)")
    return replace(model, name=name, path=target)


def _find_installed(name: str) -> Path | None:
    """The file ``NAME.pt`` of the first models folder holding one; else the first installed file
    whose model is named ``name`` (``saicm models`` lists a model by the name inside its file,
    which ``.sic`` files carry, whatever the file is called)."""
    for d in model_dirs():
        candidate = d / f"{name}.pt"
        if candidate.is_file():
            return candidate
    return next((m["path"] for m in installed_models() if m["name"] == name), None)


def load_model(
    name_or_path: str | os.PathLike[str] | None = None, arch: str | None = None
) -> TrainedModel:
    """Load a trained model by installed name or file path (``None``: the default model).

    Arguments:
        name_or_path: an installed model's name (see ``saicm models``) or a file.
        arch: the architecture of a foreign checkpoint (default: found from its tensors); for a
            saicm model file it must match the file's if given.

    Raises:
        ModelError: no such model or file, not a model file or checkpoint, or one that fails its
            hash or does not fit its architecture.
    """
    key = str(name_or_path) if name_or_path is not None else DEFAULT_MODEL
    path = Path(key).expanduser()
    if not path.is_file():
        found = _find_installed(key)
        if found is None:
            if os.sep in key or key.endswith((".pt", ".pth", ".tar")):
                raise ModelError(f"{key}: no such model file")
            names = ", ".join(m["name"] for m in installed_models()) or "none"
            raise ModelError(f"no installed model named {key!r} (installed: {names})")
        path = found
    path = path.resolve()
    return _load_file(path, arch, _stamp(path))


def load_installed_model(name: str) -> TrainedModel:
    """Load an installed model by its name only, never a file path: for a name that comes from a
    ``.sic`` file, which its author chose (a path there would make the decoder open any file of
    this machine, relative to the working folder, and tell whether it exists).

    Raises:
        ModelError: ``name`` is not the name of an installed model.
    """
    plain = (
        bool(name)
        and not name.startswith((".", "~"))
        and not any(c in name for c in "/\\:\x00")
        and name.isprintable()
    )
    found = _find_installed(name) if plain else None
    if found is None:
        names = ", ".join(m["name"] for m in installed_models()) or "none"
        raise ModelError(
            f"no installed model named {name!r} (installed: {names}); give its file with "
            f"--model FILE (a trained run's model.pt), or copy that file into {model_dirs()[0]}"
        )
    path = found.resolve()
    return _load_file(path, None, _stamp(path))


def list_models(pattern: str = "*") -> list[str]:
    """Names of the installed trained models (what :func:`load_model`, ``saicm encode --model``
    and a ``.sic`` file name) matching a shell-style ``pattern``, first model folder first;
    the architectures that :func:`saicm.create_model` builds: :func:`list_architectures`."""
    import fnmatch

    return [m["name"] for m in installed_models() if fnmatch.fnmatch(m["name"], pattern)]


def installed_models() -> list[dict[str, Any]]:
    """Name, architecture, file and card of every installed model (first folder wins)."""
    seen: dict[str, dict[str, Any]] = {}
    for d in model_dirs():
        for f in sorted(d.glob("*.pt")) if d.is_dir() else []:
            if f.stem in seen:
                continue
            try:  # mapped, not read: an imported LIC-TCM file is 306 MB
                blob = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
            except Exception:
                try:  # a file in torch's legacy (non-zip) format cannot be mapped
                    blob = torch.load(f, map_location="cpu", weights_only=True)
                except Exception:
                    continue
            if (
                isinstance(blob, dict)
                and blob.get("format") == FORMAT
                and isinstance(blob.get("name"), str)
                and isinstance(blob.get("arch"), str)
            ):  # a broken or foreign file in a models folder is not listed, and breaks nothing
                card = blob.get("card")
                size = f.stat().st_size
                seen[f.stem] = {
                    "name": blob["name"],
                    "arch": blob["arch"],
                    "path": f,
                    "bytes": size,
                    "card": card if isinstance(card, dict) else {},
                    "coding": blob.get("coding"),
                }
    return list(seen.values())

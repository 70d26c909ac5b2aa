"""Trained models: the file format, where installed models live, and loading by name or path.

A saicm model file is a ``torch.save`` dict (loaded with ``weights_only=True``)::

    {"format": "saicm-model", "version": 1, "name": str, "arch": str, "config": dict,
     "state_dict": {...}, "hash": sha256-hex of the weights, "card": dict,
     "coded": uint8 tensor (optional)}

With ``storage="int8"`` the parameters are quantised per output channel to 8 bits and
rANS-coded (:mod:`saicm.utils.weight_coding`) into ``"coded"``, and ``"state_dict"`` keeps only
the buffers (CDF tables): for mbt2018-mean 7.7 MB (6.1 MB of coded weights, 1.6 MB of
tables) instead of 15.7 MB with float16 weights.

Installed models are found by name in, in order: the folders of ``$SAICM_MODELS``
(``os.pathsep``-separated), ``~/.cache/saicm/models``, and the models shipped inside the package.

Official LIC-TCM / SA-ICM checkpoints (a bare ``state_dict``, or one under ``"state_dict"``,
possibly with DataParallel's ``module.`` prefix) load too: ``load_model(path, arch="tcm")``.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from compressai.models import CompressionModel
from compressai.models.base import get_scale_table

from ..errors import ModelError, SaicmError
from ..utils.io import atomic_path, read_weights_file
from .registry import create_model, get_architecture

__all__ = [
    "DEFAULT_MODEL",
    "TrainedModel",
    "export_model",
    "installed_models",
    "load_model",
    "model_dirs",
    "weights_hash",
]

FORMAT = "saicm-model"
VERSION = 1
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"
#: Scales of the Gaussian conditional's CDF tables. CompressAI's 64 cost 2.6-3% more bits than
#: the entropy estimate (each scale is rounded up to the next table entry); 128 cost 1.3-1.4%
#: at the same speed (shipped model, astronaut and VOC photos).
SCALE_LEVELS = 128
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
    """

    name: str
    arch: str
    config: dict[str, Any]
    net: CompressionModel
    weights_hash: str
    card: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def downsampling(self) -> int:
        return get_architecture(self.arch).downsampling

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
) -> TrainedModel:
    """Write a trained network as a saicm model file (atomically) and return it loaded.

    The entropy models' CDF tables are rebuilt first (``update(force=True)``), so the file codes
    real bitstreams. ``storage`` is how parameters are kept: ``float32``, ``float16`` (half the
    size) or ``int8`` (per-channel 8-bit, rANS-coded: under half of float16). The tables are
    rebuilt from the stored (rounded) weights, so encoder and decoder agree.
    """
    from ..utils.weight_coding import decode_state, encode_state

    get_architecture(arch)
    if not name or len(name.encode()) > 255 or any(c in name for c in "/\\" + os.sep):
        raise ModelError(f"invalid model name {name!r}")
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
    fresh.update(scale_table=get_scale_table(levels=SCALE_LEVELS), force=True)
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
    }
    if coded is not None:  # a tensor: torch.save pickles bytes at ~1.5x their size
        blob["coded"] = coded_tensor(coded)
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    _load_file.cache_clear()
    return _from_blob(blob, Path(path))


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


def _from_blob(blob: dict[str, Any], path: Path | None) -> TrainedModel:
    arch = blob["arch"]
    config = dict(blob.get("config") or {})
    try:
        stored = _stored_weights(blob["state_dict"], blob.get("coded"))
    except SaicmError as exc:
        raise ModelError(f"{path}: {exc}") from None
    digest = weights_hash(stored)
    state = {k: v.float() if v.dtype == torch.float16 else v for k, v in stored.items()}
    if blob.get("hash") and blob["hash"] != digest:
        raise ModelError(f"{path}: weights do not match their recorded hash (file corrupted?)")
    net = create_model(arch, **config)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{path}: weights do not fit architecture {arch!r} ({first})") from None
    return TrainedModel(
        blob["name"], arch, config, _prepare(net), digest, blob.get("card") or {}, path
    )


def _strip_prefix(state: dict[str, Any]) -> dict[str, Any]:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


@functools.lru_cache(maxsize=8)
def _load_file(path: Path, arch: str | None, stamp: tuple[int, ...] = ()) -> TrainedModel:
    # ``stamp`` (inode, modification time in ns, size) keys the cache: a file rewritten (a
    # retrained model copied over the old one) is read again, not served from memory.
    blob = read_weights_file(path, "model file", ModelError)
    if not isinstance(blob, dict):
        raise ModelError(f"{path}: not a model file")
    if blob.get("format") == FORMAT:
        if blob.get("version") != VERSION:
            raise ModelError(f"{path}: model file version {blob.get('version')} not supported")
        if arch is not None and arch != blob["arch"]:
            raise ModelError(f"{path}: holds a {blob['arch']!r} model, not {arch!r}")
        return _from_blob(blob, path)
    # A foreign checkpoint: a bare state_dict, as the LIC-TCM / SA-ICM authors publish them.
    state = blob.get("state_dict", blob)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a model file")
    arch = arch or "tcm"
    net = create_model(arch)
    try:
        net.load_state_dict(_strip_prefix(state))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{path}: not a {arch!r} checkpoint ({first})") from None
    net.update(scale_table=get_scale_table(levels=SCALE_LEVELS), force=True)
    digest = weights_hash(net.state_dict())
    card = {"source": f"foreign checkpoint {path.name}"}
    return TrainedModel(
        path.stem, arch, dict(get_architecture(arch).config), _prepare(net), digest, card, path
    )


def _find_installed(name: str) -> Path | None:
    for d in model_dirs():
        candidate = d / f"{name}.pt"
        if candidate.is_file():
            return candidate
    return None


def load_model(
    name_or_path: str | os.PathLike[str] | None = None, arch: str | None = None
) -> TrainedModel:
    """Load a trained model by installed name or file path (``None``: the default model).

    Arguments:
        name_or_path: an installed model's name (see ``saicm models``) or a file.
        arch: the architecture of a foreign checkpoint (default ``tcm``); for a saicm model file
            it must match the file's if given.
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
    st = path.stat()
    return _load_file(path.resolve(), arch, (st.st_ino, st.st_mtime_ns, st.st_size))


def installed_models() -> list[dict[str, Any]]:
    """Name, architecture, file and card of every installed model (first folder wins)."""
    seen: dict[str, dict[str, Any]] = {}
    for d in model_dirs():
        for f in sorted(d.glob("*.pt")) if d.is_dir() else []:
            if f.stem in seen:
                continue
            try:
                blob = torch.load(f, map_location="cpu", weights_only=True)
            except Exception:
                continue
            if isinstance(blob, dict) and blob.get("format") == FORMAT:
                size = f.stat().st_size
                seen[f.stem] = {
                    "name": blob["name"],
                    "arch": blob["arch"],
                    "path": f,
                    "bytes": size,
                    "card": blob.get("card") or {},
                }
    return list(seen.values())

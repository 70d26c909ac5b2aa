"""The saicm model file: its format, writing one (:func:`export_model`) and reading one back
(:func:`read_blob`, hash and fields checked) as a :class:`TrainedModel`.

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
rANS-coded (:mod:`saicm.codec.weight_coding`) into ``"coded"``, and ``"state_dict"`` keeps only
the buffers (CDF tables): for mbt2018-mean 7.7 MB (6.1 MB of coded weights, 1.6 MB of
tables) instead of 15.7 MB with float16 weights.

Finding installed models: :mod:`saicm.codec.installed`; foreign checkpoints:
:mod:`saicm.codec.foreign`; cards: :mod:`saicm.codec.cards`.
"""

from __future__ import annotations

from .. import _compressai  # noqa: F401  (before CompressAI: see saicm._compressai)

# isort: split

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from compressai.models import CompressionModel
from compressai.models.base import get_scale_table

from ..errors import ModelError, SaicmError
from ..utils.io import atomic_path
from .registry import SAICM_CODING, Coding, Padding, create_model, get_architecture
from .vbr import is_variable_rate

__all__ = [
    "FORMAT",
    "READ_VERSIONS",
    "STORAGES",
    "TABLE_BUFFERS",
    "VERSION",
    "TrainedModel",
    "check_name",
    "coded_tensor",
    "export_model",
    "prepare",
    "read_blob",
    "table_levels",
    "weights_hash",
]

FORMAT = "saicm-model"
#: Written: 2 (with ``coding``). Read: 1 and 2.
VERSION = 2
READ_VERSIONS = (1, 2)
#: Buffers of CompressAI's entropy models that hold CDF tables (rebuilt by ``update()``; their
#: shapes depend on the weights and the scale table, not on the architecture).
TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")
#: How a model file keeps its parameters (see :func:`export_model`).
STORAGES = ("float32", "float16", "int8")
#: Called after :func:`export_model` writes a file: the caches of loaded files drop what they
#: hold (:mod:`saicm.codec.installed` adds its own).
ON_WRITE: list[Callable[[], None]] = []


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
        return table_levels(self.net, self.path)

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


def table_levels(net: CompressionModel, path: Path | str | None) -> int:
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


def prepare(net: CompressionModel) -> CompressionModel:
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
    from .weight_coding import decode_state, encode_state

    spec = get_architecture(arch)
    coding = coding or spec.coding
    _check_coding(coding, arch)
    check_name(name)
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
    for clear in ON_WRITE:
        clear()
    return read_blob(blob, Path(path))


def check_name(name: str) -> None:
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
    from .weight_coding import decode_state

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


def read_blob(blob: dict[str, Any], path: Path | None) -> TrainedModel:
    """A saicm model file's dict as a model: fields, hash, architecture, anchors and coding
    checked.

    Raises:
        ModelError: anything in it that is not as :func:`export_model` writes it.
    """
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
    levels = table_levels(net, path)
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
        blob["name"], arch, config, prepare(net), digest, blob.get("card") or {}, path, coding
    )

"""Foreign checkpoints (the LIC-TCM / SA-ICM authors' files): their state found in the layouts
those scripts save, the architecture detected from the tensors' names and shapes, and the model
they make, coding as the authors' scripts do (the architecture's ``published`` coding; the tables
they carry, else ones built at its resolution). Installing one: :mod:`saicm.codec.installed`."""

from __future__ import annotations

from .. import _compressai  # noqa: F401  (before CompressAI: see saicm._compressai)

# isort: split

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from compressai.models import CompressionModel
from compressai.models.base import get_scale_table

from ..errors import ModelError
from .cards import describe_checkpoint, file_sha256
from .model_file import TABLE_BUFFERS, TrainedModel, prepare, table_levels, weights_hash
from .registry import create_model, get_architecture, list_architectures

__all__ = ["detect_architecture", "from_checkpoint"]


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


def from_checkpoint(blob: Any, path: Path, arch: str | None) -> tuple[TrainedModel, dict]:
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
    coding = replace(coding, scale_levels=table_levels(net, path))
    stored = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    digest = weights_hash(stored)
    name, card = describe_checkpoint(path, arch, file_sha256(path))
    config = dict(spec.config)
    model = TrainedModel(name, arch, config, prepare(net), digest, card, path, coding)
    return model, stored

"""Starting a run from a trained model's weights (``--init``): one of the same architecture and
config, or, for a variable-rate run, a fixed-rate ``mbt2018-mean`` of the same ``N`` and ``M``."""

from __future__ import annotations

import torch

from ..codec.installed import load_model
from ..codec.registry import get_architecture
from ..errors import SaicmError
from .config import VARIABLE_RATE_ARCHS, TrainConfig

__all__ = ["VBR_ONLY", "load_init"]


#: Tensors of a variable-rate network that a fixed-rate one lacks (prefixes of their names): left
#: as built when a variable-rate run starts from a fixed-rate model (``Gain`` and
#: ``lmbda_levels`` are then set from ``lmbda_range``).
VBR_ONLY = ("Gain", "lmbda_levels", "QuantABCD.")


@torch.no_grad()
def load_init(net: torch.nn.Module, cfg: TrainConfig, verbose: bool) -> None:
    """Start from the weights of the model ``cfg.init``: one of the same architecture and
    config, or, for a variable-rate run, a fixed-rate ``mbt2018-mean`` of the same ``N`` and
    ``M`` (every one of its parameters is loaded by name; :data:`VBR_ONLY` stay fresh; what was
    loaded is printed).

    Raises:
        SaicmError: another architecture or config, or (variable rate) a parameter of the model
            that has no place of the same name and shape in the network.
    """
    start = load_model(cfg.init)
    wanted = {**get_architecture(cfg.arch).config, **cfg.arch_config}
    refusal = f"--init {cfg.init}: a {start.arch!r} model {start.config}, not {cfg.arch!r} {wanted}"
    if start.arch == cfg.arch and start.config == wanted:
        # Parameters, not the CDF tables (rebuilt at export); float16 files widen to float32.
        params = dict(net.named_parameters())
        state = {k: v.float() if k in params else v for k, v in start.net.state_dict().items()}
        net.load_state_dict(state)
        if cfg.variable_rate and cfg.unit_step_lmbda is None:
            _inherit_unit_step(net, cfg, verbose)
        return
    if not (cfg.variable_rate and start.arch in ("mbt2018-mean", *VARIABLE_RATE_ARCHS)):
        raise SaicmError(refusal)
    own = dict(net.named_parameters())
    theirs = dict(start.net.named_parameters())
    fits = {k for k, v in theirs.items() if k in own and own[k].shape == v.shape}
    misfits = sorted(k for k in theirs if k not in fits and not k.startswith(VBR_ONLY))
    if misfits or not fits:
        first = misfits[0] if misfits else "all"
        raise SaicmError(
            f"{refusal}: {len(misfits) or len(theirs)} of its {len(theirs)} parameters "
            f"({first}, ...) have no place of that name and shape (a variable-rate run starts "
            "from an mbt2018-mean model of the same N and M)"
        )
    for k in fits:
        own[k].copy_(theirs[k].float())
    if verbose:
        kept = sorted(k for k in own if k not in fits)
        values = sum(theirs[k].numel() for k in fits)
        print(
            f"--init {cfg.init}: loaded {len(fits)} of its {len(theirs)} parameter tensors "
            f"({values:,} values) into {cfg.arch}; kept fresh: {', '.join(kept)}; anchors "
            "(lmbda_levels, Gain) from lmbda_range",
            flush=True,
        )
        trained_at = start.card.get("lmbda")
        if start.arch == "mbt2018-mean" and cfg.unit_step_lmbda is None:
            at = f" {trained_at:g}" if isinstance(trained_at, (int, float)) else ""
            print(
                f"note: the start codes as it was trained only at the top lambda "
                f"{cfg.lmbda_range[1]:g}; --unit-step-lmbda <its lambda{at}> keeps it at its own "
                "(docs/TRAINING.md, the CPU recipe)",
                flush=True,
            )


def _inherit_unit_step(net: torch.nn.Module, cfg: TrainConfig, verbose: bool) -> None:
    """A variable-rate start keeps the lambda it codes with step 1 (``cfg.unit_step_lmbda`` set
    from its gains) when that lambda lies in the run's range: the run's anchors then give the
    start's gains wherever the ranges share lambdas, instead of moving step 1 to the top of the
    run's range (which would change how the start codes every lambda before any step)."""
    assert cfg.lmbda_range is not None
    lo, hi = cfg.lmbda_range
    unit = float(f"{net.lmbda_for(1.0):.6g}") if net.Gain.min() <= 1 <= net.Gain.max() else None
    if unit is not None and lo <= unit <= hi:
        cfg.unit_step_lmbda = unit
        if verbose:
            print(
                f"--init {cfg.init}: codes lambda {unit:g} with step 1; the run keeps that "
                "(--unit-step-lmbda to choose another)",
                flush=True,
            )
    elif verbose:
        where = "no lambda" if unit is None else f"lambda {unit:g}"
        print(
            f"note: --init {cfg.init} codes with step 1 at {where}, outside the run's range "
            f"{lo:g}..{hi:g}: its gains change (step 1 at {hi:g}, or --unit-step-lmbda)",
            flush=True,
        )

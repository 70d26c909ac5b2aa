"""Variable-rate coding: one network for every rate between the lowest and highest lambda it was
trained for.

The network is CompressAI's ``MeanScaleHyperpriorVbr`` (Kamisli, Racape, Choi, "Variable-Rate
Learned Image Compression with Multi-Objective Optimization and Quantization-Reconstruction
Offsets", DCC 2024): the mean-scale hyperprior of Minnen et al. whose latent ``y`` is quantised
with a step ``1 / gain``,

    q = round((y - mu) * gain),   y_hat = mu + sign(q) (|q| + offset(sigma * gain, gain)) / gain

and coded with the Gaussian of scale ``sigma * gain``; ``offset`` is a small network (the
quantisation-reconstruction offsets of the paper). A low gain is a coarse step: few bits.

What saicm adds (:class:`VariableRateMeanScale`):

- The rate setting is the lambda the model was trained with, not an index: the model holds
  ``levels`` anchor lambdas (log-spaced over the range it was trained for, a buffer of its
  weights) and one gain per anchor (``Gain``, fixed at ``sqrt(lambda / lambda_max)``, as
  CompressAI's defaults are, or at ``sqrt(lambda / lambda_1)`` for a run started from a model
  trained at ``lambda_1``: ``--unit-step-lmbda``); a lambda between two anchors gets the gain
  interpolated linearly in ``(log lambda, log gain)`` (:meth:`VariableRateMeanScale.gain_for`).
  Training samples lambda log-uniformly over the whole range each step, so every setting in
  between is trained, not only the anchors.
- The gain of a file travels in its header as a float32 (``.sic`` format 3), so the decoder
  uses exactly the encoder's value; entropy parameters are computed in float64 and checked as for
  every model (:mod:`saicm.codec.latents`).
"""

from __future__ import annotations

from .. import _compressai  # noqa: F401  (before CompressAI: see saicm._compressai)

# isort: split

import itertools
import math
from collections.abc import Sequence

import torch
from compressai.models.vbr import MeanScaleHyperpriorVbr
from torch import Tensor

from ..errors import ModelError
from .hyperprior import MeanScaleParameters

__all__ = ["VariableRateMeanScale", "anchor_gains", "is_variable_rate"]

#: CompressAI's training lambdas of ``mbt2018-mean-vbr`` (MSE, on 255^2 * MSE); the default range.
COMPRESSAI_LMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.025, 0.0483, 0.0932, 0.18)


def anchor_gains(lmbdas: Sequence[float], unit: float | None = None) -> list[float]:
    """``sqrt(lambda / unit)`` for each anchor, ``unit`` (the lambda quantised with step 1)
    defaulting to ``max(lambdas)``: CompressAI's default gains (0.1 to 1 over its lambdas 0.0018
    to 0.18) follow this rule to within 4%.

    A smaller ``unit`` gives gains above 1 (steps finer than 1) at the lambdas above it: a network
    trained at one lambda (a fixed-rate model given to ``--init``) then codes that lambda as it
    did, and the others with steps that follow the square-root rule from it.
    """
    top = max(lmbdas) if unit is None else unit
    if not (math.isfinite(top) and top > 0):
        raise ModelError(f"unit-step lambda {top!r}: need a finite value above 0")
    return [math.sqrt(v / top) for v in lmbdas]


def _log_interp(x: float, xs: list[float], ys: list[float]) -> float:
    """Piecewise-linear interpolation in ``(log x, log y)`` over increasing ``xs`` (``x``
    clamped to their range)."""
    t = math.log(min(max(x, xs[0]), xs[-1]))
    logs = [math.log(v) for v in xs]
    i = max(0, min(len(xs) - 2, sum(v <= t for v in logs) - 1))
    f = (t - logs[i]) / (logs[i + 1] - logs[i])
    return math.exp((1 - f) * math.log(ys[i]) + f * math.log(ys[i + 1]))


class VariableRateMeanScale(MeanScaleParameters, MeanScaleHyperpriorVbr):
    """``mbt2018-mean-vbr``: CompressAI's ``MeanScaleHyperpriorVbr`` with its rate set by lambda.

    Arguments:
        N, M: channels of the transforms and of the latent (as ``mbt2018-mean``).
        levels: number of anchor lambdas (and gains).

    The anchors default to CompressAI's lambdas (levels 8) or a log-spaced range over them;
    :meth:`set_range` (the trainer) sets the range a model is trained for.
    """

    def __init__(self, N: int = 128, M: int = 192, levels: int = 8) -> None:
        super().__init__(N=N, M=M)
        if levels < 2:
            raise ModelError(f"a variable-rate model needs at least 2 levels, not {levels}")
        lmbdas = torch.logspace(
            math.log10(COMPRESSAI_LMBDAS[0]), math.log10(COMPRESSAI_LMBDAS[-1]), levels
        )
        self.register_buffer("lmbda_levels", lmbdas.float())
        # fixed, as CompressAI's training detaches them: a parameter without gradients would
        # stall DistributedDataParallel's reduction
        self.Gain = torch.nn.Parameter(
            torch.tensor(anchor_gains(lmbdas.tolist())), requires_grad=False
        )
        self.levels = levels
        self.lmbda = lmbdas.tolist()
        # offsets start at zero (plain rounding), so that a run started from a fixed-rate model
        # codes at its highest lambda (gain 1) exactly as that model does
        with torch.no_grad():
            self.QuantABCD[-1].weight.zero_()
            self.QuantABCD[-1].bias.zero_()
        self._anchor_cache: tuple[tuple, tuple[list[float], list[float]]] | None = None

    def set_range(self, low: float, high: float, unit: float | None = None) -> None:
        """Anchor lambdas log-spaced over ``[low, high]``, gains per :func:`anchor_gains`
        (step 1 at ``unit``, default ``high``).

        Raises:
            ModelError: ``low`` and ``high`` are not finite with ``0 < low < high``, or ``unit``
                is not within them.
        """
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
            raise ModelError(f"lambda range {low!r}..{high!r}: need 0 < low < high")
        if unit is not None and not (math.isfinite(unit) and low <= unit <= high):
            raise ModelError(f"unit-step lambda {unit!r}: not within {low!r}..{high!r}")
        lmbdas = torch.logspace(math.log10(low), math.log10(high), self.levels, dtype=torch.float64)
        with torch.no_grad():
            self.lmbda_levels.copy_(lmbdas.float())
            self.Gain.copy_(torch.tensor(anchor_gains(lmbdas.tolist(), unit)))
        self.lmbda = self.lmbda_levels.tolist()

    @property
    def rate_range(self) -> tuple[float, float]:
        """``(lowest, highest)`` lambda this model codes at (float32 values, as stored).

        Raises:
            ModelError: the anchors are not positive and increasing (a broken model file).
        """
        lm, _ = self._check_anchors()
        return lm[0], lm[-1]

    def _check_anchors(self) -> tuple[list[float], list[float]]:
        """The anchors as Python floats, checked; read from the tensors only when they changed
        (a GPU training step would otherwise wait for 2 x ``levels`` device copies)."""
        key = tuple(
            (t.data_ptr(), -1 if t.is_inference() else t._version)
            for t in (self.lmbda_levels, self.Gain)
        )
        if self._anchor_cache is not None and self._anchor_cache[0] == key:
            return self._anchor_cache[1]
        lm = [float(v) for v in self.lmbda_levels.detach().cpu()]
        gains = [float(v) for v in self.Gain.detach().cpu()]
        ok = all(math.isfinite(v) and v > 0 for v in lm + gains)
        if not ok or any(b <= a for a, b in itertools.pairwise(lm)):
            raise ModelError("the model's lambda anchors are not increasing and positive")
        if any(b <= a for a, b in itertools.pairwise(gains)):
            raise ModelError("the model's gains do not increase with lambda")
        self._anchor_cache = (key, (lm, gains))
        return lm, gains

    def gain_for(self, lmbda: float) -> float:
        """The quantisation gain of ``lmbda`` (float32 value, as a file stores it).

        Raises:
            ModelError: ``lmbda`` is not a number inside :attr:`rate_range`.
        """
        lm, gains = self._check_anchors()
        if not (isinstance(lmbda, (int, float)) and math.isfinite(lmbda)):
            raise ModelError(f"lambda {lmbda!r} is not a number")
        lo, hi = lm[0], lm[-1]
        # the range's ends are float32 values: allow their rounding of a decimal the user typed
        if not lo * (1 - 1e-6) <= lmbda <= hi * (1 + 1e-6):
            raise ModelError(
                f"lambda {lmbda:g} is outside this variable-rate model's range {lo:.6g}..{hi:.6g}"
            )
        return float(torch.tensor(_log_interp(lmbda, lm, gains), dtype=torch.float32))

    def lmbda_for(self, gain: float) -> float:
        """Inverse of :meth:`gain_for` (for reports): the lambda whose gain is ``gain``.

        Raises:
            ModelError: ``gain`` is outside the model's gains.
        """
        lm, gains = self._check_anchors()
        if not (math.isfinite(gain) and gains[0] * (1 - 1e-6) <= gain <= gains[-1] * (1 + 1e-6)):
            raise ModelError(
                f"gain {gain!r} is outside this model's gains {gains[0]:.6g}..{gains[-1]:.6g}"
            )
        return _log_interp(gain, gains, lm)

    def check_anchors(self) -> None:
        """Raise :class:`ModelError` unless the anchor lambdas are positive and increasing and
        the gains positive and increasing with them (every model file is checked on loading)."""
        self._check_anchors()

    def check_gain(self, gain: float) -> None:
        """Raise :class:`ModelError` unless ``gain`` lies within the model's gains."""
        self.lmbda_for(gain)

    @property
    def default_lmbda(self) -> float:
        """The geometric middle of the range: the setting used when none is given."""
        lo, hi = self.rate_range
        return math.sqrt(lo * hi)

    def _get_scale(self, stage: int, s: int, inputscale) -> Tensor:
        # CompressAI takes ``inputscale`` only in eval mode; saicm trains at any gain
        if isinstance(inputscale, Tensor):
            return inputscale
        return super()._get_scale(stage, s, inputscale)

    def forward(self, x: Tensor, lmbda: float | None = None) -> dict:  # type: ignore[override]
        """Training/validation pass at ``lmbda`` (default :attr:`default_lmbda`): the mixed
        proxy of the paper (additive noise for the rate term, straight-through rounding with
        reconstruction offsets for ``x_hat``)."""
        lmbda = self.default_lmbda if lmbda is None else lmbda
        gain = torch.tensor(self.gain_for(lmbda), device=x.device)
        return super().forward(x, stage=2, inputscale=gain)

    def offsets(self, q: Tensor, scales: Tensor, gain: float) -> Tensor:
        """Reconstruction offsets of the quantised symbols ``q`` (float32, any shape) given
        their (unscaled) ``scales``: ``y_hat = mu + sign(q) (|q| + offsets) / gain``."""
        g = torch.tensor(gain, dtype=torch.float32)
        stdev = self.gaussian_conditional.lower_bound_scale(scales.float() * g)
        inp = torch.stack((stdev, g.expand(stdev.shape)), dim=-1)
        off = -self.QuantABCD(inp).squeeze(-1)
        return torch.where(q.abs() < 1e-4, torch.zeros_like(off), off)


def is_variable_rate(net: torch.nn.Module) -> bool:
    """Whether ``net`` codes at a rate chosen per file (:class:`VariableRateMeanScale`)."""
    return isinstance(net, VariableRateMeanScale)

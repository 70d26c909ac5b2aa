"""The hyperprior architectures' entropy-parameter structure (:mod:`saicm.codec.entropy_params`)
on CompressAI's networks: ``mbt2018-mean`` (Minnen et al.'s mean-scale hyperprior; its
variable-rate form in :mod:`saicm.codec.vbr`) and ``bmshj2018-hyperprior`` (Balle et al.'s scale
hyperprior, zero means).

The subclasses add methods only: their parameters, state dicts and forward passes are
CompressAI's.
"""

from __future__ import annotations

from .. import _compressai  # noqa: F401  (before CompressAI: see saicm._compressai)

# isort: split

from collections.abc import Sequence

import torch
from compressai.models import MeanScaleHyperprior, ScaleHyperprior
from torch import Tensor, nn

from .entropy_params import PartCoder

__all__ = ["Bmshj2018Hyperprior", "Mbt2018Mean", "MeanScaleParameters", "ScaleParameters"]


class MeanScaleParameters:
    """One part, ``y`` whole: ``h_s(z_hat)`` gives its scales and means (``h_a(y)`` gives
    ``z``). A mix-in for CompressAI's ``MeanScaleHyperprior`` and its subclasses."""

    entropy_modules: tuple[str, ...] = ("h_s",)

    def entropy_param_module(self) -> nn.Module:
        return self.h_s  # type: ignore[attr-defined]

    def hyper_analysis(self, y: Tensor) -> Tensor:
        return self.h_a(y)  # type: ignore[attr-defined]

    def y_slices(self, y: Tensor) -> Sequence[Tensor]:
        return (y,)

    def code_y(self, p: nn.Module, z_hat: Tensor, size: Sequence[int], code: PartCoder) -> Tensor:
        scales, means = p(z_hat).chunk(2, 1)  # p: h_s
        return code(scales, means)


class ScaleParameters:
    """One part, ``y`` whole: ``h_s(z_hat)`` gives its scales, its means are zero; ``z`` is
    ``h_a(|y|)``. A mix-in for CompressAI's ``ScaleHyperprior``."""

    entropy_modules: tuple[str, ...] = ("h_s",)

    def entropy_param_module(self) -> nn.Module:
        return self.h_s  # type: ignore[attr-defined]

    def hyper_analysis(self, y: Tensor) -> Tensor:
        return self.h_a(torch.abs(y))  # type: ignore[attr-defined]

    def y_slices(self, y: Tensor) -> Sequence[Tensor]:
        return (y,)

    def code_y(self, p: nn.Module, z_hat: Tensor, size: Sequence[int], code: PartCoder) -> Tensor:
        scales = p(z_hat)  # p: h_s
        return code(scales, torch.zeros_like(scales))


class Mbt2018Mean(MeanScaleParameters, MeanScaleHyperprior):
    """``mbt2018-mean``: CompressAI's ``MeanScaleHyperprior(N, M)`` with its entropy-parameter
    structure."""


class Bmshj2018Hyperprior(ScaleParameters, ScaleHyperprior):
    """``bmshj2018-hyperprior``: CompressAI's ``ScaleHyperprior(N, M)`` with its
    entropy-parameter structure."""

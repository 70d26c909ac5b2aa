"""The entropy-parameter structure of an architecture: what the generic coder
(:mod:`saicm.codec.latents`) needs to know of a network to code its latents, so that the coder
imports no architecture and a new one implements this interface instead of editing the coder.

An architecture's network (a CompressAI ``CompressionModel`` with ``g_a``, ``g_s``,
``entropy_bottleneck``, ``gaussian_conditional`` and ``M`` latent channels, ``y`` four times the
side of ``z``) implements :class:`EntropyParameters`:

- ``entropy_modules``: the names of its sub-modules that compute ``y``'s entropy parameters
  (scales and means) from ``z_hat`` and the slices decoded before (the coder rebuilds its float64
  copy when their weights change).
- ``entropy_param_module()``: one module holding exactly those (``h_s`` itself, or a view of the
  network holding only them); the coder runs a float64 copy of it, so that any two machines
  compute the same table indexes (see :mod:`saicm.codec.latents`).
- ``hyper_analysis(y)``: ``z`` from ``y`` (``h_a(y)``; ``h_a(|y|)`` in Balle et al.'s scale
  hyperprior).
- ``y_slices(y)``: ``y`` cut into the parts coded one after the other (one part, or LIC-TCM's
  channel slices), in coding order.
- ``code_y(p, z_hat, size, code)``: what feeds what, computed with ``p`` (the float64 copy of
  ``entropy_param_module()`` for version-2 files, the module itself for version 1). For each
  part in order it computes that part's ``(scale, mean)`` (each ``(1, C_i, h, w)``) from
  ``z_hat`` ``(1, C_z, h/4, w/4)`` and the parts returned before, calls ``code(scale, mean)``,
  which codes (or decodes) the part and returns its reconstruction ``y_hat_i``, and returns all
  of ``y_hat`` ``(1, M, h, w)``. ``size`` is ``(h, w)``.

The implementations: :class:`saicm.codec.hyperprior.MeanScaleParameters` (``mbt2018-mean``,
``mbt2018-mean-vbr``), :class:`saicm.codec.hyperprior.ScaleParameters`
(``bmshj2018-hyperprior``) and :class:`saicm.codec.tcm.TCM` (``tcm``, ``tcm-small``).

A variable-rate network (its rate a quantisation gain chosen per file) also implements
:class:`VariableRate` (:class:`saicm.codec.vbr.VariableRateMeanScale`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

__all__ = ["EntropyParameters", "PartCoder", "VariableRate"]

#: ``code(scale, mean)`` of one part of ``y`` (both ``(1, C_i, h, w)``) -> its reconstruction
PartCoder = Callable[[Tensor, Tensor], Tensor]


@runtime_checkable
class EntropyParameters(Protocol):
    """The entropy-parameter structure the coder needs (see the module docstring)."""

    entropy_modules: tuple[str, ...]

    def entropy_param_module(self) -> nn.Module:
        """The module holding exactly the ``entropy_modules`` (shared, not copied)."""
        ...

    def hyper_analysis(self, y: Tensor) -> Tensor:
        """``z`` ``(B, C_z, h/4, w/4)`` from ``y`` ``(B, M, h, w)``."""
        ...

    def y_slices(self, y: Tensor) -> Sequence[Tensor]:
        """``y`` ``(1, M, h, w)`` as the parts coded one after the other, in coding order."""
        ...

    def code_y(self, p: nn.Module, z_hat: Tensor, size: Sequence[int], code: PartCoder) -> Tensor:
        """``y_hat`` ``(1, M, h, w)``, each part's parameters (computed with ``p``) handed to
        ``code`` in order."""
        ...


@runtime_checkable
class VariableRate(Protocol):
    """A network whose symbols are ``round((y - mu) * gain)`` with scales ``sigma * gain``, the
    gain chosen per file, decoded as ``mu + sign(q) (|q| + offsets) / gain``."""

    def check_gain(self, gain: float) -> None:
        """Raise :class:`~saicm.errors.ModelError` for a gain outside the model's range."""
        ...

    def offsets(self, q: Tensor, scales: Tensor, gain: float) -> Tensor:
        """The reconstruction offsets of the symbols ``q`` with (unscaled) ``scales``."""
        ...

"""Choosing the rate: code an image at the largest setting whose file fits a target size.

A setting is a fixed-rate model, or a lambda of a variable-rate model (:mod:`saicm.codec.vbr`).
For a variable-rate model the lambda is found per image by bisection on ``log lambda`` until two
settings :data:`LMBDA_STEP` apart bracket the target: the file of the lower one fits, the higher
one's does not (where the rate of an image does not rise steadily with lambda, the bracket still
holds: the result fits and its next step up does not). Among several models the setting with
the largest file that fits wins. The rate is that of the real file: ``8 * bytes / (H * W)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import SaicmError
from ..image import ImageLike, to_rgb
from .api import ModelLike, encode, resolve_model
from .model_file import TrainedModel
from .vbr import is_variable_rate

__all__ = ["LMBDA_STEP", "RateChoice", "encode_to_bpp", "file_bpp"]

#: The finest step of the lambda search: the chosen lambda's next setting up, ``lambda *
#: LMBDA_STEP``, gives a file above the target (or lambda is the model's highest). About 0.5%
#: of the rate at the shipped models' slopes (rate ~ lambda^0.4).
LMBDA_STEP = 1.02


class RateError(SaicmError):
    """No setting of the given models fits the target."""


@dataclass(frozen=True)
class RateChoice:
    """The file that fits, and the setting that made it.

    Arguments:
        data: the ``.sic`` file's bytes.
        model: the model that wrote it.
        lmbda: its lambda (variable-rate model), else ``None``.
        bpp: the file's bits per pixel.
        tries: images coded to find it.
    """

    data: bytes
    model: TrainedModel
    lmbda: float | None
    bpp: float
    tries: int

    @property
    def setting(self) -> str:
        """``model`` or ``model@lambda``, as ``saicm eval`` names settings."""
        return self.model.name if self.lmbda is None else f"{self.model.name}@{self.lmbda:.6g}"


def file_bpp(data: bytes, height: int, width: int) -> float:
    """Bits per pixel of a file of ``data`` for an image of ``height`` x ``width``."""
    return 8 * len(data) / (height * width)


def encode_to_bpp(
    image: ImageLike, models: ModelLike | Sequence[ModelLike], target: float
) -> RateChoice:
    """Code ``image`` at the largest setting of ``models`` whose file has at most ``target``
    bits per pixel.

    Arguments:
        image: a path, a PIL image or an ``(H, W, 3)`` array.
        models: one model or several (loaded, installed names or files), fixed- or
            variable-rate, mixed as wished.
        target: bits per pixel, above 0.

    Raises:
        RateError: even the lowest setting of every model gives a larger file (the message
            gives the smallest rate reached).
        ModelError: a model cannot be loaded.
    """
    if not (isinstance(target, (int, float)) and math.isfinite(target) and target > 0):
        raise SaicmError(f"target {target!r} bpp: expected a number above 0")
    if isinstance(models, (str, TrainedModel)) or not isinstance(models, Sequence):
        models = [models]
    rgb = to_rgb(image)
    h, w = rgb.shape[:2]
    best: RateChoice | None = None
    lowest = math.inf
    tries = 0
    for spec in models:
        m = resolve_model(spec)
        if is_variable_rate(m.net):
            found, low, n = _search(rgb, m, target)
        else:
            data = encode(rgb, m)
            bpp = file_bpp(data, h, w)
            found = RateChoice(data, m, None, bpp, 1) if bpp <= target else None
            low, n = bpp, 1
        tries += n
        lowest = min(lowest, low)
        if found is not None and (best is None or found.bpp > best.bpp):
            best = found
    if best is None:
        raise RateError(f"cannot reach {target:g} bpp: the lowest setting gives {lowest:.4f} bpp")
    return RateChoice(best.data, best.model, best.lmbda, best.bpp, tries)


def _search(
    rgb: np.ndarray, m: TrainedModel, target: float
) -> tuple[RateChoice | None, float, int]:
    """Bisection on ``log lambda`` over a variable-rate model's range: the best fit (or None),
    the lowest rate seen and the number of images coded."""
    h, w = rgb.shape[:2]
    lo, hi = m.net.rate_range
    tries = 0

    def at(lmbda: float) -> RateChoice:
        nonlocal tries
        tries += 1
        data = encode(rgb, m, lmbda=lmbda)
        return RateChoice(data, m, lmbda, file_bpp(data, h, w), tries)

    low = at(lo)
    if low.bpp > target:
        return None, low.bpp, tries
    high = at(hi)
    if high.bpp <= target:
        return high, low.bpp, tries
    fit, over = low, high  # fit.bpp <= target < over.bpp
    while over.lmbda / fit.lmbda > LMBDA_STEP:
        mid = at(math.sqrt(fit.lmbda * over.lmbda))
        if mid.bpp <= target:
            fit = mid
        else:
            over = mid
    return RateChoice(fit.data, m, fit.lmbda, fit.bpp, tries), low.bpp, tries

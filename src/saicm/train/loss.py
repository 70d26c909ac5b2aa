"""The one loss behind SA-ICM, region learning and plain learned image compression.

Shindo et al., ICIP 2024, Eq. 1, 3 and 5 differ only in the mask ``m`` of the distortion term::

    L = R + lambda * 255^2 * mean((x * m - x_hat * m)^2)

    m = 1            plain LIC (``mse``,    Eq. 1)
    m = object mask  region learning, ORL (``region``, Eq. 3)
    m = edge mask    SA-ICM (``edge``,   Eq. 5)

The mean runs over *all* pixels, as in the LIC-TCM training code that SA-ICM keeps: a sparse
mask therefore also lowers the weight of distortion against rate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["LOSSES", "RateDistortionLoss"]

LOSSES = ("mse", "region", "edge")


class RateDistortionLoss(nn.Module):
    """``bpp + lmbda * 255^2 * masked MSE``.

    Arguments:
        lmbda: the rate-distortion trade-off (SA-ICM's released models use 0.05 with LIC-TCM).
    """

    def __init__(self, lmbda: float) -> None:
        super().__init__()
        self.lmbda = lmbda

    def forward(self, out: dict, x: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """``out`` is the model's forward output; ``mask`` is ``(B, 1, H, W)`` in [0, 1] or None."""
        n, _, h, w = x.shape
        pixels = n * h * w
        bpp = sum(
            torch.log(lik).sum() / (-math.log(2) * pixels) for lik in out["likelihoods"].values()
        )
        err = (out["x_hat"] - x) ** 2
        if mask is not None:
            err = err * (mask * mask)  # (x*m - x_hat*m)^2 == (x - x_hat)^2 * m^2
        mse = err.mean()
        return {"loss": bpp + self.lmbda * 255**2 * mse, "bpp": bpp, "mse": mse}

"""The one loss behind SA-ICM, region learning and plain learned image compression.

Shindo et al., ICIP 2024, Eq. 1, 3 and 5 differ only in the mask ``m`` of the distortion term::

    L = R + lambda * 255^2 * mean((x * m - x_hat * m)^2)

    m = 1            plain LIC (``mse``,    Eq. 1)
    m = object mask  region learning, ORL (``region``, Eq. 3)
    m = edge mask    SA-ICM (``edge``,   Eq. 5)

The mean runs over *all* pixels, as in the LIC-TCM training code that SA-ICM keeps: a sparse
mask therefore also lowers the weight of distortion against rate. ``outside`` (0 in the paper)
lets squared errors outside the mask count ``outside`` times those inside, for studies of the
weighting between the two.
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
        outside: weight of the squared errors outside the mask (0: the paper's losses).
    """

    def __init__(self, lmbda: float, outside: float = 0.0) -> None:
        super().__init__()
        self.lmbda = lmbda
        self.outside = outside

    def forward(self, out: dict, x: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """``out`` is the model's forward output; ``mask`` is ``(B, 1, H, W)`` in [0, 1] or None."""
        n, _, h, w = x.shape
        pixels = n * h * w
        bpp = sum(
            torch.log(lik).sum() / (-math.log(2) * pixels) for lik in out["likelihoods"].values()
        )
        err = (out["x_hat"] - x) ** 2
        if mask is not None:
            weight = mask * mask  # (x*m - x_hat*m)^2 == (x - x_hat)^2 * m^2
            if self.outside:
                weight = weight + self.outside * (1 - mask) ** 2
            err = err * weight
        mse = err.mean()
        return {"loss": bpp + self.lmbda * 255**2 * mse, "bpp": bpp, "mse": mse}

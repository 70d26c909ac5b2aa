"""NeRV's loss and SA-NeRV's edge-masked term (../shared/PAPER.md section 4).

``nerv``:    ``0.7 * L1(x, x_hat) + 0.3 * (1 - SSIM(x, x_hat))`` (NeRV's "Fusion6" loss; SSIM from
             ``pytorch-msssim``, as in NeRV's code).
``sa-nerv``: ``nerv + beta * L1(x*s, x_hat*s) + (1 - beta) * (1 - SSIM(x*s, x_hat*s))``, with
``s`` the edge mask of each frame, averaged over the frames of the batch. Where ``s`` is empty
both masked images are zero, so the edge term is zero there and passes no gradient.
"""

from __future__ import annotations

import pytorch_msssim
import torch

__all__ = ["LOSSES", "VideoLoss", "ssim"]

LOSSES = ("nerv", "sa-nerv")


def ssim(a: torch.Tensor, b: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, data range 1) of ``(B, C, H, W)``
    images in [0, 1]; the mean, or one value per image ``(B,)`` with ``per_image``.

    Computed by ``pytorch-msssim`` (what NeRV's official ``loss_fn`` calls). saicm's earlier own
    implementation agreed with it to 6e-8 (float32 rounding) on random and photo inputs.
    """
    return pytorch_msssim.ssim(a, b, data_range=1.0, size_average=not per_image)


class VideoLoss(torch.nn.Module):
    """``nerv`` or ``sa-nerv`` (with ``beta``) on a batch of frames and their edge masks."""

    def __init__(self, kind: str = "nerv", beta: float = 0.5) -> None:
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"loss {kind!r}: choose {', '.join(LOSSES)}")
        self.kind, self.beta = kind, beta

    def forward(
        self, x_hat: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        out = {"l1": (x_hat - x).abs().mean(), "ssim": ssim(x_hat, x)}
        out["loss"] = 0.7 * out["l1"] + 0.3 * (1 - out["ssim"])
        if self.kind == "sa-nerv":
            if mask is None:
                raise ValueError("the sa-nerv loss needs edge masks")
            xm, ym = x * mask, x_hat * mask
            edge = self.beta * (ym - xm).abs().mean() + (1 - self.beta) * (1 - ssim(ym, xm))
            out["edge"] = edge
            out["loss"] = out["loss"] + edge
        return out

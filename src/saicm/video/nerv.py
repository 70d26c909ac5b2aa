"""NeRV: a network that *is* the video (Chen et al., "NeRV: Neural Representations for Videos",
NeurIPS 2021).

Input: the frame index ``t`` (as ``t / T``), positionally encoded as
``[sin(b^i * pi * t), cos(b^i * pi * t)]`` for ``i < l`` (b = 1.25, l = 80). An MLP stem maps it
to a small feature map (``C0 x H/P x W/P``), and NeRV blocks (3x3 conv to ``C * s^2`` channels,
PixelShuffle(s), GELU) upsample it by their strides ``s`` (product ``P``) to the frame; a 3x3
head gives RGB through ``(tanh + 1) / 2``. The strides are chosen from the frame size (the
official 720p model: 5, 2, 2, 2, 2 on a 9x16 map); channel widths halve block by block down to
a floor. Sizes S, M and L scale the stem and the widths.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import SaicmError

__all__ = ["SIZES", "NeRV", "NeRVConfig", "choose_strides", "frame_times", "nerv_config"]


@dataclass(frozen=True)
class NeRVConfig:
    """Everything that defines a NeRV network (stored in ``.snv`` files).

    Arguments:
        height, width: frame size.
        strides: upsampling factor of each block (product divides height and width).
        stem_dim: hidden width of the MLP stem.
        stem_channels: channels of the stem's feature map.
        channels: output channels of the first block; halved each block down to ``min_channels``.
        min_channels: floor of the block widths.
        pe_levels, pe_base: positional encoding (NeRV: 80 levels, base 1.25).
    """

    height: int
    width: int
    strides: tuple[int, ...]
    stem_dim: int = 256
    stem_channels: int = 16
    channels: int = 96
    min_channels: int = 24
    pe_levels: int = 80
    pe_base: float = 1.25

    def to_dict(self) -> dict:
        return {**asdict(self), "strides": list(self.strides)}

    @classmethod
    def from_dict(cls, data: dict) -> NeRVConfig:
        known = set(cls.__dataclass_fields__)
        if not known >= set(data) or not {"height", "width", "strides"} <= set(data):
            raise SaicmError(f"not a NeRV config: {sorted(data)}")
        return cls(**{**data, "strides": tuple(int(s) for s in data["strides"])})


#: Size presets: (stem hidden width, stem channels, first block width, width floor).
SIZES: dict[str, tuple[int, int, int, int]] = {
    "S": (256, 16, 96, 24),
    "M": (384, 24, 160, 32),
    "L": (512, 32, 256, 48),
}


def choose_strides(
    height: int, width: int, max_blocks: int = 5, min_map: int = 6
) -> tuple[int, ...]:
    """Strides (factors 5, 3, 2 of both sides, largest first) that upsample a small map to
    ``height x width``; the map keeps at least ``min_map`` pixels on its short side."""
    g = math.gcd(height, width)
    strides: list[int] = []
    for f in (5, 3, 2):
        while g % f == 0 and len(strides) < max_blocks:
            total = math.prod(strides) * f
            if min(height, width) // total < min_map:
                break
            strides.append(f)
            g //= f
    strides.sort(reverse=True)
    if math.prod(strides) < 8:
        raise SaicmError(
            f"frame size {width}x{height} has too few common factors of 2, 3 and 5 for NeRV's "
            "upsampling blocks: resize with --size WxH (for example 416x240)"
        )
    return tuple(strides)


def nerv_config(height: int, width: int, size: str = "S") -> NeRVConfig:
    """The preset ``size`` (S, M or L) for frames of ``height x width``."""
    if size not in SIZES:
        raise SaicmError(f"NeRV size {size!r}: choose {', '.join(SIZES)}")
    stem_dim, stem_ch, ch, floor = SIZES[size]
    return NeRVConfig(height, width, choose_strides(height, width), stem_dim, stem_ch, ch, floor)


class PositionalEncoding(nn.Module):
    def __init__(self, levels: int, base: float) -> None:
        super().__init__()
        self.register_buffer("freqs", math.pi * base ** torch.arange(levels).float(), False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = t[:, None] * self.freqs
        return torch.cat([torch.sin(x), torch.cos(x)], dim=1)


class NeRVBlock(nn.Module):
    """3x3 conv to ``out * s^2`` channels, PixelShuffle(s), GELU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * stride**2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(stride)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class NeRV(nn.Module):
    """Frame index in, frame out: ``forward(t)`` with ``t`` in [0, 1] gives ``(B, 3, H, W)``."""

    def __init__(self, config: NeRVConfig) -> None:
        super().__init__()
        self.config = c = config
        scale = math.prod(c.strides)
        if c.height % scale or c.width % scale:
            raise SaicmError(f"strides {c.strides} do not divide {c.width}x{c.height}")
        self.map_size = (c.height // scale, c.width // scale)
        self.pe = PositionalEncoding(c.pe_levels, c.pe_base)
        self.stem = nn.Sequential(
            nn.Linear(2 * c.pe_levels, c.stem_dim),
            nn.GELU(),
            nn.Linear(c.stem_dim, c.stem_channels * self.map_size[0] * self.map_size[1]),
            nn.GELU(),
        )
        blocks, cin, width = [], c.stem_channels, c.channels
        for s in c.strides:
            blocks.append(NeRVBlock(cin, width, s))
            cin, width = width, max(width // 2, c.min_channels)
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.pe(t)).view(-1, self.config.stem_channels, *self.map_size)
        return (torch.tanh(self.head(self.blocks(x))) + 1) / 2


def frame_times(indices: torch.Tensor, frames: int) -> torch.Tensor:
    """Frame indices -> the network's input ``t = index / frames`` (as NeRV)."""
    return indices.float() / max(frames, 1)

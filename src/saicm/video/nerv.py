"""NeRV: a network that *is* the video (Chen et al., "NeRV: Neural Representations for Videos",
NeurIPS 2021; official code ``haochen-rye/NeRV``, ``model_nerv.py``).

Input: the frame index ``t`` (as ``t / T``), positionally encoded with ``l`` levels of base
``b``: ``gamma(t) = (sin(b^0 pi t), cos(b^0 pi t), ..., sin(b^(l-1) pi t), cos(b^(l-1) pi t))``
(NeRV's Eq. 2, sin/cos interleaved as in the official code; saicm's earlier presets put all sines
first). The argument is computed in the official code's float32 order, ``(t * b^i) * pi``
(``pe_order="official"``); files trained before saicm followed it multiplied ``t * (pi * b^i)``
(``pe_order="pi_first"``: arguments up to 2.0e-3 apart at the top levels for 600 frames, 40
levels of base 1.25; tests/video/test_nerv_presets.py) and keep that order, so they decode
exactly as they did. An MLP stem maps it to a small feature map (``C0 x H/P x W/P``), and NeRV
blocks (3x3 conv to ``C * s^2`` channels, PixelShuffle(s), activation) upsample it by their
strides ``s`` (product ``P``) to the frame; a head (1x1 in NeRV, 3x3 in saicm's earlier presets)
gives RGB through ``(tanh + 1) / 2``. The strides are chosen from the frame size (the official
720p model: 5, 2, 2, 2, 2 on a 9x16 map).

Presets (:data:`SIZES`): ``S``, ``M``, ``L`` are the official NeRV-S/M/L of the NeRV README
(stem 512, map channels 26 / 58 / 112, block widths ``max(C // 2, 96)`` after the first, swish,
1x1 head, 40 levels of base 1.25): 3,201,905 / 6,282,001 / 12,524,563 parameters at 1280x720,
the count of the official ``Generator`` built with the same settings. ``saicm-S``, ``saicm-M``,
``saicm-L`` are the smaller GELU presets saicm used before (and its result tables used).

Every field of a config is bounded (:meth:`NeRVConfig.validate`, limits below) so that a
``.snv`` header cannot make a decoder allocate without limit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import SaicmError
from .presets import MAX_PIXELS, MAX_SIDE, SIZES  # plain data, kept light for the CLI

__all__ = [
    "MAX_ACTIVATION",
    "MAX_PARAMETERS",
    "MAX_PIXELS",
    "MAX_SIDE",
    "SIZES",
    "NeRV",
    "NeRVConfig",
    "activation_elements",
    "choose_strides",
    "frame_times",
    "nerv_config",
    "parameter_count",
]

#: Widths of the stem and of every block, number of blocks, one block's stride.
MAX_STEM_DIM = 8192
MAX_CHANNELS = 1024
MAX_BLOCKS = 8
MAX_STRIDE = 8
#: Positional encoding: levels and base (``base ** (levels - 1)`` stays far inside float32).
MAX_PE_LEVELS = 100
MAX_PE_BASE = 2.0
#: Whole network: parameters (NeRV-L at 720p has 12.5 M).
MAX_PARAMETERS = 64_000_000
#: Float32 values alive at once while one frame is computed (2^29 values = 2 GiB).
MAX_ACTIVATION = 2**29

ACTIVATIONS = {"gelu": nn.GELU, "swish": nn.SiLU}
PE_LAYOUTS = ("interleave", "concat")
#: How the positional encoding's argument is multiplied out in float32: ``official``
#: ``(t * b^i) * pi`` (haochen-rye/NeRV, ``model_nerv.py``), ``pi_first`` ``t * (pi * b^i)``
#: (saicm's files before it followed the official order; the default of a config without it).
PE_ORDERS = ("official", "pi_first")


@dataclass(frozen=True)
class NeRVConfig:
    """Everything that defines a NeRV network (stored in ``.snv`` files and ``model.pt``).

    Arguments:
        height, width: frame size in pixels.
        strides: upsampling factor of each block (product divides height and width).
        stem_dim: hidden width of the MLP stem.
        stem_channels: channels of the stem's feature map (NeRV's ``fc_dim``).
        channels: output channels of the first block; then ``max(C // 2, min_channels)``.
        min_channels: floor of the block widths (NeRV's ``lower_width``).
        pe_levels, pe_base: positional encoding (NeRV: 40 levels in the README runs, base 1.25).
        activation: ``swish`` (NeRV's runs) or ``gelu``.
        head_kernel: 1 (NeRV) or 3: kernel of the RGB head.
        pe_layout: ``interleave`` (NeRV: sin, cos of each level) or ``concat`` (all sines first).
        pe_order: ``official`` (``(t * b^i) * pi``, every preset now) or ``pi_first``
            (``t * (pi * b^i)``): :data:`PE_ORDERS`. A network is trained with one order and
            must be run with it: a frame's input moves by up to 2.0e-3 between the two.

    The defaults of the last four are those of saicm's earlier files, which lack the fields.
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
    activation: str = "gelu"
    head_kernel: int = 3
    pe_layout: str = "concat"
    pe_order: str = "pi_first"

    def to_dict(self) -> dict:
        return {**asdict(self), "strides": list(self.strides)}

    @classmethod
    def from_dict(cls, data: object) -> NeRVConfig:
        """A config from its dict (a ``.snv`` header), type- and range-checked: a
        :class:`SaicmError` for anything :meth:`validate` refuses."""
        if not isinstance(data, dict):
            raise SaicmError("not a NeRV config")
        known = set(cls.__dataclass_fields__)
        if not known >= set(data) or not {"height", "width", "strides"} <= set(data):
            raise SaicmError(f"not a NeRV config: {sorted(map(str, data))[:20]}")
        strides = data["strides"]
        if not isinstance(strides, list) or not 1 <= len(strides) <= MAX_BLOCKS:
            raise SaicmError(f"NeRV strides: a list of 1 to {MAX_BLOCKS} integers")
        config = cls(**{**data, "strides": tuple(strides)})
        config.validate()
        return config

    def validate(self) -> None:
        """Check every field's type and range (limits: the module's ``MAX_*``), the strides
        against the frame size, the parameter count and the activation memory of one frame.

        Raises :class:`SaicmError` naming the first field out of range. Nothing is allocated.
        """

        def integer(name: str, value: object, lo: int, hi: int) -> None:
            if type(value) is not int or not lo <= value <= hi:
                raise SaicmError(f"NeRV {name} {value!r}: an integer in [{lo}, {hi}]")

        integer("height", self.height, 1, MAX_SIDE)
        integer("width", self.width, 1, MAX_SIDE)
        if self.height * self.width > MAX_PIXELS:
            raise SaicmError(
                f"NeRV frame {self.width}x{self.height}: more than {MAX_PIXELS} pixels (3840x2160)"
            )
        if not isinstance(self.strides, tuple) or not 1 <= len(self.strides) <= MAX_BLOCKS:
            raise SaicmError(f"NeRV strides: 1 to {MAX_BLOCKS} integers")
        for s in self.strides:
            integer("stride", s, 1, MAX_STRIDE)
        integer("stem_dim", self.stem_dim, 1, MAX_STEM_DIM)
        integer("stem_channels", self.stem_channels, 1, MAX_CHANNELS)
        integer("channels", self.channels, 1, MAX_CHANNELS)
        integer("min_channels", self.min_channels, 1, MAX_CHANNELS)
        integer("pe_levels", self.pe_levels, 1, MAX_PE_LEVELS)
        integer("head_kernel", self.head_kernel, 1, 3)
        if self.head_kernel == 2:
            raise SaicmError("NeRV head_kernel 2: 1 or 3")
        base = self.pe_base
        if type(base) not in (int, float) or not 1.0 <= base <= MAX_PE_BASE:
            raise SaicmError(f"NeRV pe_base {base!r}: a number in [1, {MAX_PE_BASE}]")
        if self.activation not in ACTIVATIONS:
            raise SaicmError(f"NeRV activation {self.activation!r}: {', '.join(ACTIVATIONS)}")
        if self.pe_layout not in PE_LAYOUTS:
            raise SaicmError(f"NeRV pe_layout {self.pe_layout!r}: {', '.join(PE_LAYOUTS)}")
        if self.pe_order not in PE_ORDERS:
            raise SaicmError(f"NeRV pe_order {self.pe_order!r}: {', '.join(PE_ORDERS)}")
        scale = math.prod(self.strides)
        if self.height % scale or self.width % scale:
            raise SaicmError(f"strides {self.strides} do not divide {self.width}x{self.height}")
        params = parameter_count(self)
        if params > MAX_PARAMETERS:
            raise SaicmError(f"NeRV of {params} parameters: more than {MAX_PARAMETERS}")
        act = activation_elements(self)
        if act > MAX_ACTIVATION:
            raise SaicmError(
                f"NeRV needs {act} float values per frame: more than {MAX_ACTIVATION}"
            )

    def widths(self) -> list[int]:
        """Output channels of each block."""
        out, width = [], self.channels
        for _ in self.strides:
            out.append(width)
            width = max(width // 2, self.min_channels)
        return out


def parameter_count(c: NeRVConfig) -> int:
    """Parameters of ``NeRV(c)``, counted from the config (nothing built)."""
    map_h, map_w = c.height // math.prod(c.strides), c.width // math.prod(c.strides)
    n = 2 * c.pe_levels * c.stem_dim + c.stem_dim
    n += c.stem_dim * c.stem_channels * map_h * map_w + c.stem_channels * map_h * map_w
    cin = c.stem_channels
    for s, cout in zip(c.strides, c.widths(), strict=True):
        n += cin * cout * s * s * 9 + cout * s * s
        cin = cout
    return n + cin * 3 * c.head_kernel**2 + 3


def activation_elements(c: NeRVConfig) -> int:
    """Float values alive at once in the widest step of one frame's forward pass (a block's
    input, its conv output and its shuffled output)."""
    scale = math.prod(c.strides)
    h, w, cin = c.height // scale, c.width // scale, c.stem_channels
    peak = cin * h * w
    for s, cout in zip(c.strides, c.widths(), strict=True):
        peak = max(peak, cin * h * w + 2 * cout * s * s * h * w)
        h, w, cin = h * s, w * s, cout
    return max(peak, cin * h * w + 6 * h * w)


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
            "upsampling blocks: resize with --frame-size WxH (for example 416x240)"
        )
    return tuple(strides)


def nerv_config(height: int, width: int, size: str = "S") -> NeRVConfig:
    """The preset ``size`` (:data:`SIZES`) for frames of ``height x width``."""
    if size not in SIZES:
        raise SaicmError(f"NeRV size {size!r}: choose {', '.join(SIZES)}")
    stem_dim, stem_ch, ch, floor, levels, act, head, layout = SIZES[size]
    config = NeRVConfig(
        height, width, choose_strides(height, width), stem_dim, stem_ch, ch, floor, levels,
        1.25, act, head, layout, "official",
    )  # fmt: skip
    config.validate()
    return config


class PositionalEncoding(nn.Module):
    """``t`` of shape ``(B,)`` -> ``(B, 2 * levels)``: sin/cos of ``base^i * pi * t``.

    Arguments:
        levels, base: ``l`` and ``b``.
        layout: ``interleave`` (sin, cos of each level) or ``concat`` (all sines first).
        order: ``official``: ``(t * b^i) * pi`` in float32, ``b^i`` a double rounded to float32,
            as the official ``pos * self.lbase ** (i) * math.pi``; ``pi_first``:
            ``t * (pi * b^i)``, ``b^i`` computed in float32 (saicm's earlier files).
    """

    def __init__(
        self, levels: int, base: float, layout: str = "interleave", order: str = "official"
    ) -> None:
        super().__init__()
        self.layout, self.order = layout, order
        if order == "official":
            scales = torch.tensor([base**i for i in range(levels)], dtype=torch.float64).float()
        else:
            scales = math.pi * base ** torch.arange(levels).float()
        self.register_buffer("freqs", scales, False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = t[:, None] * self.freqs
        if self.order == "official":
            x = x * math.pi  # after the scale, as the official code multiplies
        if self.layout == "interleave":
            return torch.stack([torch.sin(x), torch.cos(x)], dim=2).flatten(1)
        return torch.cat([torch.sin(x), torch.cos(x)], dim=1)


class NeRVBlock(nn.Module):
    """3x3 conv to ``out * s^2`` channels, PixelShuffle(s), activation."""

    def __init__(self, cin: int, cout: int, stride: int, activation: str = "gelu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * stride**2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(stride)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class NeRV(nn.Module):
    """Frame index in, frame out: ``forward(t)`` with ``t`` in [0, 1] of shape ``(B,)`` gives
    ``(B, 3, H, W)`` in [0, 1]. The config is validated first (:class:`SaicmError`)."""

    def __init__(self, config: NeRVConfig) -> None:
        super().__init__()
        config.validate()
        self.config = c = config
        scale = math.prod(c.strides)
        self.map_size = (c.height // scale, c.width // scale)
        self.pe = PositionalEncoding(c.pe_levels, c.pe_base, c.pe_layout, c.pe_order)
        act = ACTIVATIONS[c.activation]
        self.stem = nn.Sequential(
            nn.Linear(2 * c.pe_levels, c.stem_dim),
            act(),
            nn.Linear(c.stem_dim, c.stem_channels * self.map_size[0] * self.map_size[1]),
            act(),
        )
        blocks, cin = [], c.stem_channels
        for s, width in zip(c.strides, c.widths(), strict=True):
            blocks.append(NeRVBlock(cin, width, s, c.activation))
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(cin, 3, c.head_kernel, padding=c.head_kernel // 2)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.pe(t)).view(-1, self.config.stem_channels, *self.map_size)
        return (torch.tanh(self.head(self.blocks(x))) + 1) / 2


def frame_times(indices: torch.Tensor, frames: int) -> torch.Tensor:
    """Frame indices -> the network's input ``t = index / frames`` (as NeRV)."""
    return indices.float() / max(frames, 1)

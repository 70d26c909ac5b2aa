"""Architectures registered by name, each with its default configuration as data.

``create_model("tcm")`` builds a randomly initialised network; trained weights are loaded with
:func:`saicm.codec.installed.load_model`. Register a new architecture with::

    @register_architecture("my-net", config={"N": 128}, paper="...")
    def my_net(N: int) -> CompressionModel: ...

How a model turns an image into what its network codes, and back (:class:`Coding`: padding
rule, entropy-table resolution, output rounding) is a property of the model, not of saicm: each
architecture names the :class:`Coding` that saicm's own models of it use (``coding``) and, where
its authors publish checkpoints, the one their code uses (``published``); a model file records its
own (see :mod:`saicm.codec.model_file`).
"""

from __future__ import annotations

from .. import _compressai  # noqa: F401  (before CompressAI: see saicm._compressai)

# isort: split

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from compressai.models import CompressionModel
from torch import Tensor

from ..errors import ModelError
from .hyperprior import Bmshj2018Hyperprior, Mbt2018Mean
from .tcm import TCM

__all__ = [
    "LIC_TCM_CODING",
    "PAD_MODES",
    "PAD_PLACEMENTS",
    "ROUNDINGS",
    "SAICM_CODING",
    "Architecture",
    "Coding",
    "Padding",
    "create_model",
    "get_architecture",
    "list_architectures",
    "register_architecture",
]

#: Where the padding goes: all of it at the bottom and right, or split evenly (the odd pixel at
#: the bottom / right), as in CompressAI's and LIC-TCM's evaluation scripts.
PAD_PLACEMENTS = ("bottom-right", "centre")
#: What the padding holds: copies of the edge pixels (a flat continuation costs almost no bits)
#: or zeros (black).
PAD_MODES = ("replicate", "zeros")
#: Decoded floats in [0, 1] to 8 bits: ``round(255 x)`` (unbiased) or ``floor(255 x)``, the
#: truncation of ``(x * 255).astype(np.uint8)`` in the LIC-TCM / SA-ICM authors' scripts.
ROUNDINGS = ("nearest", "floor")


@dataclass(frozen=True)
class Padding:
    """How an image is padded before coding: to a multiple of ``multiple`` pixels on each side,
    placed per :data:`PAD_PLACEMENTS`, filled per :data:`PAD_MODES`.

    Raises:
        ModelError: a value outside those choices, or a multiple below 1.
    """

    multiple: int = 64
    placement: str = "bottom-right"
    mode: str = "replicate"

    def __post_init__(self) -> None:
        if isinstance(self.multiple, bool) or not isinstance(self.multiple, int):
            raise ModelError(f"padding multiple {self.multiple!r} is not an integer")
        if not 1 <= self.multiple <= 4096:
            raise ModelError(f"padding multiple {self.multiple} is outside 1..4096")
        if self.placement not in PAD_PLACEMENTS:
            raise ModelError(
                f"padding placement {self.placement!r}: choose {', '.join(PAD_PLACEMENTS)}"
            )
        if self.mode not in PAD_MODES:
            raise ModelError(f"padding mode {self.mode!r}: choose {', '.join(PAD_MODES)}")

    def apply(self, x: Tensor) -> tuple[Tensor, tuple[int, int, int, int]]:
        """Pad ``(B, C, H, W)``; returns the padded tensor and ``(top, left, bottom, right)``."""
        from ..image import pad_to_multiple

        return pad_to_multiple(x, self.multiple, placement=self.placement, mode=self.mode)

    def amounts(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` for an image of ``height`` x ``width`` pixels."""
        from ..image import pad_amounts

        return pad_amounts(height, width, self.multiple, self.placement)


@dataclass(frozen=True)
class Coding:
    """What a model does around its network: the padding, the number of scales of the Gaussian
    conditional's CDF tables when they are built (CompressAI's ``get_scale_table(levels=...)``,
    0.11 to 256, log-spaced), and how decoded floats become 8-bit pixels.

    Raises:
        ModelError: a value outside the documented choices.
    """

    padding: Padding = field(default_factory=Padding)
    scale_levels: int = 128
    rounding: str = "nearest"

    def __post_init__(self) -> None:
        if isinstance(self.scale_levels, bool) or not isinstance(self.scale_levels, int):
            raise ModelError(f"scale levels {self.scale_levels!r} is not an integer")
        if not 2 <= self.scale_levels <= 1024:
            raise ModelError(f"scale levels {self.scale_levels} is outside 2..1024")
        if self.rounding not in ROUNDINGS:
            raise ModelError(f"rounding {self.rounding!r}: choose {', '.join(ROUNDINGS)}")

    @property
    def tag(self) -> str:
        """Short text naming every setting, e.g. ``pad128-centre-zeros.s64.floor``."""
        p = self.padding
        return f"pad{p.multiple}-{p.placement}-{p.mode}.s{self.scale_levels}.{self.rounding}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as a model file stores it."""
        return {
            "padding": {
                "multiple": self.padding.multiple,
                "placement": self.padding.placement,
                "mode": self.padding.mode,
            },
            "scale_levels": self.scale_levels,
            "rounding": self.rounding,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Coding:
        """Inverse of :meth:`to_dict`; raises :class:`ModelError` for anything else."""
        try:
            pad = data["padding"]
            if set(data) != {"padding", "scale_levels", "rounding"} or set(pad) != {
                "multiple",
                "placement",
                "mode",
            }:
                raise TypeError
            return cls(Padding(**pad), data["scale_levels"], data["rounding"])
        except (TypeError, KeyError):
            raise ModelError(f"invalid coding settings {data!r}") from None


#: saicm's own models (and every model file written before a file recorded its coding): pad to
#: a multiple of 64 at the bottom and right with edge pixels (the network's total stride: the
#: fewest padded pixels), 128-scale tables (1.3-1.4% over the entropy estimate, against 2.6-3%
#: with CompressAI's 64 at the same speed: shipped model, astronaut and VOC photos), round to
#: nearest (unbiased).
SAICM_CODING = Coding(Padding(64, "bottom-right", "replicate"), 128, "nearest")
#: The SA-ICM authors' script (``final-0/SA-ICM`` ``coding_m.py --real`` with ``utils.pad``; the
#: padding and tables are also those of LIC-TCM's ``eval.py``): zeros to a multiple of 128,
#: centred; ``update()``, so the tables the checkpoint carries, else CompressAI's default
#: 64-scale table; output ``(x * 255).astype(np.uint8)``.
LIC_TCM_CODING = Coding(Padding(128, "centre", "zeros"), 64, "floor")


@dataclass(frozen=True)
class Architecture:
    """A registered network: how to build it and with what defaults.

    Arguments:
        name: registry name.
        builder: returns an ``nn.Module`` with compressai's ``compress``/``decompress``/``update``.
        config: default keyword arguments of ``builder``.
        downsampling: the network's total stride: the hyper-latent ``z`` is this many times
            smaller than the image, whose padded sides must be a multiple of it.
        paper: the reference to cite.
        description: one line for ``saicm models``.
        coding: how saicm's own models of this architecture code (written into their files).
        published: how the checkpoints its authors publish code in the authors' scripts, used
            for such a checkpoint (``None``: no published checkpoints; ``coding`` is used).
        coding_bytes_per_pixel: peak memory (bytes) that coding one padded pixel takes at most,
            measured (``benchmarks/decode_memory.py``, docs/BENCHMARKS.md); a file or image
            whose estimate exceeds the memory budget is refused before any of it is decoded
            (:func:`saicm.codec.api.memory_budget`).
    """

    name: str
    builder: Callable[..., CompressionModel]
    config: dict[str, Any] = field(default_factory=dict)
    downsampling: int = 64
    paper: str = ""
    description: str = ""
    coding: Coding = SAICM_CODING
    published: Coding | None = None
    coding_bytes_per_pixel: int = 5000

    def __post_init__(self) -> None:
        for c in (self.coding, self.published):
            if c is not None and c.padding.multiple % self.downsampling:
                raise ValueError(
                    f"{self.name}: padding multiple {c.padding.multiple} is not a multiple of "
                    f"the network's stride {self.downsampling}"
                )


_REGISTRY: dict[str, Architecture] = {}


def register_architecture(
    name: str,
    *,
    config: dict[str, Any] | None = None,
    downsampling: int = 64,
    paper: str = "",
    description: str = "",
    coding: Coding = SAICM_CODING,
    published: Coding | None = None,
    coding_bytes_per_pixel: int = 5000,
) -> Callable[[Callable[..., CompressionModel]], Callable[..., CompressionModel]]:
    """Decorator that registers a builder under ``name``."""

    def wrap(builder: Callable[..., CompressionModel]) -> Callable[..., CompressionModel]:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        _REGISTRY[name] = Architecture(
            name,
            builder,
            dict(config or {}),
            downsampling,
            paper,
            description,
            coding,
            published,
            coding_bytes_per_pixel,
        )
        return builder

    return wrap


def get_architecture(name: str) -> Architecture:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ModelError(f"unknown architecture {name!r} (known: {known})") from None


def list_architectures(pattern: str = "*") -> list[str]:
    """Names of the registered architectures (what :func:`create_model` builds, with random
    weights) matching a shell-style ``pattern``; trained models: :func:`saicm.list_models`."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **overrides: Any) -> CompressionModel:
    """Build architecture ``name`` with random weights, for training.

    Arguments:
        name: a registered architecture (:func:`list_architectures`): ``tcm`` (LIC-TCM as in the
            paper), ``tcm-small``, ``mbt2018-mean``, ``mbt2018-mean-vbr``,
            ``bmshj2018-hyperprior``; ``saicm models`` describes each.
        overrides: entries of the architecture's config to replace (``N``, ``M`` and so on:
            ``get_architecture(name).config`` lists them and their defaults).

    Returns:
        a CompressAI ``CompressionModel`` (``torch.nn.Module``) in training mode, with
        ``downsampling`` (64: the side an image is padded to a multiple of). Its
        ``forward(x)`` takes a float batch ``(B, 3, H, W)`` in [0, 1], H and W multiples of
        ``downsampling``, and returns CompressAI's dict ``{"x_hat": (B, 3, H, W) reconstruction,
        "likelihoods": {"y": ..., "z": ...}}`` (noisy quantisation in training mode); the rate
        in bits is ``-sum(log2(likelihoods))``. A trained model for coding is
        :func:`saicm.load_model`'s.

    Raises:
        ModelError: an unknown architecture or config key.
    """
    arch = get_architecture(name)
    unknown = set(overrides) - set(arch.config)
    if unknown:
        raise ModelError(
            f"{name}: unknown config keys {sorted(unknown)} (known: {sorted(arch.config)})"
        )
    net = arch.builder(**{**arch.config, **overrides})
    net.downsampling = arch.downsampling
    return net


_TCM_PAPER = (
    "Liu, Sun, Katto, Learned Image Compression with Mixed Transformer-CNN Architectures, CVPR 2023"
)


@register_architecture(
    "tcm",
    config={
        "N": 128,
        "M": 320,
        "Z": 192,
        "config": [2] * 6,
        "head_dim": [8, 16, 32, 32, 16, 8],
        "num_slices": 5,
    },
    paper=_TCM_PAPER,
    description="LIC-TCM as in SA-ICM (N=128, M=320, 76.57 M parameters)",
    published=LIC_TCM_CODING,
    coding_bytes_per_pixel=5000,
)
def _tcm(**config: Any) -> CompressionModel:
    return TCM(**config)


@register_architecture(
    "tcm-small",
    config={
        "N": 64,
        "M": 192,
        "Z": 128,
        "config": [1] * 6,
        "head_dim": [8, 16, 32, 32, 16, 8],
        "num_slices": 4,
        "atten_dim": 64,
        "cc_dims": [96, 64],
    },
    paper=_TCM_PAPER,
    description="LIC-TCM with one block per stage and narrower heads (17.8 M parameters)",
    published=LIC_TCM_CODING,  # no published weights; a checkpoint of it codes as LIC-TCM's
    coding_bytes_per_pixel=2500,
)
def _tcm_small(**config: Any) -> CompressionModel:
    return TCM(**config)


@register_architecture(
    "mbt2018-mean",
    config={"N": 128, "M": 192},
    paper="Minnen, Balle, Toderici, Joint Autoregressive and Hierarchical Priors "
    "for Learned Image Compression, NeurIPS 2018 (mean-scale hyperprior)",
    description="CompressAI's mean-scale hyperprior (7.0 M parameters at N=128, M=192), fast",
    coding_bytes_per_pixel=500,
)
def _mbt2018_mean(N: int, M: int) -> CompressionModel:
    return Mbt2018Mean(N=N, M=M)


@register_architecture(
    "mbt2018-mean-vbr",
    config={"N": 128, "M": 192, "levels": 8},
    paper="Kamisli, Racape, Choi, Variable-Rate Learned Image Compression with Multi-Objective "
    "Optimization and Quantization-Reconstruction Offsets, DCC 2024 (CompressAI's "
    "MeanScaleHyperpriorVbr, on Minnen et al.'s mean-scale hyperprior)",
    description="mbt2018-mean with a quantisation gain per rate: one model for a range of "
    "lambdas (7.0 M parameters)",
    coding_bytes_per_pixel=500,
)
def _mbt2018_mean_vbr(N: int, M: int, levels: int) -> CompressionModel:
    from .vbr import VariableRateMeanScale

    return VariableRateMeanScale(N=N, M=M, levels=levels)


@register_architecture(
    "bmshj2018-hyperprior",
    config={"N": 128, "M": 192},
    paper="Balle, Minnen, Singh, Hwang, Johnston, Variational Image Compression with a Scale "
    "Hyperprior, ICLR 2018",
    description="CompressAI's scale hyperprior (zero means; 5.08 M parameters at N=128, M=192)",
    coding_bytes_per_pixel=500,
)
def _bmshj2018_hyperprior(N: int, M: int) -> CompressionModel:
    return Bmshj2018Hyperprior(N=N, M=M)

"""Architectures registered by name, each with its default configuration as data.

``create_model("tcm")`` builds a randomly initialised network; trained weights are loaded with
:func:`saicm.codec.zoo.load_model`. Register a new architecture with::

    @register_architecture("my-net", config={"N": 128}, paper="...")
    def my_net(N: int) -> CompressionModel: ...
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from compressai.models import CompressionModel, MeanScaleHyperprior

from ..errors import ModelError
from .tcm import TCM

__all__ = [
    "Architecture",
    "create_model",
    "get_architecture",
    "list_models",
    "register_architecture",
]


@dataclass(frozen=True)
class Architecture:
    """A registered network: how to build it and with what defaults.

    Arguments:
        name: registry name.
        builder: returns an ``nn.Module`` with compressai's ``compress``/``decompress``/``update``.
        config: default keyword arguments of ``builder``.
        downsampling: image sides are padded to a multiple of this.
        paper: the reference to cite.
        description: one line for ``saicm models``.
    """

    name: str
    builder: Callable[..., CompressionModel]
    config: dict[str, Any] = field(default_factory=dict)
    downsampling: int = 64
    paper: str = ""
    description: str = ""


_REGISTRY: dict[str, Architecture] = {}


def register_architecture(
    name: str,
    *,
    config: dict[str, Any] | None = None,
    downsampling: int = 64,
    paper: str = "",
    description: str = "",
) -> Callable[[Callable[..., CompressionModel]], Callable[..., CompressionModel]]:
    """Decorator that registers a builder under ``name``."""

    def wrap(builder: Callable[..., CompressionModel]) -> Callable[..., CompressionModel]:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        _REGISTRY[name] = Architecture(
            name, builder, dict(config or {}), downsampling, paper, description
        )
        return builder

    return wrap


def get_architecture(name: str) -> Architecture:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ModelError(f"unknown architecture {name!r} (known: {known})") from None


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered architectures matching a shell-style ``pattern``."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **overrides: Any) -> CompressionModel:
    """Build architecture ``name`` with random weights; ``overrides`` replace config entries."""
    arch = get_architecture(name)
    unknown = set(overrides) - set(arch.config)
    if unknown:
        raise ModelError(f"{name}: unknown config keys {sorted(unknown)}")
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
)
def _tcm_small(**config: Any) -> CompressionModel:
    return TCM(**config)


@register_architecture(
    "mbt2018-mean",
    config={"N": 128, "M": 192},
    paper="Minnen, Balle, Toderici, Joint Autoregressive and Hierarchical Priors "
    "for Learned Image Compression, NeurIPS 2018 (mean-scale hyperprior)",
    description="CompressAI's mean-scale hyperprior (7.0 M parameters at N=128, M=192), fast",
)
def _mbt2018_mean(N: int, M: int) -> CompressionModel:
    return MeanScaleHyperprior(N=N, M=M)

"""The learned image codec: architectures, trained models, the ``.sic`` format and its API."""

from .. import _compressai  # noqa: F401  (first: CompressAI without its import-time notice)
from .api import decode, encode, resolve_model
from .bitstream import Bitstream, pack, unpack
from .rate import RateChoice, encode_to_bpp
from .registry import create_model, get_architecture, list_architectures, register_architecture
from .zoo import (
    DEFAULT_MODEL,
    TrainedModel,
    export_model,
    installed_models,
    list_models,
    load_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "Bitstream",
    "RateChoice",
    "TrainedModel",
    "create_model",
    "decode",
    "encode",
    "encode_to_bpp",
    "export_model",
    "get_architecture",
    "installed_models",
    "list_architectures",
    "list_models",
    "load_model",
    "pack",
    "register_architecture",
    "resolve_model",
    "unpack",
]

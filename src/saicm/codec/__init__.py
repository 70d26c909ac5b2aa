"""The learned image codec: architectures, trained models, the ``.sic`` format and its API.

The names below are imported on first use (PEP 562), so that ``saicm.codec.cli`` (the parser of
``saicm encode | decode | models``) does not pay for torch and CompressAI.
"""

from __future__ import annotations

from ..utils.lazy import lazy_exports

#: public name -> the submodule that defines it
_WHERE = {
    "decode": "api",
    "encode": "api",
    "resolve_model": "api",
    "Bitstream": "bitstream",
    "pack": "bitstream",
    "unpack": "bitstream",
    "RateChoice": "rate",
    "encode_to_bpp": "rate",
    "create_model": "registry",
    "get_architecture": "registry",
    "list_architectures": "registry",
    "register_architecture": "registry",
    "DEFAULT_MODEL": "installed",
    "TrainedModel": "model_file",
    "export_model": "model_file",
    "installed_models": "installed",
    "list_models": "installed",
    "load_model": "installed",
}

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


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)

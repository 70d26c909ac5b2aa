"""The old home of trained models, kept as an import path (``saicm.codec.zoo``); the code lives
in files named for its jobs:

- :mod:`saicm.codec.model_file`: the model file format (write, read, verify);
- :mod:`saicm.codec.foreign`: foreign checkpoints (layouts, architecture detection);
- :mod:`saicm.codec.installed`: finding, loading, listing and installing models;
- :mod:`saicm.codec.cards`: model cards (releases, provenance).
"""

from __future__ import annotations

from .cards import describe_checkpoint as _describe_checkpoint
from .foreign import detect_architecture
from .installed import (
    DEFAULT_MODEL,
    SHIPPED_DIR,
    import_checkpoint,
    installed_models,
    list_models,
    load_installed_model,
    load_model,
    model_dirs,
)
from .model_file import (
    FORMAT,
    READ_VERSIONS,
    STORAGES,
    TABLE_BUFFERS,
    VERSION,
    TrainedModel,
    _stored_weights,
    coded_tensor,
    export_model,
    weights_hash,
)
from .model_file import read_blob as _from_blob

__all__ = [
    "DEFAULT_MODEL",
    "FORMAT",
    "READ_VERSIONS",
    "SHIPPED_DIR",
    "STORAGES",
    "TABLE_BUFFERS",
    "VERSION",
    "TrainedModel",
    "_describe_checkpoint",
    "_from_blob",
    "_stored_weights",
    "coded_tensor",
    "detect_architecture",
    "export_model",
    "import_checkpoint",
    "installed_models",
    "list_models",
    "load_installed_model",
    "load_model",
    "model_dirs",
    "weights_hash",
]

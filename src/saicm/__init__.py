"""saicm: image and video coding for machines (SA-ICM, Shindo et al., ICIP 2024).

The pipeline: training targets (``saicm.masks``) -> training (``saicm.train``) -> the codec
(``saicm.codec``) -> evaluation, with video beside it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "create_model",
    "decode",
    "encode",
    "list_architectures",
    "list_models",
    "load_model",
]


def __getattr__(name: str) -> Any:
    # Lazy, so that `saicm --help` and error paths do not pay for importing torch.
    if name in __all__:
        return getattr(importlib.import_module(".codec", __name__), name)
    raise AttributeError(f"module 'saicm' has no attribute {name!r}")

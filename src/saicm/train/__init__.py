"""Training SA-ICM, region-learning and plain codecs (one masked rate-distortion loss).

The names below are imported on first use (PEP 562), so that ``saicm.train.cli`` (the parser of
``saicm train``) does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the submodule that defines it
_WHERE = {
    "TrainConfig": "config",
    "train": "loop",
    "validate": "loop",
    "RateDistortionLoss": "loss",
}

__all__ = ["RateDistortionLoss", "TrainConfig", "train", "validate"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

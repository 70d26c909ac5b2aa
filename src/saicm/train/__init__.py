"""Training SA-ICM, region-learning and plain codecs (one masked rate-distortion loss).

The names below are imported on first use (PEP 562), so that ``saicm.train.cli`` (the parser of
``saicm train``) does not pay for torch.
"""

from __future__ import annotations

from ..utils.lazy import lazy_exports

#: public name -> the submodule that defines it
_WHERE = {
    "TrainConfig": "config",
    "train": "loop",
    "validate": "loop",
    "RateDistortionLoss": "loss",
}

__all__ = ["RateDistortionLoss", "TrainConfig", "train", "validate"]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)

"""Training SA-ICM, region-learning and plain codecs (one masked rate-distortion loss)."""

from .loop import TrainConfig, train
from .loss import RateDistortionLoss

__all__ = ["RateDistortionLoss", "TrainConfig", "train"]

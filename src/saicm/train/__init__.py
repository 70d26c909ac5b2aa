"""Training SA-ICM, region-learning and plain codecs (one masked rate-distortion loss)."""

from .config import TrainConfig
from .loop import train, validate
from .loss import RateDistortionLoss

__all__ = ["RateDistortionLoss", "TrainConfig", "train", "validate"]

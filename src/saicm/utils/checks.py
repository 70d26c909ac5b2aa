"""The range and type of every setting of an image training run (``saicm train`` options and
``config.yaml`` values), in a module light enough for the command line to import: one table,
used by argparse and by :meth:`saicm.train.TrainConfig.validate`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .options import (
    choice,
    finite_float,
    fraction,
    int_range,
    nonnegative_float,
    positive_int,
    safe_name,
)

__all__ = ["TRAIN_CHECKS", "TRAIN_OPTIONAL", "TRAIN_PAIRS"]

#: settings that are two values (``--lmbda-range LO HI``)
TRAIN_PAIRS = ("lmbda_range",)
#: settings that may be unset (None): the default is then decided by the other settings
TRAIN_OPTIONAL = ("name", "lmbda", "lmbda_range", "unit_step_lmbda", "quant")

#: setting -> checker (see :mod:`saicm.utils.options`); None values mean "not set". The checker
#: of a setting in :data:`TRAIN_PAIRS` checks each of its two values.
TRAIN_CHECKS: dict[str, Callable[[Any], Any]] = {
    "loss": choice("mse", "region", "edge"),
    "lmbda": finite_float(0, 1e4, lo_open=True),
    "lmbda_range": finite_float(0, 1e4, lo_open=True),  # each of the two, LO < HI
    "unit_step_lmbda": finite_float(0, 1e4, lo_open=True),  # within lmbda_range
    "quant": choice("noise", "ste", "mixed"),
    "schedule": choice("step", "cosine"),
    "warmup": int_range(0, 10**9),
    "steps": int_range(1, 10**9),
    "batch_size": int_range(1, 1 << 16),
    "accumulate": int_range(1, 1 << 16),
    "crop": int_range(64, 1 << 14),
    "object_crops": fraction,
    "outside_weight": nonnegative_float,
    "lr": finite_float(0, 1),  # 0 keeps the --init weights (a check of a set-up)
    "aux_lr": finite_float(0, 1),
    "gamma": finite_float(0, 1, lo_open=True),
    "clip": nonnegative_float,
    "amp": choice("off", "bf16", "fp16"),
    "val_every": positive_int,
    "checkpoint_every": positive_int,
    "log_every": positive_int,
    "seed": int_range(0, 2**32 - 1),
    "workers": int_range(0, 256),
    "name": safe_name,
}

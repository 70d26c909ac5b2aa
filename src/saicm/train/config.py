"""Every setting of a training run, as data: a YAML file, overridden by the command line, saved
as ``config.yaml`` in the run folder so that a run can be repeated or resumed exactly."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..codec.registry import get_architecture
from ..errors import SaicmError
from ..utils.settings import Settings
from .loss import LOSSES

__all__ = ["RESUME_APPLIED", "RESUME_FIXED", "TrainConfig"]

#: Settings a resumed run cannot change: they define the model, its loss or the data of every
#: step (changing one mid-run gives a model that no single setting describes). ``--resume``
#: with another value is refused, naming the setting and both values; start a new run with
#: ``--init`` instead.
RESUME_FIXED = (
    "images",
    "masks",
    "loss",
    "lmbda",
    "arch",
    "arch_config",
    "init",
    "batch_size",
    "accumulate",
    "crop",
    "object_crops",
    "outside_weight",
    "seed",
)
#: Settings a resumed run applies from the step it resumes at, recorded as a new segment of
#: ``history``: the LR schedule is recomputed from the new ``steps``, ``lr``, ``milestones`` and
#: ``gamma`` (the LR of step ``s`` is ``lr * gamma ** #{milestones <= s}``).
RESUME_APPLIED = (
    "steps",
    "lr",
    "aux_lr",
    "milestones",
    "gamma",
    "clip",
    "amp",
    "val_images",
    "val_masks",
    "val_every",
    "checkpoint_every",
    "log_every",
    "workers",
    "name",
    "card",
)


@dataclass
class TrainConfig(Settings):
    """A training run.

    Arguments:
        images: folder of training images.
        masks: folder of masks (edge masks for ``edge``, object masks for ``region``).
        loss: ``mse`` (Eq. 1), ``region`` (Eq. 3) or ``edge`` (SA-ICM, Eq. 5).
        lmbda: rate-distortion trade-off (distortion weight on 255^2 * MSE).
        arch: registered architecture; ``arch_config`` overrides its defaults.
        init: a saicm model (installed name or file) whose weights start the run, e.g. a plain
            MSE model that every loss and lambda of a study is fine-tuned from; None starts from
            random weights.
        steps: optimisation steps in all.
        batch_size: global batch (split over ranks and ``accumulate`` micro-batches).
        accumulate: micro-batches per rank per step (gradient accumulation).
        crop: side of the square random crops (a multiple of 64).
        object_crops: fraction of the crops placed around a pixel of the mask (see
            ``MaskedImageFolder``); 0.5 or more for sparse object masks in ``region``.
        outside_weight: weight of squared errors outside the mask (0 = the paper's Eq. 3 and 5).
        lr, aux_lr: learning rates of the network and of the entropy bottleneck's quantiles.
        milestones: fractions of ``steps`` at which the LR is multiplied by ``gamma``
            (LIC-TCM: 45 and 48 of 50 epochs).
        clip: gradient-norm clipping (0 = off).
        amp: autocast dtype for the forward pass: ``off``, ``bf16`` or ``fp16`` (CUDA).
        val_images, val_masks: held-out images (and masks) for validation.
        val_every: steps between validations; checkpoint_every: steps between checkpoints (a
            kill loses at most this many); log_every: steps between log rows.
        seed: seeds the data order, crops, flips, quantisation noise and initial weights.
        workers: data-loading processes.
        name: name of the exported model (default ``<loss>-<arch>-<lmbda>``).
        card: extra facts for the model card (data, mask source, ...).
        history: written by the trainer, never read as a setting: the segments of the run as
            they were run (``from_step``, ``to_step`` and the schedule of each), one more per
            ``--resume`` (see :data:`RESUME_FIXED` and docs/TRAINING.md).
    """

    images: str = ""
    masks: str | None = None
    loss: str = "edge"
    lmbda: float = 0.05
    arch: str = "mbt2018-mean"
    arch_config: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    steps: int = 10000
    batch_size: int = 8
    accumulate: int = 1
    crop: int = 256
    object_crops: float = 0.0
    outside_weight: float = 0.0
    lr: float = 1e-4
    aux_lr: float = 1e-3
    milestones: list[float] = field(default_factory=lambda: [0.9, 0.96])
    gamma: float = 0.1
    clip: float = 1.0
    amp: str = "off"
    val_images: str | None = None
    val_masks: str | None = None
    val_every: int = 1000
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0
    workers: int = 0
    name: str | None = None
    card: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def read_settings(path: str | Path) -> dict[str, Any]:
        """The settings a YAML file gives (only those it names; ``history`` is not a setting).

        Raises:
            SaicmError: missing file, invalid YAML, or not a mapping.
        """
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise SaicmError(f"{path}: no such config file") from None
        except yaml.YAMLError as exc:
            raise SaicmError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise SaicmError(f"{path}: a config file holds a mapping of settings")
        data.pop("history", None)  # what a run did is not a setting of the next one
        return data

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        return cls().override(cls.read_settings(path), source=str(path))

    def save(self, path: str | Path) -> None:
        from ..utils.io import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(yaml.safe_dump(dataclasses.asdict(self), sort_keys=False))

    def validate(self, world: int = 1) -> None:
        """Check every setting (range and type, see :data:`saicm.utils.checks.TRAIN_CHECKS`)
        before any work.

        Raises:
            SaicmError: one line naming the setting and the value, e.g. ``lmbda -0.05: expected
                a finite number > 0 and <= 10000``.
        """
        from ..utils.checks import TRAIN_CHECKS
        from ..utils.options import check, fraction

        for key, checker in TRAIN_CHECKS.items():
            value = getattr(self, key)
            if value is not None or key != "name":
                setattr(self, key, check(key, value, checker))  # "10" from a file -> 10
        if not isinstance(self.milestones, list) or not all(
            check("milestone", m, fraction) < 1 for m in self.milestones
        ):
            raise SaicmError(f"milestones {self.milestones!r}: expected a list of fractions < 1")
        for key in ("arch_config", "card"):
            if not isinstance(getattr(self, key), dict):
                raise SaicmError(f"{key} {getattr(self, key)!r}: expected a mapping")
        self._check_arch_config()
        for key in ("images", "masks", "val_images", "val_masks", "init"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise SaicmError(f"{key} {value!r}: expected a path")
        if not self.images:
            raise SaicmError("no training images: give --images DIR")
        if self.loss not in LOSSES:
            raise SaicmError(f"unknown loss {self.loss!r} (choose from {', '.join(LOSSES)})")
        if self.loss != "mse" and not self.masks:
            raise SaicmError(f"loss {self.loss!r} needs --masks")
        get_architecture(self.arch)
        if self.steps < 1 or self.crop < 64 or self.crop % 64:
            raise SaicmError("steps must be >= 1 and crop a multiple of 64")
        if self.outside_weight < 0:
            raise SaicmError(f"outside weight {self.outside_weight}: must be >= 0")
        if self.amp not in ("off", "bf16", "fp16"):
            raise SaicmError(f"amp {self.amp!r}: choose off, bf16 or fp16")
        per = world * self.accumulate
        if self.batch_size < per or self.batch_size % per:
            raise SaicmError(
                f"batch size {self.batch_size} does not split into {world} rank(s) x "
                f"{self.accumulate} micro-batch(es)"
            )

    def _check_arch_config(self) -> None:
        """Keys of the architecture's config only; sizes are integers 1..4096 (lists of them
        where the default is a list)."""
        from ..utils.options import check, int_range

        defaults = get_architecture(self.arch).config
        unknown = sorted(set(self.arch_config) - set(defaults))
        if unknown:
            raise SaicmError(f"arch_config: {self.arch} has no setting {', '.join(unknown)}")
        size = int_range(1, 4096)
        for key, value in self.arch_config.items():
            if isinstance(defaults[key], list):
                if not isinstance(value, list) or len(value) != len(defaults[key]):
                    raise SaicmError(
                        f"arch_config.{key} {value!r}: expected a list of "
                        f"{len(defaults[key])} integers"
                    )
                for v in value:
                    check(f"arch_config.{key}", v, size)
            else:
                check(f"arch_config.{key}", value, size)
    def milestone_steps(self) -> list[int]:
        """The steps at which the LR is multiplied by ``gamma`` (``milestones`` x ``steps``)."""
        return sorted(round(f * self.steps) for f in self.milestones)

    def lr_at(self, step: int) -> float:
        """The learning rate of the step after ``step`` steps (0-based), as MultiStepLR gives."""
        return self.lr * self.gamma ** sum(m <= step for m in self.milestone_steps())

    @property
    def model_name(self) -> str:
        return self.name or f"{self.loss}-{self.arch}-{self.lmbda:g}"

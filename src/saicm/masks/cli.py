"""``saicm masks``: training masks (SAM, HED, classical edges, objects) for a folder of images,
or one ``--preview`` picture."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import SaicmError
from ..utils.commands import EXIT_FAILED, on_interrupt, say_error
from ..utils.options import finite_float, fraction, int_range

__all__ = ["add_masks_parser"]

_OPEN_FRACTION = finite_float(0, 1, lo_open=True, hi_open=True)

#: saicm.masks.models.SAM_TYPES, spelled out: building the parser imports no torch
_SAM_TYPES = (
    "vit_h",
    "vit_l",
    "vit_b",
    "vit_t",
    "lite_medsam",
    *(f"sam2{v}_hiera_{k}" for v in ("", ".1") for k in ("t", "s", "b+", "l")),
)


def _check_image_batch(args: argparse.Namespace) -> None:
    """Refuse ``--image-batch`` for a source other than sam; note that it is ignored where
    SAM encodes one image at a time (segment-anything's generator, SAM 2's).

    Arguments:
        args: the parsed ``saicm masks`` arguments.
    """
    if args.image_batch is None:
        return
    if args.source != "sam":
        raise SaicmError(
            f"--image-batch is for --source sam (SAM's image encoder), not --source {args.source}"
        )
    if args.generator == "segment-anything":
        what = "--generator segment-anything"
    elif (args.sam_type or "").startswith("sam2"):
        what = f"--sam-type {args.sam_type} (sam2's own generator)"
    else:
        return
    if args.image_batch > 1:
        print(
            f"saicm: note: --image-batch {args.image_batch} ignored: {what} encodes one image "
            "at a time",
            file=sys.stderr,
        )


def cmd_masks(args: argparse.Namespace) -> int:
    from .build import build_masks, torchrun_shard
    from .sources import create_source

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
    _check_image_batch(args)
    launched = torchrun_shard()
    if launched and settings["device"] is None:
        import os

        import torch

        if torch.cuda.is_available():
            settings["device"] = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    source = create_source(args.source, **settings)
    if args.preview:
        from ..image import load_image
        from .preview import preview

        image = load_image(args.preview)
        target = Path(args.output)
        if target.suffix.lower() != ".png":
            raise SaicmError("with --preview, -o names the picture to write (a .png file)")
        from ..utils.io import atomic_path, refuse_existing, refuse_overwrite

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
    summary = build_masks(
        args.images,
        args.output,
        source,
        shard=shard,
        overwrite=args.overwrite,
        image_batch=args.image_batch,
    )
    for line in summary.lines():
        print(line)
    if summary.failures:
        total = summary.done + summary.skipped + len(summary.failures)
        say_error(f"{len(summary.failures)} of {total} image(s) failed")
    return EXIT_FAILED if summary.failures else 0


def add_masks_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``masks`` to the sub-commands ``sub``."""
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
    ks.add_argument(
        "--checkpoint", default=None, help="official SAM, MobileSAM or SAM 2 / 2.1 weights"
    )
    ks.add_argument(
        "--sam-type",
        default=None,
        choices=_SAM_TYPES,
        metavar="TYPE",
        help="vit_h (default), vit_l, vit_b; vit_t (MobileSAM); lite_medsam; SAM 2 / 2.1: "
        "sam2_hiera_t/s/b+/l, sam2.1_hiera_t/s/b+/l (docs/MASKS.md)",
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
    ks.add_argument(
        "--image-batch",
        type=int_range(1, 256),
        default=None,
        metavar="N",
        help="images per image-encoder call, batched generator only (default 4 on CUDA, 1 on "
        "the CPU; not a setting of the masks: docs/MASKS.md)",
    )
    kh = k.add_argument_group("hed")
    kh.add_argument(
        "--threshold", type=_OPEN_FRACTION, default=None, help="boundary probability (0.5)"
    )
    ko = k.add_argument_group("objects")
    ko.add_argument("--annotations", default=None, help="COCO instances json")
    ko.add_argument("--min-score", type=fraction, default=None, help="detector score (0.5)")
    k.set_defaults(func=cmd_masks)

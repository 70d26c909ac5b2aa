"""Which cached evaluation cells ``saicm eval`` may use: the key must be this run's
(:func:`saicm.eval.runner.cell_key`) and the values what a coder and the tasks write for the
image (:func:`saicm.eval.runner._run_cell`); anything else is computed again."""

from __future__ import annotations

import math
from typing import Any

from ..data.coco import is_finite_number
from .metrics import MS_SSIM_MIN_SIDE
from .tasks import Task

__all__ = ["matches_key", "well_formed"]


def matches_key(rec: Any, key: dict[str, Any]) -> bool:
    """A cached cell that this run can use: same image, codec, format, and every task of this
    run computed by the same model (a cell may hold more tasks than this run asks for)."""
    old = rec.get("key") if isinstance(rec, dict) else None
    if not isinstance(old, dict) or any(old.get(k) != key[k] for k in ("format", "image", "codec")):
        return False
    done, predictions = old.get("tasks"), rec.get("predictions")
    if not isinstance(done, dict) or not isinstance(predictions, dict):
        return False
    return all(done.get(n) == fp for n, fp in key["tasks"].items()) and (
        key["tasks"].keys() <= predictions.keys()
    )


def _number(v: Any, low: float = -math.inf) -> bool:
    """A finite JSON number >= ``low`` (not a bool, NaN or an infinity)."""
    return is_finite_number(v) and v >= low


def _prediction_ok(r: Any, size: tuple[int, int]) -> bool:
    """One recognised object as the tasks write it (:mod:`saicm.eval.tasks`)."""
    if not isinstance(r, dict) or type(r.get("category_id")) is not int:
        return False
    if not _number(r.get("score")):
        return False
    box, seg, desc = r.get("bbox"), r.get("segmentation"), r.get("descriptor")
    if box is not None and not (
        isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)
        and box[2] >= 0 and box[3] >= 0
    ):  # fmt: skip
        return False
    if seg is not None and not (
        isinstance(seg, dict)
        and seg.get("size") == list(size)
        and isinstance(seg.get("counts"), str)
    ):
        return False
    return desc is None or (isinstance(desc, list) and all(_number(v) for v in desc))


def well_formed(
    rec: dict[str, Any], size: tuple[int, int], coded: bool, tasks: list[Task]
) -> bool:
    """A cell's values are what ``saicm.eval.runner._run_cell`` writes for an image of ``size``
    (H, W): the rate, the pixels and every prediction are checked, so that a cell edited by hand
    or damaged (a hostile report folder) is computed again instead of scored (bpp from its
    ``bytes``)."""
    b, pixels = rec.get("bytes"), size[0] * size[1]
    # no real file of an image is larger than 128 bits a pixel and 64 KiB of headers
    if type(b) is not int or not 0 <= b <= 16 * pixels + 65536:
        return False
    if type(rec.get("pixels")) is not int or rec["pixels"] != pixels or not all(
        _number(rec.get(k), 0) for k in ("encode_s", "decode_s")
    ):
        return False
    if coded:  # PSNR: inf when lossless; MS-SSIM: NaN ("n/a") only on images too small for it
        q, m = rec.get("psnr"), rec.get("ms_ssim")
        if not (_number(q, 0) or q == math.inf):
            return False
        small = min(size) < MS_SSIM_MIN_SIDE
        if not (_number(m) or (small and isinstance(m, float) and math.isnan(m))):
            return False
    predictions = rec["predictions"]
    return all(
        isinstance(predictions[t.name], list)
        and all(_prediction_ok(r, size) for r in predictions[t.name])
        for t in tasks
    )

"""Accuracy and rate metrics: COCO mAP (pycocotools), pseudo ground truth, BD-rate."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import MIN_OVERLAP

__all__ = [
    "MIN_OVERLAP",
    "bd_rate",
    "bd_rate_interval",
    "bd_rate_replicates",
    "coco_map",
    "coco_map_resampled",
    "coded_rate_psnr",
    "curve_overlap",
    "face_privacy",
    "ms_ssim",
    "panoptic_quality",
    "pseudo_ground_truth",
    "psnr",
]


# MIN_OVERLAP lives in the package's light __init__ (the CLI's parser shows it, without numpy)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) over every pixel of two uint8 images or clips; inf when they are equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / mse) if mse > 0 else math.inf


#: Shortest side MS-SSIM needs: its five scales halve the image four times and each keeps an
#: 11-pixel Gaussian window (``pytorch_msssim.ms_ssim`` asserts ``side > (11 - 1) * 2**4``).
MS_SSIM_MIN_SIDE = 161


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two ``(H, W, 3)`` uint8 RGB images, as ``compressai.utils.eval_model``
    reports it: ``pytorch_msssim.ms_ssim`` on [0, 1] floats with ``data_range=1`` (1 = equal).

    Returns:
        the MS-SSIM in [0, 1], or NaN ("n/a") when the shorter side is below
        :data:`MS_SSIM_MIN_SIDE` pixels, too small for its five scales.
    """
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return math.nan
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 255

    # One channel at a time: pytorch_msssim scores each channel on its own and averages them,
    # so the mean of the three is the same value (to float rounding) at about half the peak
    # memory (a random 4096x4096 pair, peak RSS of a fresh process: 2.7 GB -> 1.4 GB, by hand
    # 2026-12-03; equality tested in tests/eval/test_metrics.py).
    scores = []
    with torch.inference_mode():
        for c in range(a.shape[2]):
            one = tensor(a[..., c : c + 1]), tensor(b[..., c : c + 1])
            scores.append(float(_ms_ssim(*one, data_range=1.0)))
    return float(np.mean(scores))


def coded_rate_psnr(images: Sequence[np.ndarray], model: Any) -> tuple[float, float]:
    """Bits per pixel of the real ``.sic`` files of ``images`` coded with ``model``, and their
    mean PSNR after decoding."""
    from ..codec.api import decode, encode

    bits = pixels = 0
    psnrs = []
    for img in images:
        data = encode(img, model)
        bits += 8 * len(data)
        pixels += img.shape[0] * img.shape[1]
        psnrs.append(psnr(img, decode(data, model)))
    return bits / pixels, float(np.mean(psnrs))


def pseudo_ground_truth(
    predictions: dict[int, list[dict[str, Any]]],
    sizes: dict[int, tuple[int, int]],
    min_score: float = 0.5,
) -> dict[str, Any]:
    """A COCO dataset made of a model's confident outputs on the uncompressed images.

    Arguments:
        predictions: image id -> COCO-format results (``category_id``, ``bbox``, ``score``, and
            ``segmentation`` for instance tasks).
        sizes: image id -> (height, width).
        min_score: outputs at or above this score become ground-truth objects.
    """
    anns = []
    for img_id, preds in predictions.items():
        for p in preds:
            if p["score"] < min_score:
                continue
            ann = {
                "id": len(anns) + 1,
                "image_id": img_id,
                "category_id": p["category_id"],
                "bbox": list(p["bbox"]),
                "iscrowd": 0,
                "area": float(p["bbox"][2] * p["bbox"][3]),
            }
            if "segmentation" in p:
                from pycocotools import mask as mask_utils

                ann["segmentation"] = p["segmentation"]
                ann["area"] = float(mask_utils.area(p["segmentation"]))
            anns.append(ann)
    cats = sorted({a["category_id"] for a in anns})
    return {
        "images": [{"id": i, "height": h, "width": w} for i, (h, w) in sizes.items()],
        "annotations": anns,
        "categories": [{"id": c} for c in cats],
    }


def _coco_eval(gt: dict[str, Any], results: list[dict[str, Any]], iou_type: str) -> Any:
    """A pycocotools ``COCOeval`` of ``results`` against ``gt`` (both copied: pycocotools edits)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco_gt = COCO()
    coco_gt.dataset = {**gt, "annotations": [{**a} for a in gt["annotations"]]}
    coco_gt.createIndex()
    return COCOeval(coco_gt, coco_gt.loadRes([{**r} for r in results]), iou_type)


def coco_map(
    gt: dict[str, Any],
    results: list[dict[str, Any]],
    iou_type: str = "bbox",
    image_ids: Sequence[int] | None = None,
) -> dict[str, float]:
    """``{"map": AP@[.5:.95], "map50": AP@.5, "objects": n}`` with pycocotools.

    NaN when the ground truth has no object (nothing to find). No result at all scores 0.
    """
    ids = list(image_ids) if image_ids is not None else [im["id"] for im in gt["images"]]
    anns = [a for a in gt["annotations"] if a["image_id"] in set(ids)]
    if not anns:
        return {"map": math.nan, "map50": math.nan, "objects": 0}
    if not results:
        return {"map": 0.0, "map50": 0.0, "objects": len(anns)}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        ev = _coco_eval(gt, results, iou_type)
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {
        "map": max(0.0, float(ev.stats[0])),
        "map50": max(0.0, float(ev.stats[1])),
        "objects": len(anns),
    }


def coco_map_resampled(
    gt: dict[str, Any],
    results: list[dict[str, Any]],
    draws: Sequence[Sequence[int]],
    iou_type: str = "bbox",
) -> np.ndarray:
    """AP@[.5:.95] of the image sets ``draws`` (image ids, repeats allowed, any number each):
    the bootstrap replicates of :func:`coco_map`.

    Each image is matched against its ground truth once (``COCOeval.evaluate``); a replicate
    only re-accumulates those per-image matches in the drawn order, so an image drawn twice
    counts twice, as if it were two images. NaN for a replicate with no object.
    """
    if not gt["annotations"]:
        return np.full(len(draws), math.nan)
    if not results:
        return np.zeros(len(draws))
    with contextlib.redirect_stdout(io.StringIO()):
        ev = _coco_eval(gt, results, iou_type)
        ev.params.imgIds = sorted({int(i) for draw in draws for i in draw})
        # Only what AP@[.5:.95] reads (all areas, 100 detections, categories with objects):
        # accumulate() loops over categories x areas x limits, once per draw.
        ev.params.catIds = sorted({a["category_id"] for a in gt["annotations"]})
        ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [[0, 1e10]], ["all"], [100]
        ev.evaluate()
        done = ev._paramsEval  # evalImgs is laid out category x area range x image, in here
        matched, n_img = ev.evalImgs, len(done.imgIds)
        blocks = len(done.catIds) * len(done.areaRng)
        where = {img: k for k, img in enumerate(done.imgIds)}
        out = np.empty(len(draws))
        for b, draw in enumerate(draws):
            pos = [where[int(i)] for i in draw]
            ev.evalImgs = [matched[blk * n_img + k] for blk in range(blocks) for k in pos]
            done.imgIds = ev.params.imgIds = list(range(len(pos)))
            ev.accumulate()
            # what summarize() reports as AP@[.5:.95]: all areas, 100 detections per image
            prec = ev.eval["precision"][:, :, :, 0, -1]
            out[b] = float(prec[prec > -1].mean()) if (prec > -1).any() else math.nan
    return out


def bd_rate_replicates(
    anchor: tuple[Sequence[float], Sequence[Sequence[float]]],
    test: tuple[Sequence[float], Sequence[Sequence[float]]],
    min_overlap: float = MIN_OVERLAP,
) -> tuple[list[float], int]:
    """BD-rate (%) of every bootstrap replicate of two curves that gives one, and the number of
    replicates.

    Each curve is ``(bpp values, replicates)`` with one sequence of accuracies per point, all of
    the same length (the replicates, paired across points and curves: the same image draw). A
    replicate whose curves overlap on less than ``min_overlap`` of their range gives none, as in
    :func:`bd_rate`.
    """
    ra, reps_a = anchor
    rt, reps_t = test
    n = len(reps_a[0])
    values = []
    for b in range(n):
        v, _ = bd_rate(
            (ra, [r[b] for r in reps_a]), (rt, [r[b] for r in reps_t]), min_overlap=min_overlap
        )
        if v is not None and math.isfinite(v):
            values.append(v)
    return values, n


def bd_rate_interval(
    anchor: tuple[Sequence[float], Sequence[Sequence[float]]],
    test: tuple[Sequence[float], Sequence[Sequence[float]]],
    level: float = 0.95,
    min_overlap: float = MIN_OVERLAP,
) -> tuple[float, float] | None:
    """Percentile interval of BD-rate over bootstrap replicates of two curves
    (:func:`bd_rate_replicates`). None when fewer than half of the replicates give a BD-rate:
    the estimate then rests on an overlap that most draws of the images do not have."""
    values, n = bd_rate_replicates(anchor, test, min_overlap=min_overlap)
    if len(values) < max(1, n / 2):
        return None
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _clean(rates: Sequence[float], accs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted by rate, keeping only points that improve accuracy (the upper envelope), as
    BD interpolation needs accuracy strictly increasing with rate."""
    pts = sorted(
        (r, a)
        for r, a in zip(rates, accs, strict=True)
        if math.isfinite(r) and math.isfinite(a) and r > 0
    )
    keep_r, keep_a = [], []
    for r, a in pts:
        if not keep_a or a > keep_a[-1]:
            keep_r.append(r)
            keep_a.append(a)
    return np.array(keep_r), np.array(keep_a)




def curve_overlap(
    anchor: tuple[Sequence[float], Sequence[float]], test: tuple[Sequence[float], Sequence[float]]
) -> float:
    """The share (0..1) of the accuracy range spanned by both curves together on which both are
    defined: ``(min(max) - max(min)) / (max(max) - min(min))``, as ``bjontegaard`` measures it,
    on the rising parts of the curves that BD-rate uses. 0 where they do not overlap."""
    _, aa = _clean(*anchor)
    _, at = _clean(*test)
    if len(aa) < 2 or len(at) < 2:
        return 0.0
    span = max(aa.max(), at.max()) - min(aa.min(), at.min())
    shared = min(aa.max(), at.max()) - max(aa.min(), at.min())
    return float(max(shared, 0.0) / span) if span > 0 else 0.0


def bd_rate(
    anchor: tuple[Sequence[float], Sequence[float]],
    test: tuple[Sequence[float], Sequence[float]],
    method: str = "pchip",
    min_overlap: float = MIN_OVERLAP,
) -> tuple[float | None, str]:
    """Bjontegaard delta rate (%) of ``test`` against ``anchor`` on rate-accuracy curves.

    Each curve is ``(bpp values, accuracy values)``. Negative means fewer bits for the same
    accuracy. Returns ``(None, reason)`` where it cannot be computed: fewer than two useful
    points, accuracy ranges that do not overlap (extrapolating would be a guess), or that overlap
    on less than ``min_overlap`` of the range they span (:data:`MIN_OVERLAP`,
    :func:`curve_overlap`).
    """
    import warnings

    import bjontegaard

    ra, aa = _clean(*anchor)
    rt, at = _clean(*test)
    if len(ra) < 2 or len(rt) < 2:
        return None, "fewer than two points with rising accuracy"
    lo, hi = max(aa.min(), at.min()), min(aa.max(), at.max())
    if hi <= lo:
        return None, (
            f"accuracy ranges do not overlap ({aa.min():.3f}-{aa.max():.3f} vs "
            f"{at.min():.3f}-{at.max():.3f})"
        )
    overlap = curve_overlap(anchor, test)
    if overlap < min_overlap:
        return None, (
            f"curves overlap on {overlap:.1%} of their accuracy range ({lo:.3f}-{hi:.3f} of "
            f"{min(aa.min(), at.min()):.3f}-{max(aa.max(), at.max()):.3f}), below the "
            f"{min_overlap:.0%} a BD-rate needs"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the overlap is checked above, against our own bound
        value = bjontegaard.bd_rate(
            ra, aa, rt, at, method=method, require_matching_points=False, min_overlap=0.0
        )
    return float(value), ""


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def face_privacy(
    original: list[list[dict[str, Any]]],
    decoded: list[list[dict[str, Any]]],
    min_score: float = 0.9,
    same_person: float = 0.6,
) -> dict[str, float]:
    """How many faces of the originals survive coding, and how many stay recognisable.

    Faces found with score >= ``min_score`` in an original are the reference. ``face_recall``:
    the share found again in the decoded image (IoU >= 0.5). ``identity_kept``: the share whose
    decoded face is still the same person (dlib descriptor distance < ``same_person``); NaN when
    no descriptor was computed. Lower is more private.
    """
    total = found = same = 0
    described = False
    for orig, dec in zip(original, decoded, strict=True):
        for face in orig:
            if face["score"] < min_score:
                continue
            total += 1
            best = max(dec, key=lambda d: _iou(face["bbox"], d["bbox"]), default=None)
            if best is None or _iou(face["bbox"], best["bbox"]) < 0.5:
                continue
            found += 1
            if "descriptor" in face and "descriptor" in best:
                described = True
                dist = float(np.linalg.norm(np.subtract(face["descriptor"], best["descriptor"])))
                same += dist < same_person
    if total == 0:
        return {"face_recall": math.nan, "identity_kept": math.nan, "faces": 0}
    return {
        "face_recall": found / total,
        "identity_kept": same / total if described else math.nan,
        "faces": total,
    }


def panoptic_quality(
    gt: list[list[dict[str, Any]]], pred: list[list[dict[str, Any]]]
) -> dict[str, float]:
    """Panoptic quality (Kirillov et al., CVPR 2019) over images, with panopticapi's rules
    (void pixels included): :func:`saicm.tasks.panoptic.panoptic_quality`, which says more."""
    from ..tasks.panoptic import panoptic_quality as pq

    return pq(gt, pred)

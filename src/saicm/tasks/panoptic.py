"""Panoptic segmentation through Hugging Face ``transformers`` (Mask2Former, MaskFormer, DETR
panoptic...), with the user's weights: a local folder or a hub name, e.g.
``facebook/mask2former-swin-tiny-coco-panoptic`` (downloaded by transformers where the internet
is reachable), and panoptic quality with panopticapi's rules (:func:`panoptic_quality`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = ["PanopticSegmenter", "panoptic_quality"]


class PanopticSegmenter:
    """Image in, ``(segment map, [{"id", "category_id", "score"}])`` out.

    Arguments:
        model: folder (``save_pretrained``) or hub name of a universal-segmentation model.
        threshold, mask_threshold, overlap_mask_area_threshold: transformers' post-processing.
        device: ``cuda`` or ``cpu``.
    """

    def __init__(
        self,
        model: str,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        overlap_mask_area_threshold: float = 0.8,
        device: str | None = None,
    ) -> None:
        try:
            import torch
            from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation
        except ImportError:
            raise ModelError(
                "panoptic segmentation needs transformers (pip install transformers)"
            ) from None
        # Never code from the model's folder or hub repo (trust_remote_code); weights from
        # safetensors where the model has them, else transformers' torch.load(weights_only=True).
        try:
            self.processor = AutoImageProcessor.from_pretrained(model, trust_remote_code=False)
            self.net = AutoModelForUniversalSegmentation.from_pretrained(
                model, trust_remote_code=False
            ).eval()
        except (OSError, ValueError, TypeError, ImportError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise ModelError(f"{model}: not a panoptic segmentation model ({first})") from None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net.to(self.device)
        self.options = {
            "threshold": threshold,
            "mask_threshold": mask_threshold,
            "overlap_mask_area_threshold": overlap_mask_area_threshold,
        }
        self.name = model

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        import torch

        inputs = self.processor(images=image, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.net(**inputs)
        res = self.processor.post_process_panoptic_segmentation(
            out, target_sizes=[image.shape[:2]], label_ids_to_fuse=set(), **self.options
        )[0]
        segments = [
            {"id": int(s["id"]), "category_id": int(s["label_id"]), "score": float(s["score"])}
            for s in res["segments_info"]
        ]
        return res["segmentation"].cpu().numpy().astype(np.int32), segments


def panoptic_quality(
    gt: list[list[dict[str, Any]]], pred: list[list[dict[str, Any]]]
) -> dict[str, float]:
    """Panoptic quality (Kirillov et al., "Panoptic Segmentation", CVPR 2019, Eq. 1) over images,
    with panopticapi's rules (``pq_compute_single_core``).

    Arguments:
        gt, pred: per image, a list of non-overlapping segments
            ``{"category_id": int, "segmentation": COCO RLE}`` (all of one image's size).

    Returns ``{"pq", "sq", "rq", "segments"}``: PQ and its segmentation (SQ) and recognition (RQ)
    parts, averaged over the categories with a true positive, false positive or false negative;
    ``segments`` counts the ground truth's. A predicted and a true segment of one category match
    when ``IoU > 0.5`` (so matches are unique), with the union leaving out the predicted
    segment's pixels in the ground truth's void (pixels no true segment covers); a predicted
    segment lying more than half in that void is not a false positive. Pixels the prediction
    leaves unlabelled are part of the true segment's area, as in panopticapi. NaN everywhere
    when there is no segment.

    Why not ``torchmetrics.detection.PanopticQuality`` (1.9.0, checked): on fully labelled maps
    it agrees with this function to 2e-8, but it also takes the pixels the *prediction* leaves
    unlabelled out of every union (its ``void_target_area``), which panopticapi does not: a
    segmenter that finds less on a decoded image would score higher (a true half-image segment
    predicted as 4/5 of it, the rest unlabelled: IoU 1.0 there, 0.8 here and in panopticapi).

    Raises :class:`ValueError` when ``gt`` and ``pred`` cover different numbers of images or
    the segments of an image differ in size.
    """
    from pycocotools import mask as mask_utils

    if len(gt) != len(pred):
        raise ValueError(f"{len(gt)} ground-truth images, {len(pred)} predicted")
    stats: dict[int, list[float]] = {}  # category -> [iou sum, tp, fp, fn]

    def label_map(segs: list[dict[str, Any]], h: int, w: int) -> np.ndarray:
        out = np.zeros((h, w), np.int64)  # 0: void / unlabelled
        for k, s in enumerate(segs, 1):
            rle = dict(s["segmentation"])
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode()
            out[mask_utils.decode(rle).astype(bool)] = k
        return out

    for g_segs, p_segs in zip(gt, pred, strict=True):
        sizes = {tuple(s["segmentation"]["size"]) for s in (*g_segs, *p_segs)}
        if len(sizes) > 1:
            raise ValueError(f"segments of one image differ in size: {sorted(sizes)}")
        if not sizes:
            continue
        h, w = next(iter(sizes))
        g_map, p_map = label_map(g_segs, h, w), label_map(p_segs, h, w)
        n_p = len(p_segs) + 1
        pairs, counts = np.unique(g_map * n_p + p_map, return_counts=True)
        overlap = {
            (int(k) // n_p, int(k) % n_p): int(c) for k, c in zip(pairs, counts, strict=True)
        }
        g_area = np.bincount(g_map.ravel(), minlength=len(g_segs) + 1)
        p_area = np.bincount(p_map.ravel(), minlength=n_p)
        matched_g: set[int] = set()
        matched_p: set[int] = set()
        for (gi, pi), inter in overlap.items():
            if gi == 0 or pi == 0:
                continue
            cat = int(g_segs[gi - 1]["category_id"])
            if cat != int(p_segs[pi - 1]["category_id"]):
                continue
            union = p_area[pi] + g_area[gi] - inter - overlap.get((0, pi), 0)
            iou = inter / union
            if iou > 0.5:
                st = stats.setdefault(cat, [0.0, 0, 0, 0])
                st[0] += iou
                st[1] += 1
                matched_g.add(gi)
                matched_p.add(pi)
        for gi, g in enumerate(g_segs, 1):
            if gi not in matched_g:
                stats.setdefault(int(g["category_id"]), [0.0, 0, 0, 0])[3] += 1
        for pi, p in enumerate(p_segs, 1):
            if pi in matched_p or not p_area[pi]:
                continue
            if overlap.get((0, pi), 0) / p_area[pi] > 0.5:
                continue  # mostly in the ground truth's void
            stats.setdefault(int(p["category_id"]), [0.0, 0, 0, 0])[2] += 1
    segments = sum(len(g) for g in gt)
    if not stats:
        return {"pq": math.nan, "sq": math.nan, "rq": math.nan, "segments": segments}
    pq, sq, rq = [], [], []
    for iou, tp, fp, fn in stats.values():
        denom = tp + 0.5 * fp + 0.5 * fn
        pq.append(iou / denom)
        sq.append(iou / tp if tp else 0.0)
        rq.append(tp / denom)
    return {
        "pq": float(np.mean(pq)),
        "sq": float(np.mean(sq)),
        "rq": float(np.mean(rq)),
        "segments": segments,
    }

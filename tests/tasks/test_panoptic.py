"""Panoptic quality with panopticapi's rules, void pixels included."""

from __future__ import annotations

import math

import numpy as np
import pytest

from saicm.eval.metrics import panoptic_quality as via_eval
from saicm.tasks.panoptic import panoptic_quality


def _seg(mask: np.ndarray, category: int) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    segmentation = {"size": rle["size"], "counts": rle["counts"].decode()}
    return {"category_id": category, "segmentation": segmentation}


LEFT = np.zeros((10, 10), bool)
LEFT[:, :5] = True


def test_a_prediction_that_leaves_pixels_unlabelled_is_not_excused():
    four = np.zeros((10, 10), bool)
    four[:, :4] = True  # column 4 unlabelled in the prediction
    gt = [[_seg(LEFT, 1), _seg(~LEFT, 2)]]
    pred = [[_seg(four, 1), _seg(~LEFT, 3)]]
    res = panoptic_quality(gt, pred)
    # category 1: IoU 40/50 = 0.8 (torchmetrics 1.9.0 says 1.0); 2: a miss; 3: a false positive
    assert res["pq"] == pytest.approx(0.8 / 3) and res["rq"] == pytest.approx(1 / 3)
    assert res["segments"] == 2


def test_void_in_the_ground_truth_is_ignored_as_panopticapi_does():
    gt = [[_seg(LEFT, 1)]]  # the right half is void
    pred = [[_seg(LEFT, 1), _seg(~LEFT, 2)]]  # a segment wholly in the void: not a false positive
    assert panoptic_quality(gt, pred)["pq"] == pytest.approx(1.0)
    wide = np.zeros((10, 10), bool)
    wide[:, :7] = True  # 20 of its pixels in the void: left out of the union, IoU 1
    assert panoptic_quality(gt, [[_seg(wide, 1)]])["sq"] == pytest.approx(1.0)
    third = np.zeros((10, 10), bool)
    third[:, 4:] = True  # 10 px on the segment, 50 in the void: ignored, and the segment missed
    res = panoptic_quality(gt, [[_seg(third, 1)]])
    assert res["pq"] == 0.0 and res["rq"] == 0.0  # one FN, no FP


def test_edge_cases_and_the_eval_entry_point():
    assert math.isnan(panoptic_quality([[]], [[]])["pq"])
    gt = [[_seg(LEFT, 1), _seg(~LEFT, 2)]]
    assert panoptic_quality(gt, gt)["pq"] == pytest.approx(1.0)
    assert via_eval(gt, gt) == panoptic_quality(gt, gt)
    with pytest.raises(ValueError, match="images"):
        panoptic_quality(gt, [])
    small = np.zeros((5, 5), bool)
    with pytest.raises(ValueError, match="size"):
        panoptic_quality(gt, [[_seg(small, 1)]])

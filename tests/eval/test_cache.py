"""What a cached evaluation cell is keyed by: the image's bytes, the codec (its settings, its
library, a model's weights), each task's model, the cache format; never a file name."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from saicm.eval.codecs import parse_codec
from saicm.eval.runner import CACHE_FORMAT, decoded_path, evaluate
from saicm.eval.tasks import create_task


@pytest.fixture(scope="module")
def detection():
    return create_task("detection")


def _photo(name: str, box: tuple[int, int, int, int]) -> Image.Image:
    from skimage import data

    y0, x0, y1, x1 = box
    return Image.fromarray(getattr(data, name)()[y0:y1, x0:x1])


def _points(res) -> dict:
    return {(p.codec, p.setting): (p.bpp, p.metrics) for p in res["points"]}


def test_a_replaced_image_is_evaluated_again(tmp_path, detection):
    images = tmp_path / "images"
    images.mkdir()
    _photo("astronaut", (0, 0, 256, 256)).save(images / "img.png")
    codecs = [parse_codec("jpeg:10"), parse_codec("webp:10")]
    out = tmp_path / "report"
    first = _points(evaluate([images / "img.png"], codecs, [detection], out, progress=False))
    # another photo under the same name, of another size
    _photo("coffee", (0, 0, 200, 300)).save(images / "img.png")
    again = evaluate([images / "img.png"], codecs, [detection], out, progress=False)
    fresh_dir = tmp_path / "fresh"
    shutil.copytree(images, fresh_dir)
    fresh = evaluate([fresh_dir / "img.png"], codecs, [detection], tmp_path / "r2", progress=False)
    assert _points(again) == _points(fresh)
    assert _points(again)[("jpeg", "10")][0] != first[("jpeg", "10")][0]
    cell = json.loads(next((out / "cells" / "jpeg").rglob("img.json")).read_text())
    assert cell["key"]["format"] == CACHE_FORMAT
    assert cell["key"]["image"] == again["cache"]["image_sha256"]["img.png"]
    assert cell["key"]["codec"]["library"]  # libjpeg's version is part of the key


def test_a_retrained_model_under_the_same_file_name_is_evaluated_again(
    tmp_path, detection, tiny_model, other_model
):
    img = tmp_path / "img.png"
    _photo("chelsea", (0, 0, 128, 192)).save(img)
    model = tmp_path / "models" / "m.pt"
    model.parent.mkdir()
    shutil.copy(tiny_model.path, model)
    def decoded(res, report) -> np.ndarray:  # the decoded image kept for the report
        point = next(p for p in res["points"] if p.codec == "saicm")
        return np.asarray(Image.open(decoded_path(report, "saicm", point.key, "img")))

    out = tmp_path / "report"
    first = evaluate([img], [parse_codec(str(model))], [detection], out, progress=False)
    shutil.copy(other_model.path, model)  # same name, same file name: other weights
    again = evaluate([img], [parse_codec(str(model))], [detection], out, progress=False)
    other = tmp_path / "elsewhere" / "m.pt"
    other.parent.mkdir()
    shutil.copy(other_model.path, other)
    fresh = evaluate([img], [parse_codec(str(other))], [detection], tmp_path / "r2", progress=False)
    assert [p.bpp for p in again["points"]] == [p.bpp for p in fresh["points"]]
    assert (decoded(again, out) == decoded(fresh, tmp_path / "r2")).all()
    assert (decoded(again, out) != decoded(first, out)).any()


def test_another_detector_model_is_evaluated_again(tmp_path):
    import torch
    import torchvision.models.detection as tvd

    img = tmp_path / "img.png"
    _photo("astronaut", (0, 0, 160, 160)).save(img)
    weights = tmp_path / "det.pth"

    def save(seed: int) -> None:
        torch.manual_seed(seed)
        net = tvd.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91)
        torch.save(net.state_dict(), weights)

    def task():
        return create_task("detection", detector_arch="ssdlite320_mobilenet_v3_large",
                           detector_weights=str(weights))

    codecs, out = [parse_codec("jpeg:30")], tmp_path / "report"
    save(0)
    a = task()
    evaluate([img], codecs, [a], out, progress=False)
    save(1)  # other weights under the same file name
    b = task()
    assert a.fingerprint()["weights"] != b.fingerprint()["weights"]
    assert a.fingerprint()["arch"] == b.fingerprint()["arch"]
    evaluate([img], codecs, [b], out, progress=False)
    cell = json.loads(next((out / "cells" / "jpeg").rglob("img.json")).read_text())
    assert cell["key"]["tasks"]["detection"] == json.loads(json.dumps(b.fingerprint()))


def test_a_cell_of_another_cache_format_or_cut_short_is_computed_again(tmp_path, detection):
    img = tmp_path / "img.png"
    _photo("coffee", (0, 0, 128, 128)).save(img)
    codecs, out = [parse_codec("jpeg:10")], tmp_path / "report"
    good = _points(evaluate([img], codecs, [detection], out, progress=False))
    cell = next((out / "cells" / "jpeg").rglob("img.json"))
    rec = json.loads(cell.read_text())
    # a cell as an older saicm wrote it (no key), holding a wrong size
    cell.write_text(json.dumps({**{k: v for k, v in rec.items() if k != "key"}, "bytes": 1}))
    assert _points(evaluate([img], codecs, [detection], out, progress=False)) == good
    cell.write_text(cell.read_text()[:20])  # cut by a crash
    assert _points(evaluate([img], codecs, [detection], out, progress=False)) == good
    # what a SIGKILL while writing the cell leaves: removed when the cell is computed again
    stale = cell.parent / ".img.json.k2b4c6d8.part.json"
    stale.write_text("{")
    cell.unlink()
    assert _points(evaluate([img], codecs, [detection], out, progress=False)) == good
    assert not stale.exists() and cell.exists()

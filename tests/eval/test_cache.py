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


_NAN, _INF = float("nan"), float("inf")
_DAMAGE = {  # what a hand, a bad disk or a hostile report folder can put into a cell
    "bytes 1e30": {"bytes": 10**30},
    "bytes a bool": {"bytes": True},
    "bytes negative": {"bytes": -5},
    "bytes a string": {"bytes": "16678"},
    "bytes a float": {"bytes": 1.5},
    "pixels 0": {"pixels": 0},
    "pixels negative": {"pixels": -1},
    "pixels another size": {"pixels": 2 * 128 * 128},
    "psnr NaN": {"psnr": _NAN},
    "psnr a string": {"psnr": "x"},
    "psnr negative": {"psnr": -3.0},
    "ms_ssim a string": {"ms_ssim": "x"},
    "encode_s negative": {"encode_s": -1.0},
    "decode_s infinite": {"decode_s": _INF},
    "predictions a string": {"predictions": "x"},
    "a task's predictions a string": {"predictions": {"detection": "x"}},
    "a box with NaN": {"predictions": {"detection": [{"category_id": 1, "bbox": [_NAN, 0, 1, 1], "score": 0.5}]}},  # noqa: E501
    "a box with a string": {"predictions": {"detection": [{"category_id": 1, "bbox": ["x", 0, 1, 1], "score": 0.5}]}},  # noqa: E501
    "a box of three": {"predictions": {"detection": [{"category_id": 1, "bbox": [0, 0, 1], "score": 0.5}]}},  # noqa: E501
    "a box of negative width": {"predictions": {"detection": [{"category_id": 1, "bbox": [0, 0, -4, 1], "score": 0.5}]}},  # noqa: E501
    "a bool category": {"predictions": {"detection": [{"category_id": True, "bbox": [0, 0, 1, 1], "score": 0.5}]}},  # noqa: E501
    "an infinite score": {"predictions": {"detection": [{"category_id": 1, "bbox": [0, 0, 1, 1], "score": _INF}]}},  # noqa: E501
    "a mask of another size": {"predictions": {"detection": [{"category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5, "segmentation": {"size": [9, 9], "counts": "1"}}]}},  # noqa: E501
}  # fmt: skip


@pytest.fixture(scope="module")
def damaged_setup(tmp_path_factory, detection):
    d = tmp_path_factory.mktemp("damage")
    img = d / "img.png"
    _photo("coffee", (0, 0, 128, 128)).save(img)
    codecs, out = [parse_codec("jpeg:10")], d / "report"
    good = _points(evaluate([img], codecs, [detection], out, progress=False))
    cell = next((out / "cells" / "jpeg").rglob("img.json"))
    return img, codecs, out, good, cell, json.loads(cell.read_text())


@pytest.mark.parametrize("case", list(_DAMAGE))
def test_a_cell_whose_key_matches_but_whose_values_are_damaged_is_computed_again(
    case, damaged_setup, detection
):
    """The key says which image, codec and task a cell is for; the values must also be what a
    coder and a task write for that image, or the cell is computed again (never scored: a
    `bytes` of 10**30 gave a bpp of 1e25 with exit 0, `pixels` 0 a ZeroDivisionError)."""
    img, codecs, out, good, cell, rec = damaged_setup
    cell.write_text(json.dumps({**rec, **_DAMAGE[case]}))
    assert _points(evaluate([img], codecs, [detection], out, progress=False)) == good
    assert json.loads(cell.read_text()) == json.loads(json.dumps(rec)) | {
        k: json.loads(cell.read_text())[k] for k in ("encode_s", "decode_s")
    }


@pytest.mark.parametrize(
    "text", ["[]", "null", '"x"', '{"key": "x"}', "[" * 100_000, "pipe", "folder"]
)
def test_a_cell_that_is_not_a_cell_is_computed_again_or_refused(text, damaged_setup, detection):
    """Not a JSON object, nested past the parser's depth, a named pipe (reading it waited
    forever): computed again; a folder where the cell goes: one error naming it."""
    import os

    from saicm.errors import SaicmError

    img, codecs, out, good, cell, _ = damaged_setup
    cell.unlink()
    if text == "pipe":
        os.mkfifo(cell)
    elif text == "folder":
        cell.mkdir()
        with pytest.raises((SaicmError, OSError), match=r"img\.json"):
            evaluate([img], codecs, [detection], out, progress=False)
        cell.rmdir()
    else:
        cell.write_text(text)
    assert _points(evaluate([img], codecs, [detection], out, progress=False)) == good
    assert cell.is_file() and not cell.is_symlink()


def test_a_link_planted_among_the_report_views_is_replaced_not_written_through(
    damaged_setup, detection
):
    """The report's example views are written beside the link, then renamed over it: a link
    to an input image (a hostile report folder) no longer turns that image into a JPEG."""
    import shutil as sh

    from saicm.eval.report import write_report

    img, codecs, out, _, _, _ = damaged_setup
    res = evaluate([img], codecs, [detection], out, progress=False)
    write_report(res, out)
    views = sorted((out / "views").glob("*.jpg"))
    assert views
    victim = img.parent / "victim.png"
    sh.copy(img, victim)
    before = victim.read_bytes()
    views[-1].unlink()
    views[-1].symlink_to(victim)
    write_report(res, out)
    assert victim.read_bytes() == before
    assert views[-1].is_file() and not views[-1].is_symlink()

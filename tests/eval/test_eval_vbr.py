"""A variable-rate model in ``saicm eval``: its settings are lambdas, and it draws one curve."""

from __future__ import annotations

import pytest
from PIL import Image

from saicm.eval.codecs import VBR_POINTS, CodecSettingError, parse_codec
from saicm.eval.runner import evaluate
from saicm.eval.tasks import create_task


def test_a_variable_rate_model_alone_is_a_ladder_of_lambdas(vbr_model):
    codec = parse_codec(f"vbr={vbr_model.path}")
    assert codec.name == "vbr" and len(codec.settings) == VBR_POINTS
    lmbdas = [float(s.rpartition("@")[2]) for s in codec.settings]
    lo, hi = vbr_model.net.rate_range
    assert lmbdas[0] == pytest.approx(lo, rel=1e-5) and lmbdas[-1] == pytest.approx(hi, rel=1e-5)
    assert lmbdas == sorted(lmbdas)
    assert codec.available() is None


def test_bare_numbers_take_the_model_before_them(vbr_model, tiny_model):
    codec = parse_codec(f"saicm:{vbr_model.path}@0.002,0.004,{tiny_model.path}")
    assert codec.settings == [
        f"{vbr_model.path}@0.002",
        f"{vbr_model.path}@0.004",
        str(tiny_model.path),
    ]
    assert codec.available() is None


def test_settings_that_cannot_be_coded_say_why(vbr_model, tiny_model):
    assert "outside" in parse_codec(f"saicm:{vbr_model.path}@0.5").available()
    assert "fixed-rate" in parse_codec(f"saicm:{tiny_model.path}@0.004").available()
    with pytest.raises(CodecSettingError, match="lambda"):
        parse_codec(f"saicm:{vbr_model.path}@abc")


def test_one_curve_with_its_rate_rising(vbr_model, photo, tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    Image.fromarray(photo[:192, :256]).save(d / "a.png")
    codec = parse_codec(f"vbr=saicm:{vbr_model.path}@0.0018,0.005,0.013")
    res = evaluate(
        sorted(d.iterdir()), [codec], [create_task("detection")], tmp_path / "r", progress=False
    )
    points = [p for p in res["points"] if p.codec == "vbr"]
    assert [p.setting.rpartition("@")[2] for p in points] == ["0.0018", "0.005", "0.013"]
    rates = [p.bpp for p in points]
    assert rates == sorted(rates) and rates[0] < rates[-1]
    # cached cells are keyed by the lambda: a second run reads them, another lambda is new
    again = evaluate(
        sorted(d.iterdir()),
        [parse_codec(f"vbr=saicm:{vbr_model.path}@0.005")],
        [create_task("detection")],
        tmp_path / "r",
        progress=False,
    )
    assert [p.bpp for p in again["points"] if p.codec == "vbr"] == [rates[1]]

"""``saicm eval`` answers on the console, with PSNR and MS-SSIM of every decoded image (as
``compressai.utils.eval_model`` reports them), families of models as one curve, and cached cells
reused whatever label the same codec carries."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_msssim import ms_ssim as reference_ms_ssim

from saicm.cli import main
from saicm.errors import SaicmError
from saicm.eval.codecs import LearnedCodec, model_family, parse_codec
from saicm.eval.metrics import MS_SSIM_MIN_SIDE, ms_ssim, psnr
from saicm.eval.runner import evaluate
from saicm.eval.tasks import create_task


@pytest.fixture(scope="module")
def detection():
    return create_task("detection")


@pytest.fixture()
def two_images(tmp_path, photo):
    """The astronaut at 256x256 (MS-SSIM defined) and a 96x128 crop (below its minimum)."""
    d = tmp_path / "images"
    d.mkdir()
    Image.fromarray(photo[::2, ::2]).save(d / "big.png")
    Image.fromarray(photo[:96, 200:328]).save(d / "small.png")
    return d


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_ms_ssim_is_compressais_and_says_na_below_its_size(photo):
    big = photo[::2, ::2]
    coded = _jpeg(big, 10)
    # compressai.utils.eval_model: ms_ssim(x, x_hat, data_range=1.0) on [0, 1] float tensors
    x, y = (torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255 for a in (big, coded))
    assert ms_ssim(big, coded) == pytest.approx(float(reference_ms_ssim(x, y, data_range=1.0)))
    assert ms_ssim(big, big) == pytest.approx(1.0)
    assert 0.8 < ms_ssim(big, coded) < 1.0
    side = MS_SSIM_MIN_SIDE
    assert math.isnan(ms_ssim(photo[: side - 1, :300], photo[: side - 1, :300]))
    assert ms_ssim(photo[:side, :side], photo[:side, :side]) == pytest.approx(1.0)
    mse = np.mean((big.astype(float) - coded) ** 2)
    assert psnr(big, coded) == pytest.approx(10 * math.log10(255**2 / mse))


def test_points_carry_psnr_and_ms_ssim_of_the_decoded_images(two_images, detection, tmp_path):
    images = sorted(two_images.iterdir())
    res = evaluate(
        images, [parse_codec("png"), parse_codec("jpeg:10")], [detection], tmp_path / "r",
        progress=False,
    )  # fmt: skip
    by = {p.codec: p for p in res["points"]}
    assert by["png"].psnr == math.inf and by["png"].ms_ssim == pytest.approx(1.0)
    big, small = (np.asarray(Image.open(p).convert("RGB")) for p in images)
    want_psnr = np.mean([psnr(big, _jpeg(big, 10)), psnr(small, _jpeg(small, 10))])
    assert by["jpeg"].psnr == pytest.approx(want_psnr)
    # MS-SSIM: the 96-pixel image has none, so the mean is the big image's alone
    assert by["jpeg"].ms_ssim == pytest.approx(ms_ssim(big, _jpeg(big, 10)))
    assert math.isnan(by["_original"].psnr)


def test_a_relabelled_codec_reuses_the_cached_cells(two_images, detection, tmp_path):
    images, out = sorted(two_images.iterdir()), tmp_path / "r"
    first = evaluate(images, [parse_codec("jpeg:20")], [detection], out, progress=False)
    cells = sorted((out / "cells").rglob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in cells}
    again = evaluate(
        images, [parse_codec("low=jpeg:20"), parse_codec("jpeg:20")], [detection], out,
        progress=False,
    )  # fmt: skip
    assert sorted((out / "cells").rglob("*.json")) == cells  # nothing new, nothing under "low"
    assert {p: p.stat().st_mtime_ns for p in cells} == stamps  # and nothing computed again
    by = {p.codec: p for p in again["points"]}
    old = {p.codec: p for p in first["points"]}["jpeg"]
    assert by["low"].bpp == by["jpeg"].bpp == old.bpp
    assert by["low"].coder == "jpeg" and by["low"].images == 2


def test_a_family_name_is_one_curve_of_all_its_rates():
    rates = ("0.0018", "0.0035", "0.0067", "0.013")
    assert model_family("mse-mbt") == [f"mse-mbt-{v}" for v in rates]
    codec = parse_codec("mse-mbt")
    assert codec.name == "mse-mbt" and codec.coder_name == "saicm"
    assert codec.settings == model_family("mse-mbt")
    assert parse_codec("saicm:region-mbt").settings == model_family("region-mbt")
    # saicm alone: the shipped SA-ICM family (the default model and its siblings)
    assert LearnedCodec().settings == model_family("sa-icm-mbt-hed")
    assert "sa-icm-mbt-hed-0.05" in LearnedCodec().settings
    assert parse_codec("mse-mb").available() is not None  # not a family: said, not guessed


def test_eval_prints_its_table(two_images, tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(
        ["eval", "--images", str(two_images), "--codec", "png", "jpeg:10,40", "q=jpeg:20,60",
         "--anchor", "jpeg", "-o", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    lines = printed.splitlines()
    header = next(ln for ln in lines if ln.startswith("codec"))
    for column in ("bpp", "PSNR dB", "MS-SSIM", "detection/map"):
        assert column in header
    results = json.loads((out / "results.json").read_text())
    for p in results["points"]:
        if p["codec"] == "jpeg":
            row = next(ln for ln in lines if ln.split()[:2] == ["jpeg", p["setting"]])
            assert f"{p['bpp']:.4f}" in row and f"{p['psnr']:.2f}" in row
            assert f"{p['ms_ssim']:.4f}" in row
    assert "BD-rate on detection/map against jpeg" in printed
    bd = next(r for r in results["bd_rate"]["jpeg"]["detection/map"] if r["codec"] == "q")
    after = lines[lines.index("BD-rate on detection/map against jpeg (negative: fewer bits):") :]
    row = next(ln for ln in after if ln.split()[0] == "q")
    assert (f"{bd['bd_rate']:+.1f} %" if bd["bd_rate"] is not None else "n/a") in row
    assert f"{100 * bd['overlap']:.0f} %" in row
    assert lines[-1] == f"report: {out / 'report.html'}"
    # the report and the CSV carry them too
    page = (out / "report.html").read_text()
    assert "PSNR dB" in page and "MS-SSIM" in page
    assert "psnr_db" in (out / "results.csv").read_text().splitlines()[0]


@pytest.mark.parametrize(
    ("specs", "why"),
    [
        (["jpeg:10", "jpeg:10,40"], "the label names two codecs"),
        (["jpeg=webp:50", "jpeg:50"], "the label names two codecs"),
        (["jpeg:10,40,10"], "the setting 10 is given twice"),
        (["jpeg:010,10"], "is given twice"),
        (["jpeg:+10,10"], "is given twice"),
        (["_original=jpeg:10"], "a label saicm keeps"),
    ],
)
def test_two_points_of_one_label_and_setting_are_refused(two_images, detection, tmp_path, specs,
                                                         why):  # fmt: skip
    images, out = sorted(two_images.iterdir()), tmp_path / "r"
    evaluate(images, [parse_codec("jpeg:10")], [detection], out, progress=False)  # a cache
    with pytest.raises(SaicmError, match=why):
        evaluate(images, [parse_codec(s) for s in specs], [detection], out, progress=False)


@pytest.mark.parametrize(
    "bad",
    [
        *("jpg:20", "=jpeg:10", "x/y=jpeg:10", "no-such-model.pt"),
        # loose specs that used to drop a part silently: empty settings, a label twice
        *("jpeg:,10", "jpeg:10,", "jpeg:10,,40", "jpeg:", "a=b=jpeg:10"),
    ],
)
def test_a_codec_spec_that_cannot_be_read_is_refused_before_any_work(two_images, tmp_path,
                                                                     capsys, bad):  # fmt: skip
    out = tmp_path / "rep"
    argv = ["eval", "--images", str(two_images), "--codec", "jpeg:10", bad, "-o", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"saicm: error: --codec {bad}: "), err
    assert not out.exists()


def test_a_plot_without_curves_says_nothing(tmp_path, capsys):
    flat = tmp_path / "flat.png"  # nothing to detect: every mAP is n/a, no curve to plot
    Image.new("RGB", (96, 64), (128, 128, 128)).save(flat)
    assert main(["eval", "--images", str(flat), "--codec", "png", "-o", str(tmp_path / "r")]) == 0
    assert "warning" not in capsys.readouterr().err  # matplotlib's "No artists with labels"

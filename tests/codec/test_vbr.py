"""Variable-rate coding (issue 15): one model, any lambda in its range, the rate in the file."""

from __future__ import annotations

import copy
import itertools
import math
import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from saicm.codec import create_model, decode, encode, encode_to_bpp, load_model, unpack
from saicm.codec.bitstream import Bitstream, Checks, pack
from saicm.codec.rate import LMBDA_STEP, RateError, file_bpp
from saicm.codec.vbr import COMPRESSAI_LMBDAS, anchor_gains
from saicm.errors import BitstreamError, ModelError


@pytest.fixture(scope="module")
def img(photo):
    return photo[:192, :256]


def test_rate_rises_with_lambda_and_every_setting_decodes(vbr_model, img):
    lo, hi = vbr_model.net.rate_range
    lmbdas = np.geomspace(lo, hi, 5)
    rates, psnrs = [], []
    for lmbda in lmbdas:
        data = encode(img, vbr_model, lmbda=float(lmbda))
        bs = unpack(data)
        assert bs.version == 3 and bs.gain == pytest.approx(vbr_model.net.gain_for(lmbda))
        out = decode(data, vbr_model)
        assert out.shape == img.shape
        rates.append(file_bpp(data, *img.shape[:2]))
        mse = np.mean((out.astype(float) - img) ** 2)
        psnrs.append(10 * math.log10(255**2 / mse))
    assert all(b > a for a, b in itertools.pairwise(rates)), rates
    assert all(b > a for a, b in itertools.pairwise(psnrs)), psnrs
    assert rates[-1] > 1.8 * rates[0]


def test_default_setting_is_the_middle_of_the_range(vbr_model, img):
    lo, hi = vbr_model.net.rate_range
    assert unpack(encode(img, vbr_model)).gain == vbr_model.net.gain_for(math.sqrt(lo * hi))


def test_anchors_and_gains():
    net = create_model("mbt2018-mean-vbr")
    # CompressAI's own gains for its lambdas, from sqrt(lambda / max): within 4%
    theirs = [0.10000, 0.13944, 0.19293, 0.26874, 0.37268, 0.51801, 0.71957, 1.00000]
    assert np.allclose(anchor_gains(COMPRESSAI_LMBDAS), theirs, rtol=0.04)
    net.set_range(0.002, 0.02)
    assert net.rate_range == pytest.approx((0.002, 0.02))
    assert net.gain_for(0.02) == pytest.approx(1.0)
    assert net.gain_for(0.002) == pytest.approx(math.sqrt(0.1), rel=1e-6)
    mid = net.gain_for(0.00632)
    assert net.lmbda_for(mid) == pytest.approx(0.00632, rel=1e-5)
    for bad in (0.0019, 0.021, float("nan")):
        with pytest.raises(ModelError):
            net.gain_for(bad)
    with pytest.raises(ModelError):
        net.set_range(0.02, 0.002)
    # step 1 at a lambda inside the range: gains above 1 over it, sqrt rule from it
    net.set_range(0.002, 0.02, unit=0.005)
    assert net.gain_for(0.005) == pytest.approx(1.0, rel=1e-6)
    assert net.gain_for(0.02) == pytest.approx(2.0, rel=1e-6)
    assert net.gain_for(0.002) == pytest.approx(math.sqrt(0.4), rel=1e-6)
    assert anchor_gains([0.002, 0.02]) == anchor_gains([0.002, 0.02], unit=0.02)
    for bad in (0.001, 0.03, float("nan"), float("inf")):
        with pytest.raises(ModelError, match="unit-step lambda"):
            net.set_range(0.002, 0.02, unit=bad)
    with pytest.raises(ModelError, match="unit-step lambda"):
        anchor_gains([0.002, 0.02], unit=0.0)


def test_lambda_is_refused_where_it_means_nothing(vbr_model, tiny_model, img):
    with pytest.raises(ModelError, match="fixed-rate"):
        encode(img, tiny_model, lmbda=0.01)
    with pytest.raises(ModelError, match="outside this variable-rate model's range"):
        encode(img, vbr_model, lmbda=0.1)


def _repack(data: bytes, **fields) -> bytes:
    return pack(replace(unpack(data), **fields))


def test_a_file_whose_rate_setting_does_not_fit_the_model_is_refused(vbr_model, img):
    data = encode(img, vbr_model, lmbda=0.004)
    lo_gain = vbr_model.net.gain_for(vbr_model.net.rate_range[0])
    no_gain = _repack(data, version=2, gain=None)
    with pytest.raises(BitstreamError, match="rate setting does not fit"):
        decode(no_gain, vbr_model)
    with pytest.raises(BitstreamError, match="rate setting does not fit"):
        decode(_repack(data, gain=lo_gain / 2), vbr_model)
    # a gain inside the range, but not the encoder's: the symbols' check fails, no picture
    with pytest.raises(BitstreamError, match="differ"):
        decode(_repack(data, gain=lo_gain * 1.01), vbr_model)


def test_a_fixed_rate_model_refuses_a_gain(tiny_model, img):
    data = encode(img, tiny_model)
    with pytest.raises(BitstreamError, match="rate setting does not fit"):
        decode(_repack(data, version=3, gain=0.5), tiny_model)


@pytest.mark.parametrize("gain", [float("nan"), float("inf"), -0.5, 0.0])
def test_crafted_gains_are_refused_by_the_parser(vbr_model, img, gain):
    data = bytearray(encode(img, vbr_model, lmbda=0.004))
    bs = unpack(bytes(data))
    at = 6 + len(bs.model.encode()) + 8 + 21 + 4 * len(bs.strings) + 12  # after the CRCs
    assert struct.unpack(">f", data[at : at + 4])[0] == pytest.approx(bs.gain)
    data[at : at + 4] = struct.pack(">f", gain)
    body = bytes(data[:-4])
    with pytest.raises(BitstreamError, match="quantisation gain"):
        unpack(body + struct.pack(">I", zlib.crc32(body)))


def test_version_and_gain_go_together():
    def sample(version, gain=None):
        checks = Checks(0, 0, 0)
        return Bitstream(
            "a", b"\0" * 8, 1, 1, (0, 0, 63, 63), (1, 1), (b"", b""), checks, version, gain
        )

    assert unpack(pack(sample(3, 0.25))).gain == 0.25
    assert unpack(pack(sample(2))).gain is None
    for bad in (sample(3), sample(2, 0.5)):
        with pytest.raises(ValueError):
            pack(bad)


def test_decoding_is_identical_under_another_thread_count_and_layout(vbr_model, img):
    data = encode(img, vbr_model, lmbda=0.003)
    ref = decode(data, vbr_model)
    m = replace(vbr_model, net=copy.deepcopy(vbr_model.net))
    m.net.to(memory_format=torch.contiguous_format)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        other = decode(data, m)
    finally:
        torch.set_num_threads(threads)
    diff = np.abs(other.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_bpp_search_lands_within_one_step(vbr_model, img):
    lo, hi = vbr_model.net.rate_range
    h, w = img.shape[:2]
    low = file_bpp(encode(img, vbr_model, lmbda=lo), h, w)
    high = file_bpp(encode(img, vbr_model, lmbda=hi), h, w)
    target = (low + high) / 2
    choice = encode_to_bpp(img, vbr_model, target)
    assert choice.bpp <= target and choice.lmbda is not None
    assert choice.bpp == file_bpp(choice.data, h, w)
    up = file_bpp(encode(img, vbr_model, lmbda=min(hi, choice.lmbda * LMBDA_STEP)), h, w)
    assert up > target  # one step up no longer fits
    assert decode(choice.data, vbr_model).shape == img.shape
    assert encode_to_bpp(img, vbr_model, high * 2).lmbda == pytest.approx(hi)
    with pytest.raises(RateError, match="cannot reach"):
        encode_to_bpp(img, vbr_model, low * 0.9)


def test_bpp_over_a_set_of_fixed_rate_models_takes_the_largest_that_fits(img):
    names = ["mse-mbt-0.0018", "mse-mbt-0.0035", "mse-mbt-0.0067", "mse-mbt-0.013"]
    h, w = img.shape[:2]
    rates = {n: file_bpp(encode(img, load_model(n)), h, w) for n in names}
    ordered = sorted(rates.values())
    choice = encode_to_bpp(img, names, (ordered[1] + ordered[2]) / 2)
    assert choice.bpp == ordered[1] and choice.lmbda is None and choice.tries == 4
    with pytest.raises(RateError):
        encode_to_bpp(img, names, ordered[0] * 0.99)


def test_cli_encode_with_lambda_and_bpp(vbr_model, photo, tmp_path, capsys):
    """``saicm encode --lmbda / --bpp`` through the CLI (in this process: the model loads once;
    tests/test_cli.py runs the console script itself)."""
    from PIL import Image

    from saicm.cli import main

    src = tmp_path / "p.png"
    Image.fromarray(photo[:128, :128]).save(src)
    model = str(vbr_model.path)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["encode", str(src), *args])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = run("-o", str(tmp_path / "a.sic"), "-m", model, "--lmbda", "0.004")
    assert code == 0 and "lambda 0.004" in out, err
    code, out, err = run("-o", str(tmp_path / "b.sic"), "-m", model, "--bpp", "0.4")
    assert code == 0 and "vbr@" in out and "tries" in out, err
    bpp = float(out.split(" bpp")[0].split()[-1])
    assert bpp <= 0.4
    for args, message in [
        (("--lmbda", "0.5"), "outside this variable-rate model's range"),
        (("--lmbda", "nan"), "expected a finite number"),
        (("--bpp", "0.01"), "cannot reach"),
        (("--bpp", "0.3", "--lmbda", "0.004"), "not both"),
    ]:
        try:
            code, out, err = run("-o", str(tmp_path / "c.sic"), "-m", model, *args)
        except SystemExit as exit_:  # argparse's usage errors
            code, err = int(exit_.code or 0), capsys.readouterr().err
        assert code != 0 and message in err and "Traceback" not in err, err
    code, out, err = run("-o", str(tmp_path / "c.sic"), "-m", "mse-mbt-0.0018", "mse-mbt-0.013")
    assert code != 0 and "need --bpp" in err
    assert not (tmp_path / "c.sic").exists()


def test_a_network_started_from_a_fixed_rate_model_codes_its_top_lambda_as_that_model():
    """The offsets start at zero and the highest lambda has gain 1: before any training, the
    variable-rate network at its top lambda reconstructs exactly as the fixed-rate model whose
    weights it took (the starting point of a fine-tune, ``saicm train --init``)."""
    fixed = load_model("mse-mbt-0.013").net
    net = create_model("mbt2018-mean-vbr")
    net.load_state_dict(fixed.state_dict(), strict=False)
    net.set_range(0.0018, 0.013)
    net.eval()
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ours = net(x, lmbda=0.013)["x_hat"]
        med = fixed.entropy_bottleneck._get_medians()
        y = fixed.g_a(x)
        z_hat = torch.round(fixed.h_a(y) - med) + med
        mu = fixed.h_s(z_hat).chunk(2, 1)[1]
        theirs = fixed.g_s(torch.round(y - mu) + mu)
    assert float((ours - theirs).abs().max()) < 1e-5


@pytest.mark.parametrize(
    "levels", [[-0.002, 0.005, 0.01, 0.02], [0.002, 0.01, 0.005, 0.02], [0.01] * 4]
)
def test_a_model_file_with_broken_anchors_is_refused_on_loading(tmp_path, levels):
    from saicm.codec import export_model
    from saicm.codec.zoo import _stored_weights, weights_hash

    net = create_model("mbt2018-mean-vbr", N=32, M=48, levels=4)
    net.set_range(0.002, 0.02)
    path = tmp_path / "v.pt"
    config = {"N": 32, "M": 48, "levels": 4}
    export_model(path, net, name="v", arch="mbt2018-mean-vbr", config=config)
    blob = torch.load(path, weights_only=False)
    blob["state_dict"]["lmbda_levels"] = torch.tensor(levels)
    blob["hash"] = weights_hash(_stored_weights(blob["state_dict"], blob.get("coded")))
    bad = tmp_path / "bad.pt"
    torch.save(blob, bad)
    # a negative anchor used to escape as a bare ValueError (math domain error) on encoding
    with pytest.raises(ModelError, match=r"bad\.pt: the model's lambda anchors"):
        load_model(bad)

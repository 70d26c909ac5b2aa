"""Decode integrity (issue 17): the same symbols under every perturbation of the decoder's
arithmetic this machine can make, pixels within one level, and a clear error otherwise."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from compressai.models.base import get_scale_table

from saicm.codec import (
    create_model,
    decode,
    encode,
    export_model,
    installed_models,
    latents,
    load_model,
)
from saicm.codec.bitstream import pack, unpack
from saicm.codec.entropy import encode_symbols
from saicm.codec.zoo import SHIPPED_DIR
from saicm.errors import BitstreamError, ModelError, SaicmWarning


def _crop(photo):
    return photo[:128, :192]


def _perturbed(model, kind):
    """A copy of ``model`` whose decoder computes differently: the float64 copy rebuilt under
    the perturbation (the cache is keyed by the network, so a copied network gets its own)."""
    m = replace(model, net=copy.deepcopy(model.net))
    if kind == "contiguous":
        m.net.to(memory_format=torch.contiguous_format)
        p = latents._param_net(m.net)
        p.to(memory_format=torch.channels_last)
    return m


def _decode_under(data, model, kind):
    m = _perturbed(model, kind)
    threads = torch.get_num_threads()
    try:
        if kind == "2 threads":
            torch.set_num_threads(2)
        if kind == "mkldnn off":
            with torch.backends.mkldnn.flags(enabled=False):
                return decode(data, m)
        return decode(data, m)
    finally:
        torch.set_num_threads(threads)


PERTURBATIONS = ["contiguous", "2 threads", "mkldnn off"]


def _assert_close(a, b):
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1  # float32 synthesis only: a rounding step, never more
    assert (diff > 0).mean() < 1e-3


@pytest.fixture(scope="module")
def shipped():
    names = sorted(m["name"] for m in installed_models() if Path(m["path"]).parent == SHIPPED_DIR)
    assert len(names) == 12
    return names


def test_every_shipped_model_decodes_identically_under_perturbations(shipped, photo):
    img = photo[:64, :128]
    for name in shipped:
        model = load_model(name)
        data = encode(img, model)
        bs = unpack(data)
        assert bs.version == 2 and bs.checks is not None
        ref = decode(data, model)
        for kind in PERTURBATIONS[:1] if name != shipped[0] else PERTURBATIONS:
            _assert_close(_decode_under(data, model, kind), ref)


@pytest.fixture(scope="module")
def spread_tcm(tmp_path_factory):
    """tcm-small with random weights whose scales spread over the whole table: the last layer of
    each scale head gets biases log-spaced from 0.05 to 300 (one per channel) and larger
    weights, so that scales vary around every part of the table."""
    torch.manual_seed(3)
    net = create_model("tcm-small")
    with torch.no_grad():
        for head in net.cc_scale_transforms:
            last = head[-1]
            last.weight.mul_(20.0)
            last.bias.copy_(torch.logspace(np.log10(0.05), np.log10(300.0), last.bias.numel()))
    path = tmp_path_factory.mktemp("tcm") / "spread.pt"
    return export_model(path, net, name="spread", arch="tcm-small", config={})


def test_tcm_scales_cover_the_table_and_decode_identically(spread_tcm, photo):
    img = photo[:128, :128]
    data = encode(img, spread_tcm)
    # the scales really spread: indexes in every part of the 128-entry table
    net = spread_tcm.net
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        y = net.g_a(x)
        z = net.h_a(y)
        med = latents._medians(net)
        z_hat = torch.round(z - med) + med
        p = latents._param_net(net)
        _, scale, _ = p._slice_params(
            0, [], p.h_mean_s(z_hat.double()), p.h_scale_s(z_hat.double()), y.shape[2:]
        )
    idx, _ = latents.scale_indexes(scale, net.gaussian_conditional.scale_table)
    assert np.histogram(idx, bins=4, range=(0, 128))[0].min() > 0
    ref = decode(data, spread_tcm)
    for kind in PERTURBATIONS:
        _assert_close(_decode_under(data, spread_tcm, kind), ref)


def test_decoded_latents_equal_the_encoders(spread_tcm, tiny_model, photo):
    # the decoder's y_hat is the encoder's, up to float64 rounding, in every slice
    for model in (spread_tcm, tiny_model):
        img = photo[:128, :128]
        data = encode(img, model)
        bs = unpack(data)
        y_dec = latents.decode_latents(model.net, bs.strings, bs.latent_shape, bs.checks)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            y = model.net.g_a(x)
        assert y_dec.shape == y.shape
        # rounding moves y by <= 1/2; LIC-TCM's LRP adds 0.5 * tanh(.) on top
        bound = 1.0 if model is spread_tcm else 0.5
        assert (y_dec - y).abs().max() <= bound + 1e-5


def test_onednn_isa_limited_decoder_agrees(tmp_path, spread_tcm, photo):
    # ONEDNN_MAX_CPU_ISA must be set before torch is imported: decode in a fresh process
    models = (load_model(), spread_tcm)
    args = []
    for i, model in enumerate(models):
        (tmp_path / f"{i}.sic").write_bytes(encode(photo[:128, :128], model))
        args += [str(tmp_path / f"{i}.sic"), str(model.path), str(tmp_path / f"{i}.npy")]
    code = (
        "import sys, numpy as np; from saicm.codec import decode, load_model; a = sys.argv[1:]\n"
        "for i in range(0, len(a), 3):\n"
        "    np.save(a[i + 2], decode(open(a[i], 'rb').read(), load_model(a[i + 1])))"
    )
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "SSE41", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code, *args], env=env, check=True, timeout=300)
    for i, model in enumerate(models):
        data = (tmp_path / f"{i}.sic").read_bytes()
        _assert_close(np.load(tmp_path / f"{i}.npy"), decode(data, model))


def test_float32_decoder_is_detected_or_identical(tiny_model, photo):
    # A decoder that computes the entropy parameters in float32 (as CompressAI does) must either
    # reproduce the symbols or fail with the clear error: never a silently wrong picture.
    data = encode(photo, tiny_model)
    ref = decode(data, tiny_model)
    m = _perturbed(tiny_model, "float32")
    h_s32 = copy.deepcopy(latents._param_net(tiny_model.net)).float()

    class Float32(torch.nn.Module):
        def forward(self, z_hat):
            return h_s32(z_hat.float()).double()

    latents._PARAMS[m.net] = (None, Float32())  # None: keep it whatever the weights
    try:
        got = decode(data, m)
    except BitstreamError as exc:
        assert "arithmetic differs" in str(exc)
    else:
        _assert_close(got, ref)


def _with_checks(data: bytes, **changes) -> bytes:
    bs = unpack(data)
    return pack(replace(bs, checks=replace(bs.checks, **changes)))


def test_corrupted_index_check_names_the_arithmetic(tiny_model, photo):
    data = encode(_crop(photo), tiny_model)
    bad = _with_checks(data, indexes=unpack(data).checks.indexes ^ 1)
    with pytest.raises(BitstreamError, match="arithmetic differs"):
        decode(bad, tiny_model)


def test_corrupted_symbol_check_fails(tiny_model, photo):
    data = encode(_crop(photo), tiny_model)
    bad = _with_checks(data, symbols=unpack(data).checks.symbols ^ 1)
    with pytest.raises(BitstreamError, match="symbols differ"):
        decode(bad, tiny_model)


def test_wrong_signalled_index_is_caught(tiny_model, photo):
    data = encode(_crop(photo), tiny_model)
    bs = unpack(data)
    n_z = 32 * bs.latent_shape[0] * bs.latent_shape[1]  # tiny model: N=32 hyper channels
    bad = _with_checks(data, signalled=((n_z + 5, 127),))
    with pytest.raises(BitstreamError, match="arithmetic differs"):
        decode(bad, tiny_model)


def test_other_tables_are_named(tiny_model, photo):
    # same weights, tables rebuilt with CompressAI's 64 scales instead of 128 (the case)
    data = encode(_crop(photo), tiny_model)
    m = _perturbed(tiny_model, "tables")
    m.net.update(scale_table=get_scale_table(levels=64), force=True)
    with pytest.raises(BitstreamError, match="tables differ"):
        decode(data, m)


def test_nan_weights_are_an_error_not_a_picture(tiny_model, photo):
    data = encode(_crop(photo), tiny_model)
    m = _perturbed(tiny_model, "nan")
    with torch.no_grad():
        m.net.g_s[0].weight.fill_(float("nan"))
    with pytest.raises(BitstreamError, match="NaN"):
        decode(data, m)
    m = _perturbed(tiny_model, "nan-h")
    with torch.no_grad():
        latents._param_net(m.net)[0].weight.fill_(float("nan"))
    with pytest.raises(BitstreamError, match="NaN"):
        decode(data, m)


def test_latents_beyond_int32_are_an_error_not_a_file(tiny_model, photo):
    # float -> int64 -> int32 casts used to wrap such symbols silently into a valid-looking file
    m = _perturbed(tiny_model, "huge")
    with torch.no_grad():
        m.net.g_a[-1].weight.mul_(1e12)
    with pytest.raises(ModelError, match="too large to code"):
        encode(_crop(photo), m)


def test_entropy_coder_refuses_symbols_outside_int32(tiny_model):
    tables = latents.coding_tables(tiny_model.net)[1]
    with pytest.raises(ValueError, match="outside int32"):
        encode_symbols(np.array([2**32 + 5]), np.array([0]), tables)


def test_version_1_files_decode_with_a_warning(tiny_model, photo):
    img = _crop(photo)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = tiny_model.net.compress(x.contiguous(memory_format=torch.channels_last))
    bs = replace(
        unpack(encode(img, tiny_model)),
        strings=(out["strings"][0][0], out["strings"][1][0]),
        checks=None,
        version=1,
    )
    with pytest.warns(SaicmWarning, match="no check"):
        got = decode(pack(bs), tiny_model)
    _assert_close(got, decode(encode(img, tiny_model), tiny_model))


@pytest.mark.parametrize("strings", [(b"", b""), (b"\xff" * 4000, b"\xff" * 40)])
def test_a_version_1_stream_that_reads_past_its_end_is_refused(tiny_model, photo, strings):
    """A damaged or crafted legacy stream must not decode whatever lies in memory after it (a
    different picture on every run): it is decoded twice, with zeros and with 0xFF after it,
    and refused when the two differ."""
    bs = replace(unpack(encode(_crop(photo), tiny_model)), strings=strings, checks=None, version=1)
    for _ in range(2):
        with pytest.warns(SaicmWarning, match="no check"), pytest.raises(
            BitstreamError, match="damaged: its decoder reads past its end"
        ):
            decode(pack(bs), tiny_model)


def test_outliers_round_trip(tiny_model, photo):
    # a flat grey image far outside what random weights expect puts symbols outside the tables
    img = np.full((64, 64, 3), 255, np.uint8)
    img[::2] = 0
    data = encode(img, tiny_model)
    bs = unpack(data)
    got = decode(data, tiny_model)
    assert got.shape == img.shape
    if bs.checks.outliers:
        pos, value = bs.checks.outliers[0]
        bad = _with_checks(data, outliers=((pos, value + 1), *bs.checks.outliers[1:]))
        with pytest.raises(BitstreamError):
            decode(bad, tiny_model)


def test_cli_batch_reports_the_bad_file_and_decodes_the_rest(tmp_path, tiny_model, photo):
    good = encode(_crop(photo), tiny_model)
    bad = _with_checks(good, indexes=unpack(good).checks.indexes ^ 1)
    (tmp_path / "a.sic").write_bytes(good)
    (tmp_path / "b.sic").write_bytes(bad)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "saicm", "decode", str(tmp_path / "b.sic"), str(tmp_path / "a.sic"),
         "--model", str(tiny_model.path), "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode != 0
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("saicm: error:")]
    assert any("b.sic" in ln and "arithmetic differs" in ln for ln in errors)
    assert "Traceback" not in r.stderr
    assert (out / "a.png").is_file() and not (out / "b.png").exists()


def test_header_crc_is_still_checked_first(tiny_model, photo):
    data = bytearray(encode(_crop(photo), tiny_model))
    data[-10] ^= 1
    with pytest.raises(BitstreamError, match="checksum"):
        decode(bytes(data), tiny_model)


def test_float64_copy_and_tables_follow_the_weights(tiny_model):
    m = _perturbed(tiny_model, "cache")
    p = latents._param_net(m.net)
    tables = latents.coding_tables(m.net)
    assert latents._param_net(m.net) is p and latents.coding_tables(m.net) is tables
    with torch.no_grad():
        m.net.h_s[0].weight.mul_(1.5)
    p2 = latents._param_net(m.net)
    assert p2 is not p and torch.equal(p2[0].weight, m.net.h_s[0].weight.double())
    m.net.update(scale_table=get_scale_table(levels=64), force=True)
    assert latents.coding_tables(m.net) is not tables


def _spread(net):
    """The scale heads' last layers rescaled, as in ``spread_tcm``: scales over the whole table."""
    with torch.no_grad():
        for head in net.cc_scale_transforms:
            last = head[-1]
            last.weight.mul_(20.0)
            last.bias.copy_(torch.logspace(np.log10(0.05), np.log10(300.0), last.bias.numel()))


def _scale_indexes(model, img):
    """The table index of every y symbol the encoder codes (saicm's float64 parameters)."""
    seen = []
    real = latents.encode_symbols

    def spy(sym, idx, tables):
        seen.append(np.asarray(idx).copy())
        return real(sym, idx, tables)

    latents.encode_symbols = spy
    try:
        data = encode(img, model)
    finally:
        latents.encode_symbols = real
    return data, seen[1]  # [0]: z, [1]: y


def test_official_tcm_layout_with_scales_over_the_whole_table(tmp_path, photo):
    """The authors' checkpoint layout (LIC-TCM's training layout, no CDF tables: CompressAI's 64
    scales, their padding and truncation; tcm-small, which imports the same way, for speed) with
    weights whose scales use the whole table (docs/MODELS.md, the measurement against their
    coding_m.py): every quarter of the table is used, and saicm's pixels stay within one level
    under 2 threads, another memory layout and without oneDNN."""
    from saicm.codec.zoo import import_checkpoint

    torch.manual_seed(0)
    net = create_model("tcm-small")
    _spread(net)
    path = tmp_path / "sa-icm_0.05.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    del net
    model = import_checkpoint(path, folder=tmp_path / "models")
    assert (model.arch, model.scale_levels, model.coding.rounding) == ("tcm-small", 64, "floor")
    img = photo[:128, :128]
    data, idx = _scale_indexes(model, img)
    assert np.histogram(idx, bins=4, range=(0, 64))[0].min() > 0
    ref = decode(data, model)
    for kind in PERTURBATIONS:
        _assert_close(_decode_under(data, model, kind), ref)

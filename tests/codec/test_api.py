"""encode / decode: real photos, exactness against the network, rate, determinism, bad input."""

from __future__ import annotations

import math
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from saicm.codec import decode, encode, unpack
from saicm.errors import BitstreamError, ImageError, ModelError, SaicmWarning
from saicm.image import MAX_PIXELS, load_image, pad_to_multiple, to_array, to_tensor


@pytest.mark.parametrize("crop", [(512, 512), (333, 257), (64, 64), (1, 1)])
def test_round_trip_keeps_size(tiny_model, photo, crop):
    img = photo[: crop[0], : crop[1]]
    data = encode(img, tiny_model)
    out = decode(data, tiny_model)
    assert out.shape == img.shape and out.dtype == np.uint8


def test_round_trip_voc_photo_finds_model_by_path(tiny_model, voc_photo):
    data = encode(voc_photo, tiny_model)
    assert unpack(data).model == "tiny"
    out = decode(data, tiny_model.path)
    assert out.shape == voc_photo.shape


def test_decoded_image_equals_forward_pass_on_quantised_latents(tiny_model, photo):
    img = photo[:200, :300]
    x, _ = pad_to_multiple(to_tensor(img), tiny_model.downsampling)
    with torch.no_grad():
        expected = to_array(tiny_model.net(x)["x_hat"][..., :200, :300])
    got = decode(encode(img, tiny_model), tiny_model)
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1  # float summation order only: never more than one level
    assert (diff > 0).mean() < 1e-3


def test_file_rate_matches_entropy_estimate(tiny_model, photo):
    x, _ = pad_to_multiple(to_tensor(photo), tiny_model.downsampling)
    with torch.no_grad():
        lik = tiny_model.net(x)["likelihoods"]
    estimate_bits = sum(float(-torch.log2(v).sum()) for v in lik.values())
    data = encode(photo, tiny_model)
    payload_bits = 8 * (len(data) - unpack(data).header_bytes)
    assert abs(payload_bits - estimate_bits) / estimate_bits < 0.02


def test_same_input_same_bytes(tiny_model, photo):
    assert encode(photo, tiny_model) == encode(photo.copy(), tiny_model)


def test_other_weights_are_refused(tiny_model, other_model, photo):
    data = encode(photo[:64, :64], tiny_model)
    with pytest.raises(ModelError, match="weights"):
        decode(data, other_model)


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        ("L", lambda a: Image.fromarray(a[..., 0])),
        ("RGBA", lambda a: Image.fromarray(np.dstack([a, np.tri(*a.shape[:2], dtype=np.uint8)]))),
        ("I;16", lambda a: Image.fromarray(a[..., 0].astype(np.uint16) * 257)),
    ],
)
def test_other_modes_are_converted_with_a_warning(tmp_path, photo, mode, make):
    path = tmp_path / f"img_{mode.replace(';', '')}.png"
    make(photo[:64, :96]).save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rgb = load_image(path)
    assert rgb.shape == (64, 96, 3) and rgb.dtype == np.uint8
    assert any(issubclass(w.category, SaicmWarning) for w in caught)
    if mode == "I;16":  # 16-bit scaled down, not clipped
        assert abs(int(rgb[..., 0].astype(int).mean()) - int(photo[:64, :96, 0].mean())) <= 1


def _png_claiming(path, width: int, height: int) -> None:
    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))


def test_absurd_image_is_refused_from_its_header(tmp_path):
    path = tmp_path / "huge.png"
    side = math.isqrt(MAX_PIXELS) + 1
    _png_claiming(path, side, side)
    with pytest.raises(ImageError, match="above the limit"):
        load_image(path)


def test_image_past_pillows_bomb_limit_says_too_large(tmp_path):
    """60000x60000 trips Pillow's decompression-bomb check before saicm's own: still "too
    large", not "not an image"."""
    path = tmp_path / "bomb.png"
    _png_claiming(path, 60000, 60000)
    with pytest.raises(ImageError, match="larger than the limit"):
        load_image(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"hello, not an image", "not an image"), (b"", "not an image")],
)
def test_unreadable_inputs(tmp_path, content, message):
    path = tmp_path / "x.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        load_image(path)


def test_truncated_png_is_an_image_error(tmp_path, photo):
    path = tmp_path / "cut.png"
    Image.fromarray(photo).save(path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ImageError):
        load_image(path)


def test_coding_beyond_the_memory_budget_is_refused_before_decoding(
    tiny_model, photo, monkeypatch
):
    from saicm.codec import pack
    from saicm.codec.api import memory_budget
    from saicm.errors import BitstreamError, SaicmError

    data = encode(photo[:128, :128], tiny_model)
    # 500 bytes per padded pixel (mbt2018-mean, docs/BENCHMARKS.md): 128x128 needs 7.8 MiB
    monkeypatch.setenv("SAICM_MEMORY_GB", str(4 / 1024))
    assert memory_budget() == 4 * 2**20
    with pytest.raises(BitstreamError, match=r"128x128 image .* 0\.0 GiB.*SAICM_MEMORY_GB"):
        decode(data, tiny_model)
    with pytest.raises(ImageError, match="SAICM_MEMORY_GB"):
        encode(photo[:128, :128], tiny_model)
    monkeypatch.setenv("SAICM_MEMORY_GB", "8")
    assert decode(data, tiny_model).shape == (128, 128, 3)
    # a crafted header that claims the largest allowed image: refused from its numbers alone
    # (8192 x 8192 x 500 bytes = 31 GiB), nothing allocated
    bs = unpack(data)
    huge = pack(
        type(bs)(**{**bs.__dict__, "height": 8192, "width": 8192, "latent_shape": (128, 128)})
    )
    with pytest.raises(BitstreamError, match=r"8192x8192 image .* needs about 31\.2 GiB"):
        decode(huge, tiny_model)
    for bad in ("0", "-1", "lots", "nan"):
        monkeypatch.setenv("SAICM_MEMORY_GB", bad)
        with pytest.raises(SaicmError, match="SAICM_MEMORY_GB"):
            memory_budget()


@pytest.mark.parametrize("name", ["{path}", "../{name}", "~/x.pt", "/etc/passwd", "a\x00b"])
def test_model_name_in_a_file_is_never_opened_as_a_path(tiny_model, photo, tmp_path, name):
    """A .sic file names its model; decoding without ``model`` looks the name up among the
    installed models only: a path there (the file's author's choice) opens no file."""
    import dataclasses

    from saicm.codec.bitstream import pack

    bs = unpack(encode(photo[:64, :64], tiny_model))
    name = name.format(path=tiny_model.path, name=tiny_model.path.name)
    crafted = pack(dataclasses.replace(bs, model=name))
    with pytest.raises(ModelError, match="no installed model named"):
        decode(crafted)
    assert decode(crafted, tiny_model).shape == (64, 64, 3)  # --model still decodes it


def test_decode_takes_a_path_or_bytes_and_says_what_it_takes(tiny_model, photo, tmp_path):
    img = photo[:64, :96]
    data = encode(img, tiny_model)
    sic = tmp_path / "a.sic"
    sic.write_bytes(data)
    want = decode(data, tiny_model)
    assert np.array_equal(decode(sic, tiny_model), want)  # os.PathLike
    assert np.array_equal(decode(str(sic), tiny_model), want)  # str: a path, never data
    assert np.array_equal(decode(bytearray(data), tiny_model), want)
    with pytest.raises(BitstreamError, match="no such file"):
        decode(tmp_path / "missing.sic", tiny_model)
    with pytest.raises(BitstreamError, match="a folder"):
        decode(tmp_path, tiny_model)
    with pytest.raises(BitstreamError, match=r"bytes of a \.sic file or its path"):
        decode(12, tiny_model)  # type: ignore[arg-type]


def test_encode_checks_an_arrays_dtype_and_range(tiny_model, photo):
    img = photo[:64, :64]
    want = encode(img, tiny_model)
    assert encode(img.astype(np.float32) / 255, tiny_model) == want  # floats are 0-1
    assert encode(img.astype(np.int64), tiny_model) == want  # integers are 0-255
    dark = (img // 8).astype(np.float64)  # 0-31 as floats: not silently read as 0-1 (or x255)
    with pytest.raises(ImageError, match=r"a float image holds 0.0-1.0"):
        encode(dark, tiny_model)
    with pytest.raises(ImageError, match=r"a float image holds 0.0-1.0"):
        encode(img.astype(np.float32), tiny_model)
    with pytest.raises(ImageError, match="NaN or infinite"):
        encode(np.full((64, 64, 3), np.nan), tiny_model)
    negative, above = img.astype(np.int16), img.astype(np.int32)
    negative[0, 0, 0], above[0, 0, 0] = -1, 256
    with pytest.raises(ImageError, match=r"int16 array with values -1\.\.\d+: an integer image"):
        encode(negative, tiny_model)
    with pytest.raises(ImageError, match=r"int32 array with values \d+\.\.256: an integer image"):
        encode(above, tiny_model)
    with pytest.raises(ImageError, match="is not an image"):
        encode(img.astype(np.complex64), tiny_model)
    with pytest.warns(SaicmWarning, match="16-bit"):
        assert encode(img.astype(np.uint16) * 257, tiny_model) == want
    # a float image whose maximum is <= 1 codes as x255; one that is dark codes dark
    assert encode(np.zeros((64, 64, 3), np.float32), tiny_model) == encode(
        np.zeros((64, 64, 3), np.uint8), tiny_model
    )


def test_the_api_raises_no_torch_jit_notice():
    import subprocess
    import sys

    code = "import saicm; saicm.list_models(); saicm.create_model('mbt2018-mean')"
    proc = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "jit" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("version", "files", "free"),
    [
        # v2: 8 GiB limit, 7 GiB used of which 5 GiB is page cache it may drop: 6 GiB free
        (2, {"memory.max": "8589934592", "memory.current": "7516192768",
             "memory.stat": "anon 2147483648\ninactive_file 5368709120\n"}, 6 * 2**30),
        (2, {"memory.max": "max", "memory.current": "1"}, 1 << 62),
        (2, {"memory.max": "1073741824", "memory.current": "536870912"}, 2**29),  # no stat
        (1, {"memory.limit_in_bytes": "4294967296", "memory.usage_in_bytes": "4294967296",
             "memory.stat": "cache 3\ntotal_inactive_file 1073741824\n"}, 2**30),
        (1, {"memory.limit_in_bytes": str(2**63 - 4096), "memory.usage_in_bytes": "5"}, 1 << 62),
        (2, {}, 1 << 62),  # no cgroup files (not Linux, or no memory controller)
    ],
)  # fmt: skip
def test_the_cgroup_budget_does_not_count_page_cache(tmp_path, version, files, free):
    from saicm.codec.api import cgroup_free

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert cgroup_free(str(tmp_path), version) == free

"""Weight coding: per-channel quantisation and rANS coding of state dicts."""

from __future__ import annotations

import pytest
import torch

from saicm.codec.weight_coding import decode_state, dequantize, encode_state, quantize
from saicm.errors import SaicmError


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "conv.weight": torch.randn(16, 8, 3, 3) * torch.linspace(0.01, 1, 16)[:, None, None, None],
        "conv.bias": torch.randn(16),
        "table": torch.arange(300, dtype=torch.int32),
        "half": torch.randn(20, 20).half(),
    }


def test_quantisation_error_is_half_a_step_per_channel():
    w = _state()["conv.weight"]
    for bits in (4, 8):
        q, scale = quantize(w, bits)
        assert q.abs().max() <= 2 ** (bits - 1) - 1
        err = (dequantize(q, scale) - w).abs().reshape(16, -1).amax(1)
        assert (err <= scale / 2 + 1e-7).all()  # the small channels get their own fine steps


def test_round_trip_keeps_raw_tensors_exactly_and_coded_ones_quantised():
    state = _state()
    back = decode_state(encode_state(state, bits=8, min_numel=100))
    assert list(back) == list(state)
    assert torch.equal(back["conv.bias"], state["conv.bias"])  # 16 values: stored raw
    assert torch.equal(back["table"], state["table"])
    q, scale = quantize(state["conv.weight"], 8)
    assert torch.equal(back["conv.weight"], dequantize(q, scale))
    assert back["half"].dtype == torch.float16


def test_pruned_weights_cost_less_and_fewer_bits_cost_less():
    w = torch.randn(64, 64, 3, 3)
    dense = len(encode_state({"w": w}, bits=8))
    pruned = w * (torch.rand_like(w) > 0.8)  # 80% zeros
    sparse = len(encode_state({"w": pruned}, bits=8))
    assert sparse < 0.55 * dense
    assert len(encode_state({"w": w}, bits=4)) < 0.6 * dense
    assert dense < w.numel()  # 8-bit symbols, entropy-coded under one byte each


def test_damaged_streams_fail_cleanly():
    data = encode_state(_state(), min_numel=100)
    with pytest.raises(SaicmError, match="not a saicm weight stream"):
        decode_state(b"nope" + data[4:])
    with pytest.raises(SaicmError, match="checksum"):
        decode_state(data[:50] + bytes([data[50] ^ 1]) + data[51:])
    with pytest.raises(SaicmError):
        decode_state(data[:-10])
    with pytest.raises(SaicmError):
        encode_state({"c": torch.zeros(3, dtype=torch.complex64)})


def test_a_tensor_of_one_value_codes():
    # one symbol would get the full width 2^16, which CompressAI's encoder (uint16) divides by
    state = {"w": torch.full((16, 4, 4), -0.5)}
    back = decode_state(encode_state(state, min_numel=16))
    assert torch.equal(back["w"], state["w"])


def _stream(version: int, cdf: list[int], stream: bytes, shape=(4, 4), qmin: int = -1) -> bytes:
    import struct
    import zlib

    out = b"SAIW" + struct.pack("<BI", version, 1) + struct.pack("<H", 1) + b"w"
    out += struct.pack(f"<BBB{len(shape)}I", 1, 0, len(shape), *shape)
    out += struct.pack("<B", 8) + struct.pack(f"<{shape[0]}f", *[0.1] * shape[0])
    out += struct.pack(f"<iI{len(cdf)}i", qmin, len(cdf), *cdf)
    out += struct.pack("<I", len(stream)) + stream
    return out + struct.pack("<I", zlib.crc32(out))


@pytest.mark.parametrize(
    ("cdf", "message"),
    [
        ([], "size"),  # zero-length CDF
        ([0], "size"),
        ([70000, 80000, 90000], "not a CDF"),  # cdf[0] > 2^16
        ([0, 65536, 30000, 65536], "not a CDF"),  # not monotone
        ([0, 30000, 65535], "not a CDF"),  # does not end at 2^16
        ([0, 30000, 65000, 65536], "escape"),  # version 2 must have a zero-width escape
    ],
)
def test_hostile_tables_are_refused_before_the_native_decoder(cdf, message):
    with pytest.raises(SaicmError, match=message):
        decode_state(_stream(2, cdf, b"\xff" * 4))


@pytest.mark.parametrize("stream", [b"", b"\xff" * 4, b"\x00" * 3])
def test_short_streams_decode_within_bounds(stream):
    # a 4-byte (or empty) stream for 16 values: the decoder reads only the padded copy
    state = decode_state(_stream(2, [0, 30000, 65536, 65536], stream))
    assert state["w"].shape == (4, 4)


def test_legacy_version_1_streams_still_decode():
    from compressai._CXX import pmf_to_quantized_cdf
    from compressai.ans import RansEncoder

    symbols = [0, 1, -1, 0] * 4
    cdf = list(pmf_to_quantized_cdf([0.25, 0.5, 0.25, 0.0], 16))  # -1, 0, 1 and the escape
    stream = RansEncoder().encode_with_indexes(symbols, [0] * 16, [cdf], [len(cdf)], [-1])
    state = decode_state(_stream(1, cdf, stream))
    expected = torch.tensor(symbols, dtype=torch.float32).reshape(4, 4) * 0.1
    assert torch.allclose(state["w"], expected)
    # crafted version-1 streams that drive the escape's bypass reads past their end: the child
    # decodes each twice (zeros, then 0xFF after it), and the difference is a clean error, never
    # whatever lay in memory
    for s in (b"\xff" * 8, b"\xff" * 64, b""):
        with pytest.raises(SaicmError, match="damaged: its decoder reads past its end"):
            decode_state(_stream(1, [0, 100, 200, 65536], s, shape=(4, 4096)))


def test_a_legacy_stream_upgrades_to_version_2_with_identical_tensors(monkeypatch):
    from compressai._CXX import pmf_to_quantized_cdf
    from compressai.ans import RansEncoder

    from saicm.codec import weight_coding

    symbols = [0, 1, -1, 0, 1, 1, 0, 0] * 2
    cdf = list(pmf_to_quantized_cdf([0.25, 0.5, 0.25, 0.0], 16))
    stream = RansEncoder().encode_with_indexes(symbols, [0] * 16, [cdf], [len(cdf)], [-1])
    legacy = _stream(1, cdf, stream)
    new = weight_coding.upgrade_state(legacy)
    assert legacy[4] == 1 and new[4] == 2
    old_state = decode_state(legacy)
    # version 2 decodes in this process: the forked legacy decoder is never asked
    monkeypatch.setattr(weight_coding, "isolated_call", None)
    new_state = decode_state(new)
    assert torch.equal(new_state["w"], old_state["w"])
    assert weight_coding.upgrade_state(new) == new  # already version 2: unchanged


def test_coded_sizes_are_bounded_before_allocation():
    with pytest.raises(SaicmError, match="limit"):
        decode_state(_stream(2, [0, 30000, 65536, 65536], b"", shape=(4, 1 << 30)))

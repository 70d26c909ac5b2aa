"""Weight coding: per-channel quantisation and rANS coding of state dicts."""

from __future__ import annotations

import pytest
import torch

from saicm.errors import SaicmError
from saicm.utils.weight_coding import decode_state, dequantize, encode_state, quantize


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

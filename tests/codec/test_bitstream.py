"""The .sic container: every field validated; random mutations never escape as foreign errors."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saicm.codec import Bitstream, decode, encode, pack, unpack
from saicm.codec.bitstream import Checks
from saicm.errors import BitstreamError, SaicmError

CHECKS = Checks(1, 2, 3, ((5, 7), (9, 1)), ((0, -4), (11, 1 << 20)))
SAMPLE = Bitstream(
    "tiny", b"\x01" * 8, 100, 150, (14, 21, 14, 21), (2, 3), (b"yyyy-strings", b"zz"), CHECKS
)


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def test_pack_unpack_round_trip():
    data = pack(SAMPLE)
    assert unpack(data) == SAMPLE
    assert SAMPLE.header_bytes == len(data) - len(b"yyyy-strings") - 2


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"", "bad magic"),
        (lambda d: b"PNG\x89" + d[4:], "bad magic"),
        (lambda d: d[:5], "truncated"),
        (lambda d: d[:-1], "checksum"),
        (lambda d: d[:20], "truncated"),
        (lambda d: d[:30] + bytes([d[30] ^ 0x40]) + d[31:], "checksum"),
        (lambda d: _with_crc(d[:4] + b"\x09" + d[5:-4]), "version 9"),
        (lambda d: _with_crc(d[:5] + b"\x00" + d[6:-4]), "truncated"),
        (lambda d: _with_crc(d[:-4] + b"extra"), "string table"),
    ],
)
def test_bad_files_fail_with_a_clear_message(mutate, message):
    with pytest.raises(BitstreamError, match=message):
        unpack(mutate(pack(SAMPLE)))


def test_version_1_layout_still_parses_with_its_padding_mapped():
    v1 = Bitstream("tiny", b"\x01" * 8, 100, 150, (0, 0, 28, 42), (2, 3), (b"y", b"z"), None, 1)
    data = pack(v1)
    assert data[4] == 1
    back = unpack(data)
    assert back == v1 and back.pad == (0, 0, 28, 42) and back.checks is None


@pytest.mark.parametrize(
    "checks",
    [Checks(1, 2, 3, ((9, 1), (5, 7))), Checks(1, 2, 3, (), ((4, 0), (4, 1)))],
)
def test_side_information_out_of_order_cannot_be_written(checks):
    with pytest.raises(ValueError, match="increase"):
        pack(Bitstream(**{**SAMPLE.__dict__, "checks": checks}))


def _side_file(side: bytes) -> bytes:
    """SAMPLE with its side information replaced by raw bytes (CRC made valid)."""
    data = pack(SAMPLE)
    start = data.index(struct.pack(">III", 1, 2, 3)) + 12
    end = len(data) - 4 - sum(len(s) for s in SAMPLE.strings)
    return _with_crc(data[:start] + side + data[end:-4])


@pytest.mark.parametrize(
    ("side", "message"),
    [
        (b"\xff\xff\xff\xff\x7f\x00", "more side information"),  # 2^35 - 1 entries
        (b"\x05\x00", "more side information"),
        (b"\x01\x00\x80\x80", "truncated"),
        (b"\x01\x00\x80\x80\x80\x80\x80\x01", "over-long"),
        (b"\x01\x00\x00\x80\x80\x04", "index out of range"),
        (b"\x00\x01\x00\x80\x80\x80\x80\x10", "outside int32"),
    ],
)
def test_hostile_side_information_is_refused(side, message):
    with pytest.raises(BitstreamError, match=message):
        unpack(_side_file(side))


def test_absurd_image_size_is_refused_before_decoding():
    huge = Bitstream(
        "tiny", b"\x01" * 8, 100_000, 100_000, (0,) * 4, (1563, 1563), (b"y", b"z"), CHECKS
    )
    with pytest.raises(BitstreamError, match="invalid image size"):
        unpack(pack(huge))


@pytest.fixture(scope="module")
def valid_file(tiny_model, photo):
    return encode(photo[:128, :192], tiny_model)


@settings(
    max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_mutations_decode_or_fail_cleanly(valid_file, tiny_model, data):
    buf = bytearray(valid_file)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "drop"]))
        if not buf:
            break
        i = data.draw(st.integers(0, len(buf) - 1))
        if kind == "flip":
            buf[i] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set":
            buf[i] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del buf[i:]
        elif kind == "insert":
            buf[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del buf[i]
    if data.draw(st.booleans()):  # also reach the checks behind the checksum
        buf = bytearray(_with_crc(bytes(buf[:-4]))) if len(buf) > 4 else buf
    try:
        image = decode(bytes(buf), tiny_model)
    except SaicmError:
        return
    assert image.ndim == 3 and image.shape[2] == 3

"""``.snv`` files: exact weights on every decoder arrangement, bounded headers, crafted and
mutated files give one clear error (in a subprocess, so that a crash fails the test)."""

from __future__ import annotations

import contextlib
import json
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
import torch

from saicm.errors import BitstreamError
from saicm.video import NeRV, decode_frames, encode_nerv, nerv_config, read_snv
from saicm.video.bitstream import MAX_FRAMES, MAX_HEADER, VERSION


@pytest.fixture(scope="module")
def snv() -> bytes:
    torch.manual_seed(0)
    net = NeRV(nerv_config(64, 96, "S"))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3)  # livelier frames than the initialisation's
    return encode_nerv(net, 8, fps=25.0)


def _parts(data: bytes) -> tuple[dict, bytes]:
    (hlen,) = struct.unpack("<I", data[5:9])
    return json.loads(data[9 : 9 + hlen]), data[9 + hlen : -4]


def _craft(header: dict | bytes, weights: bytes, hlen: int | None = None) -> bytes:
    """A file with hostile fields and a valid CRC."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    body = b"SANV" + struct.pack("<BI", VERSION, len(raw) if hlen is None else hlen) + raw
    body += weights
    return body + struct.pack("<I", zlib.crc32(body))


def _perturbations():
    yield "threads=1", lambda: _threads(1), None
    yield "threads=2", lambda: _threads(2), None
    yield "oneDNN off", lambda: torch.backends.mkldnn.flags(enabled=False), None
    yield "channels-last", contextlib.nullcontext, torch.channels_last


@contextlib.contextmanager
def _threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def test_weights_decode_exactly_and_frames_within_one_level(snv):
    """The weights are integers times per-channel scales: identical bits under every decoder
    arrangement. The frames are float32 convolutions: at most 1 level of 255 apart, rarely."""
    ref = read_snv(snv)
    ref_state = ref.net.state_dict()
    ref_frames = decode_frames(ref.net, ref.frames)
    for name, arrangement, memory_format in _perturbations():
        with arrangement():
            stream = read_snv(snv)
            state = stream.net.state_dict()
            assert all(torch.equal(state[k], ref_state[k]) for k in ref_state), name
            net = stream.net.to(memory_format=memory_format) if memory_format else stream.net
            frames = decode_frames(net, stream.frames)
        diff = np.abs(frames.astype(np.int16) - ref_frames)
        assert diff.max() <= 1, name
        assert (diff > 0).mean() < 1e-3, name


def _hostile_files(snv: bytes) -> dict[str, bytes]:
    header, weights = _parts(snv)
    cfg = header["config"]
    other = encode_nerv(NeRV(nerv_config(64, 96, "saicm-S")), 8)
    files = {
        "frames 10^9": {**header, "frames": 10**9},
        "frames 0": {**header, "frames": 0},
        "frames true": {**header, "frames": True},
        "frames 8.5": {**header, "frames": 8.5},
        "frames as text": {**header, "frames": "8"},
        "6250x6250 frames": {**header, "config": {**cfg, "height": 6250, "width": 6250}},
        "channels 10^6": {**header, "config": {**cfg, "channels": 10**6}},
        "stem 10^6": {**header, "config": {**cfg, "stem_dim": 10**6}},
        "20 blocks": {**header, "config": {**cfg, "strides": [1] * 20}},
        "fps 1e400": json.dumps({**header}).replace('"fps": 25.0', '"fps": 1e400').encode(),
        "fps NaN": json.dumps({**header, "fps": float("nan")}).encode(),
        "bits 99": {**header, "bits": 99},
        "extra field": {**header, "x": 1},
        "not a dict": [1, 2],
        "nested 30,000 deep": b"[" * 30_000 + b"]" * 30_000,
        "activation by name": {**header, "config": {**cfg, "activation": "os.system"}},
    }
    out = {k: _craft(v, weights) for k, v in files.items()}
    padded = json.dumps({**header, "pad": "x" * 70_000}).encode()
    out["header past 64 KiB"] = _craft(padded, weights)
    raw = json.dumps(header).encode()
    out["header length 2^32-1"] = _craft(raw, weights, hlen=2**32 - 1)
    out["header length past the end"] = _craft(raw, weights, hlen=len(raw) + len(weights) + 1)
    out["another network's weights"] = _craft(header, _parts(other)[1])
    out["no weights"] = _craft(header, b"")
    out["4-byte weights"] = _craft(header, b"SAIW")
    # the weight table: a tensor grown to 10^6 x 10^3, a zero-length CDF, a stream size past
    # the end (each with the weight stream's own CRC fixed, so only the bounds can catch them)
    name = b"stem.0.weight"
    at = weights.index(name) + len(name) + 3
    dims = struct.unpack("<2I", weights[at : at + 8])
    big = weights[:at] + struct.pack("<2I", 10**6, 10**3) + weights[at + 8 :]
    out["numel 10^9"] = _craft(header, _fix(big))
    scale_end = at + 8 + 1 + 4 * dims[0]
    zero_cdf = weights[: scale_end + 4] + struct.pack("<I", 0) + weights[scale_end + 8 :]
    out["zero-length CDF"] = _craft(header, _fix(zero_cdf))
    bias = b"head.bias"  # stored raw: 3 float32 values after name, kind, dtype, ndim, dim
    at = weights.index(bias) + len(bias) + 3 + 4
    nan = weights[:at] + struct.pack("<f", float("nan")) + weights[at + 4 :]
    out["NaN weight"] = _craft(header, _fix(nan))
    huge_cdf = weights[: scale_end + 4] + struct.pack("<I", 2**31) + weights[scale_end + 8 :]
    out["CDF of 2^31 entries"] = _craft(header, _fix(huge_cdf))
    return out


def _fix(weights: bytes) -> bytes:
    body = weights[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_crafted_headers_are_refused_before_allocating(snv):
    for name, data in _hostile_files(snv).items():
        with pytest.raises(BitstreamError, match=r"\.snv"):
            read_snv(data)
        assert name  # every crafted file: one clear error


def test_files_of_the_earlier_presets_still_decode():
    """Files written before the official presets lack activation, head, PE layout and PE order:
    they are saicm-S networks (GELU, 3x3 head, sines first, ``t * (pi * b^i)``) and decode as
    such, pixel for pixel as before; the same weights run in the official PE order differ."""
    import dataclasses

    torch.manual_seed(1)
    net = NeRV(dataclasses.replace(nerv_config(64, 96, "saicm-S"), pe_order="pi_first"))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3)  # busy frames, where the PE order shows
    header, weights = _parts(encode_nerv(net, 4))
    for key in ("activation", "head_kernel", "pe_layout", "pe_order"):
        del header["config"][key]
    stream = read_snv(_craft(header, weights))
    assert stream.net.config == net.config and stream.net.config.pe_order == "pi_first"
    fresh = read_snv(encode_nerv(net, 4)).net
    assert np.array_equal(decode_frames(stream.net, 4), decode_frames(fresh, 4))
    header["config"]["pe_order"] = "official"
    other = read_snv(_craft(header, weights)).net
    assert not np.array_equal(decode_frames(other, 4), decode_frames(fresh, 4))


def test_a_file_larger_than_any_snv_is_not_read(tmp_path):
    from saicm.video.bitstream import MAX_FILE

    big = tmp_path / "big.snv"
    with open(big, "wb") as f:
        f.truncate(MAX_FILE + 1)  # sparse: no disk used
    with pytest.raises(BitstreamError, match=r"more than a \.snv file can hold"):
        read_snv(big)


def test_limits_are_what_the_docs_say():
    assert MAX_FRAMES == 100_000 and MAX_HEADER == 65_536


FUZZ = textwrap.dedent(
    """
    import itertools, json, random, struct, sys, time, zlib
    from saicm.errors import BitstreamError
    from saicm.video.bitstream import iter_frames, read_snv
    files = [bytes.fromhex(h) for h in json.load(open(sys.argv[1]))]
    rng = random.Random(0)
    base, crafted = files[0], files[1:]
    def mutants():  # made one at a time: the peak memory is the decoder's, not the list's
        for i in range(int(sys.argv[2])):
            b = bytearray(base)
            for _ in range(rng.choice((1, 1, 2, 4, 16))):
                pos = rng.randrange(len(b) - 4)
                b[pos] = rng.randrange(256)
            if rng.random() < 0.5:  # a valid CRC: only the parser's checks stand in the way
                b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])))
            if rng.random() < 0.2:
                b = b[: rng.randrange(len(b))]
            yield bytes(b)
    counts = {"tried": 0, "clean errors": 0, "decoded": 0}
    start = time.perf_counter()
    for data in itertools.chain(crafted, mutants()):
        counts["tried"] += 1
        try:
            stream = read_snv(data)
            next(iter_frames(stream.net, stream.frames))
            counts["decoded"] += 1
        except BitstreamError as exc:
            assert "\\n" not in str(exc), str(exc)
            counts["clean errors"] += 1
    counts["seconds"] = round(time.perf_counter() - start, 1)
    # VmHWM: this process image's peak (ru_maxrss would include the parent's size at fork)
    hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")]
    counts["max_rss_mb"] = int(hwm[0].split()[1]) // 1024 if hwm else 0
    print(json.dumps(counts))
    """
)


def test_fuzz_crafted_and_mutated_files_in_a_subprocess(snv, tmp_path):
    crafted = list(_hostile_files(snv).values())
    (tmp_path / "files.json").write_text(json.dumps([f.hex() for f in [snv, *crafted]]))
    (tmp_path / "fuzz.py").write_text(FUZZ)
    r = subprocess.run(
        [sys.executable, str(tmp_path / "fuzz.py"), str(tmp_path / "files.json"), "300"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-2000:]  # a segfault is -11, an uncaught error 1
    counts = json.loads(r.stdout.strip().splitlines()[-1])
    assert counts["tried"] == len(crafted) + 300
    assert counts["clean errors"] + counts["decoded"] == counts["tried"]
    assert counts["clean errors"] >= len(crafted)
    assert counts["max_rss_mb"] < 2000  # no header makes it allocate without bound


def test_a_snv_larger_than_its_raw_frames_warns_and_names_a_smaller_preset(tmp_path):
    import warnings

    from saicm.errors import SaicmWarning

    net = NeRV(nerv_config(96, 160, "S"))
    with pytest.warns(SaicmWarning, match=r"larger than its 8 raw frames of 160x96") as seen:
        data = encode_nerv(net, 8, path=tmp_path / "c.snv")
    message = str(seen[0].message)
    assert f"{len(data)} bytes" in message and f"{3 * 8 * 96 * 160} bytes" in message
    assert f"{8 * len(data) / (8 * 96 * 160):.1f} bpp against 24" in message
    assert "--size saicm-S" in message
    # the same network for a clip of many frames is smaller than them: nothing to say
    with warnings.catch_warnings():
        warnings.simplefilter("error", SaicmWarning)
        encode_nerv(net, 2000)

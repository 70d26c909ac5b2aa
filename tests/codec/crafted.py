"""Crafted and mutated ``.sic`` files and coded weight streams, decoded one by one in a child
process so that a crash (segfault), a hang or an unexpected exception is counted, not fatal.

    python tests/codec/crafted.py WORKDIR [--mutants 300] [--seed 0] [--every K] [--no-build]

Prints one JSON line: per container, files tried, decoded, clean errors (``SaicmError``),
unexpected exceptions, crashes, hangs, and the largest resident memory of a child (MB). Builds
files with its own byte-level writers (CRC-32 made valid), not with saicm's, so the same harness
runs against an older saicm (build once, then ``--no-build`` with ``PYTHONPATH`` at the older
source) for before/after counts. ``--every K`` keeps every K-th crafted file (quick runs). Used by
``tests/codec/test_fuzz.py``; the counts in docs/SECURITY.md come from it.
"""

from __future__ import annotations

import json
import os
import random
import resource
import select
import struct
import subprocess
import sys
import zlib
from pathlib import Path

HANG_S = 60.0


# -- .sic writers ------------------------------------------------------------------------------
def sic_v1(name, whash, h, w, pad_b, pad_r, zh, zw, strings):
    n = name.encode()
    body = b"SAIC" + bytes([1, len(n)]) + n + whash
    body += struct.pack(">IIHHHHB", h, w, pad_b, pad_r, zh, zw, len(strings))
    body += struct.pack(f">{len(strings)}I", *map(len, strings)) + b"".join(strings)
    return body + struct.pack(">I", zlib.crc32(body))


def _varint(v):
    out = bytearray()
    while True:
        byte, v = v & 0x7F, v >> 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _side(pairs, code):
    out, prev = b"", -1
    for p, v in pairs:  # crafted files may go backwards: the gap is then clamped at 0
        out += _varint(max(p - prev - 1, 0)) + _varint(code(v))
        prev = p
    return out


def sic_v2(name, whash, h, w, pad, zh, zw, strings, checks=(0, 0, 0), sig=(), out=(), gain=None):
    """Version 2, or version 3 (a variable-rate model's file) when ``gain`` is given: raw
    float32 bits (bytes) or a number."""
    n = name.encode()
    body = b"SAIC" + bytes([2 if gain is None else 3, len(n)]) + n + whash
    body += struct.pack(">IIHHHHHHB", h, w, *pad, zh, zw, len(strings))
    body += struct.pack(f">{len(strings)}I", *map(len, strings))
    body += struct.pack(">III", *checks)
    if gain is not None:
        body += gain if isinstance(gain, bytes) else struct.pack(">f", gain)
    body += _varint(len(sig)) + _varint(len(out))
    body += _side(sig, lambda i: i) + _side(out, lambda v: 2 * v if v >= 0 else -2 * v - 1)
    return body + b"".join(strings) + struct.pack(">I", zlib.crc32(body + b"".join(strings)))


def _strings(data: bytes) -> list[bytes]:
    """The entropy-coded strings of a version-2 or -3 file written by saicm."""
    n = data[5]
    pos = 6 + n + 8 + struct.calcsize(">IIHHHHHHB")
    g = data[pos - 1]
    lengths = struct.unpack_from(f">{g}I", data, pos)
    end = len(data) - 4
    out = []
    for length in reversed(lengths):
        out.insert(0, data[end - length : end])
        end -= length
    return out


def parse_v2_checks(data: bytes):
    """(tables, indexes, symbols) of a version-2 or -3 file written by saicm."""
    n = data[5]
    pos = 6 + n + 8 + struct.calcsize(">IIHHHHHHB")
    g = data[pos - 1]
    pos += 4 * g
    return struct.unpack_from(">III", data, pos)


# -- weight-stream writers -------------------------------------------------------------------
def saiw(version, tensors):
    """tensors: (name, coded, dtype_code, shape, payload bytes)."""
    out = b"SAIW" + struct.pack("<BI", version, len(tensors))
    for name, coded, dt, shape, payload in tensors:
        key = name.encode()
        out += struct.pack("<H", len(key)) + key
        out += struct.pack(f"<BBB{len(shape)}I", coded, dt, len(shape), *shape) + payload
    return out + struct.pack("<I", zlib.crc32(out))


def coded_payload(shape0, qmin, cdf, stream, length=None):
    length = len(cdf) if length is None else length
    return (
        struct.pack("<B", 8)
        + struct.pack(f"<{shape0}f", *([0.01] * shape0))
        + struct.pack(f"<iI{len(cdf)}i", qmin, length, *cdf)
        + struct.pack("<I", len(stream))
        + stream
    )


def _mutate(rng: random.Random, data: bytes, fix_crc: bool) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        i = rng.randrange(len(buf))
        kind = rng.choice(["flip", "set", "cut", "insert", "drop"])
        if kind == "flip":
            buf[i] ^= 1 << rng.randrange(8)
        elif kind == "set":
            buf[i] = rng.randrange(256)
        elif kind == "cut":
            del buf[i:]
        elif kind == "insert":
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            del buf[i]
    if fix_crc and len(buf) > 4:
        body = bytes(buf[:-4])
        buf = bytearray(body + struct.pack(">I" if body[:4] == b"SAIC" else "<I", zlib.crc32(body)))
    return bytes(buf)


def build(workdir: Path, mutants: int, seed: int, every: int = 1) -> None:
    """Write the model and the files to ``workdir``."""
    import numpy as np
    import torch
    from skimage import data as skdata

    from saicm.codec import create_model, encode, export_model
    from saicm.codec.weight_coding import encode_state

    rng = random.Random(seed)
    torch.manual_seed(seed)
    net = create_model("mbt2018-mean", N=32, M=48)
    model = export_model(
        workdir / "tiny.pt", net, name="tiny", arch="mbt2018-mean", config={"N": 32, "M": 48}
    )
    whash = model.hash_prefix
    img = skdata.astronaut()[:64, :128]
    valid = encode(img, model)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = model.net.compress(x.contiguous(memory_format=torch.channels_last))
    y1, z1 = out["strings"][0][0], out["strings"][1][0]
    v1 = sic_v1("tiny", whash, 64, 128, 0, 0, 1, 2, [y1, z1])
    sics: list[bytes] = [valid, v1]
    checks = parse_v2_checks(valid) if valid[4] == 2 else (0, 0, 0)
    hostile = [b"", b"\x00", b"\xff" * 3, b"\xff" * 4, b"\xff" * 8, b"\xff" * 64, bytes(7)]
    hostile += [bytes(rng.randrange(256) for _ in range(n)) for n in (4, 9, 33, 200)]
    sizes = [(64, 128, 1, 2), (256, 256, 4, 4), (64, 64, 1, 1), (2048, 64, 32, 1)]
    for h, w, zh, zw in sizes:
        for a in hostile:
            for b in hostile[:4]:
                sics.append(sic_v1("tiny", whash, h, w, 0, 0, zh, zw, [a, b]))
                sics.append(sic_v2("tiny", whash, h, w, (0, 0, 0, 0), zh, zw, [b, a], checks))
                sics.append(sic_v1("tiny", whash, h, w, 0, 0, zh, zw, [y1 + a, z1 + b]))
    n_z = 32 * 2
    for sig in ([(n_z, 65535)], [(n_z, 128)], [(10**9, 3)], [(n_z + 1, 1), (n_z, 1)], [(0, 5)]):
        sics.append(sic_v2("tiny", whash, 64, 128, (0, 0, 0, 0), 1, 2, [z1, y1], checks, sig=sig))
    for out_ in ([(0, 2**31 - 1)], [(10**9, 1)], [(5, -(2**31))], [(3, 1), (3, 2)]):
        sics.append(sic_v2("tiny", whash, 64, 128, (0, 0, 0, 0), 1, 2, [z1, y1], checks, out=out_))
    for pad in ((63, 0, 1, 0), (64, 0, 0, 0), (0, 0, 65535, 65535), (32, 32, 32, 32)):
        sics.append(sic_v2("tiny", whash, 64, 128, pad, 1, 2, [z1, y1], checks))
    sics.append(sic_v2("tiny", whash, 64, 128, (0,) * 4, 1, 2, [z1, y1, y1], checks))
    sics.append(sic_v2("tiny", whash, 64, 128, (0,) * 4, 1, 2, [z1], checks))
    sics.append(sic_v2("tiny", whash, 64, 128, (0,) * 4, 1, 2, [z1, y1], checks, sig=[(0, 0)] * 7))
    sics = sics[:2] + sics[2::every]
    for i in range(mutants):
        sics.append(_mutate(rng, rng.choice([valid, v1]), fix_crc=i % 2 == 0))

    # weight streams
    state = {"w": torch.randn(16, 4, 3, 3), "b": torch.randn(16)}
    valid_w = encode_state(state, min_numel=64)
    good_cdf = [0, 30000, 65000, 65535, 65536]
    weights: list[bytes] = [valid_w]
    streams = [b"", b"\xff" * 4, b"\x00" * 4, b"\xff" * 64]
    streams.append(bytes(rng.randrange(256) for _ in range(40)))
    cdfs = [
        [],
        [0],
        [0, 65536],
        [70000, 80000, 90000],
        [0, 65536, 30000, 65536],
        [0, 100, 100, 65536],
        [0, 2**31 - 1, 65536],
        [-5, 100, 65536],
        good_cdf,
        [0, 30000, 65536, 65536],
    ]
    for version in (1, 2):
        for cdf in cdfs:
            for s in streams:
                for shape in ((16, 4, 3, 3), (1 << 20, 1 << 12), (4,)):
                    p = coded_payload(shape[0] if shape[0] < 1 << 16 else 4, -1, cdf, s)
                    weights.append(saiw(version, [("w", 1, 0, shape, p)]))
        for length in (0, 2**31, 2**32 - 1):
            p = coded_payload(16, -1, good_cdf, b"\xff" * 8, length=length)
            weights.append(saiw(version, [("w", 1, 0, (16, 4, 3, 3), p)]))
        weights.append(saiw(version, [("w", 1, 4, (16, 4), coded_payload(16, 0, good_cdf, b""))]))
        weights.append(saiw(version, [("w", 0, 0, (2**32 - 1,) * 4, b"")]))
        weights.append(saiw(version, [("w", 1, 0, (0, 4), coded_payload(0, 0, good_cdf, b""))]))
        weights.append(saiw(version, [("w", 1, 99, (4,), b"")]))
    weights = weights[:1] + weights[1::every]
    for i in range(mutants):
        weights.append(_mutate(rng, valid_w, fix_crc=i % 2 == 0))
    # variable-rate files (format 3): hostile gains, strings and mutants of a valid one
    torch.manual_seed(seed)
    vnet = create_model("mbt2018-mean-vbr", N=32, M=48, levels=4)
    vnet.set_range(0.002, 0.02)
    vbr = export_model(
        workdir / "vbr.pt", vnet, name="vbr", arch="mbt2018-mean-vbr",
        config={"N": 32, "M": 48, "levels": 4},
    )  # fmt: skip
    valid3 = encode(img, vbr, lmbda=0.006)
    vhash = vbr.hash_prefix
    vchecks = parse_v2_checks(valid3)
    vz, vy = _strings(valid3)
    vbrs: list[bytes] = [valid3]
    gains = [float("nan"), float("inf"), -float("inf"), -0.5, 0.0, 1e-38, 1e-45, 1e30, 0.3, 1.0001]
    gains += [b"\x7f\xc0\x00\x01", b"\xff\xff\xff\xff", b"\x00\x00\x00\x01"]
    for g in gains:
        vbrs.append(sic_v2("vbr", vhash, 64, 128, (0,) * 4, 1, 2, [vz, vy], vchecks, gain=g))
    for a in hostile[::2]:
        vbrs.append(sic_v2("vbr", vhash, 64, 128, (0,) * 4, 1, 2, [a, vy], vchecks, gain=0.5))
        vbrs.append(sic_v2("vbr", vhash, 64, 128, (0,) * 4, 1, 2, [vz, a], vchecks, gain=0.5))
    vbrs.append(sic_v2("vbr", vhash, 64, 128, (0,) * 4, 1, 2, [vz, vy], vchecks))  # no gain
    for i in range(mutants):
        vbrs.append(_mutate(rng, valid3, fix_crc=i % 2 == 0))
    for kind, files in (("sic", sics), ("weights", weights), ("vbr", vbrs)):
        d = workdir / kind
        d.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(files):
            (d / f"{i:05d}.bin").write_bytes(f)
    np.save(workdir / "ok.npy", np.zeros(1))


def child(workdir: Path, kind: str, start: int) -> None:
    """Decode files from ``start`` on, one status line each (flushed before and after)."""
    import warnings

    warnings.simplefilter("ignore")
    from saicm.codec import decode, load_model
    from saicm.codec.weight_coding import decode_state
    from saicm.errors import SaicmError

    model = load_model(workdir / ("vbr.pt" if kind == "vbr" else "tiny.pt"))
    files = sorted((workdir / kind).glob("*.bin"))
    for i in range(start, len(files)):
        data = files[i].read_bytes()
        print(f"try {i}", flush=True)
        try:
            decode(data, model) if kind in ("sic", "vbr") else decode_state(data)
            result = "ok"
        except SaicmError:
            result = "clean"
        except Exception as exc:  # what the CLI would report as "unexpected"
            result = f"unexpected {type(exc).__name__}: {str(exc)[:80]!r}"
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(f"done {i} {rss} {result}", flush=True)


def run(workdir: Path, kind: str) -> dict:
    files = sorted((workdir / kind).glob("*.bin"))
    counts = {"tried": len(files), "ok": 0, "clean": 0, "unexpected": 0, "crashes": 0, "hangs": 0}
    examples: list[str] = []
    peak = 0
    start = 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    while start < len(files):
        proc = subprocess.Popen(
            [sys.executable, __file__, str(workdir), "--child", kind, str(start)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        current = start
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], HANG_S)
            if not ready:  # no progress: a hang
                proc.kill()
                proc.wait()
                counts["hangs"] += 1
                examples.append(f"hang {kind} {current}")
                start = current + 1
                break
            line = proc.stdout.readline()
            if not line:  # the child ended: finished or crashed
                code = proc.wait()
                if code == 0:
                    start = len(files)
                else:
                    counts["crashes"] += 1
                    examples.append(f"crash {kind} {current} exit {code}")
                    start = current + 1
                break
            words = line.split()
            if words[0] == "try":
                current = int(words[1])
            elif words[0] == "done":
                peak = max(peak, int(words[2]))
                res = words[3]
                counts[res if res in counts else "unexpected"] += 1
                if res == "unexpected":
                    examples.append(f"{kind} {words[1]}: {' '.join(words[3:])}")
    counts["peak_rss_mb"] = peak
    counts["examples"] = examples[:8]
    return counts


def main() -> None:
    args = sys.argv[1:]
    workdir = Path(args[0])
    if "--child" in args:
        i = args.index("--child")
        child(workdir, args[i + 1], int(args[i + 2]))
        return
    mutants = int(args[args.index("--mutants") + 1]) if "--mutants" in args else 300
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 0
    every = int(args[args.index("--every") + 1]) if "--every" in args else 1
    workdir.mkdir(parents=True, exist_ok=True)
    if "--no-build" not in args:
        build(workdir, mutants, seed, every)
    print(json.dumps({kind: run(workdir, kind) for kind in ("sic", "weights", "vbr")}))


if __name__ == "__main__":
    main()

"""The ``.snv`` file: a NeRV video as quantised, entropy-coded weights.

Layout (little-endian)::

    b"SANV"  u8 version  u32 header length  header (UTF-8 JSON: NeRV config, frames, fps, bits)
    weight stream (saicm.codec.weight_coding: per-channel quantised, rANS-coded)
    u32 CRC-32 of everything before it

Decoding builds the network from the header, loads the dequantised weights and runs it on every
frame index: the frames are those of the dequantised model the encoder holds, exactly.
The rate is the whole file: ``bpp = 8 * bytes / (frames * height * width)``.

A file is hostile until checked (docs/SECURITY.md, ".snv files"): the header is bounded field
by field (:data:`MAX_FRAMES`, :data:`MAX_FPS`, :data:`MAX_HEADER`, bits 2..16, and the NeRV
config's limits in :mod:`saicm.video.nerv`), and the weight stream's table of tensors is walked
and checked against the network the header describes and against the file's own length before
anything is allocated or handed to the native rANS decoder.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..codec.weight_coding import decode_state, encode_state
from ..errors import BitstreamError, SaicmError
from ..utils.io import atomic_write_bytes
from .frames import MAX_FRAMES
from .nerv import (
    MAX_ACTIVATION,
    MAX_PARAMETERS,
    NeRV,
    NeRVConfig,
    activation_elements,
    frame_times,
)

__all__ = [
    "MAX_FPS",
    "MAX_FRAMES",
    "MAX_HEADER",
    "VideoStream",
    "decode_frames",
    "encode_nerv",
    "iter_frames",
    "read_snv",
]

MAGIC = b"SANV"
VERSION = 1
#: Header limits: frames of a clip (MAX_FRAMES, 100,000: an hour at 25 fps is 90,000), frame
#: rate, JSON bytes.
MAX_FPS = 1000.0
MAX_HEADER = 65_536
#: The largest file a valid header can describe: every weight stored raw as float32.
MAX_FILE = 4 * MAX_PARAMETERS + MAX_HEADER + 2**20
#: Float values one decoded batch may hold at the widest step (2^28 = 1 GiB of float32).
BATCH_ACTIVATION = 2**28


@dataclass
class VideoStream:
    """A parsed ``.snv`` file: the network with its dequantised weights, and the clip facts."""

    net: NeRV
    frames: int
    fps: float
    bits: int
    nbytes: int

    @property
    def bpp(self) -> float:
        c = self.net.config
        return 8 * self.nbytes / (self.frames * c.height * c.width)


def encode_nerv(
    net: NeRV, frames: int, fps: float = 0.0, bits: int = 8, path: str | os.PathLike | None = None
) -> bytes:
    """Quantise ``net``'s weights to ``bits`` per channel, code them, and return (and write to
    ``path``, atomically) the ``.snv`` bytes. :class:`SaicmError` for values a decoder would
    refuse (frames, fps, bits out of the header limits)."""
    _check_header_values(frames, fps, bits, SaicmError)
    header = json.dumps(
        {"config": net.config.to_dict(), "frames": frames, "fps": float(fps), "bits": bits}
    ).encode()
    state = net.state_dict()
    body = MAGIC + struct.pack("<BI", VERSION, len(header)) + header
    body += encode_state(state, bits=bits, min_numel=64)
    data = body + struct.pack("<I", zlib.crc32(body))
    if path is not None:
        atomic_write_bytes(path, data)
    _warn_if_larger_than_raw(len(data), frames, net.config.height, net.config.width, path)
    return data


def _warn_if_larger_than_raw(
    nbytes: int, frames: int, height: int, width: int, path: str | os.PathLike | None
) -> None:
    """A :class:`~saicm.errors.SaicmWarning` when ``nbytes`` exceed the clip's raw 8-bit RGB
    frames (24 bits a pixel): the network has more weights than the clip has pixel bytes."""
    raw = 3 * frames * height * width
    if nbytes <= raw:
        return
    import warnings

    from ..errors import SaicmWarning

    bpp = 8 * nbytes / (frames * height * width)
    warnings.warn(
        f"{path or 'the .snv'}: {nbytes} bytes, larger than its {frames} raw frames of "
        f"{width}x{height} ({raw} bytes; {bpp:.1f} bpp against 24): the network has more "
        "weights than the clip has pixels; train a smaller preset (--size saicm-S is the "
        "smallest), on more frames, or prune (--prune 0.5)",
        SaicmWarning,
        stacklevel=3,
    )


def _check_header_values(frames: object, fps: object, bits: object, error: type) -> None:
    if type(frames) is not int or not 1 <= frames <= MAX_FRAMES:
        raise error(f"frames {frames!r}: an integer in [1, {MAX_FRAMES}]")
    if type(fps) not in (int, float) or not (math.isfinite(fps) and 0 <= fps <= MAX_FPS):
        raise error(f"fps {fps!r}: a number in [0, {MAX_FPS:g}]")
    if type(bits) is not int or not 2 <= bits <= 16:
        raise error(f"bits {bits!r}: an integer in [2, 16]")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _check_weight_table(stream: bytes, expected: dict[str, tuple[int, ...]]) -> None:
    """Walk the weight stream's table (``saicm.codec.weight_coding`` layout) without decoding:
    every tensor is one the network has, with its shape, and every length fits in the file."""
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(stream):
            raise SaicmError("weight stream is truncated (a length runs past the file's end)")
        pos += n
        return stream[pos - n : pos]

    def unpack(fmt: str) -> tuple:
        return struct.unpack("<" + fmt, take(struct.calcsize("<" + fmt)))

    if take(4) != b"SAIW":
        raise SaicmError("no weight stream")
    _, count = unpack("BI")
    if count != len(expected):
        raise SaicmError(f"weight stream holds {count} tensors, the network has {len(expected)}")
    seen: set[str] = set()
    for _ in range(count):
        (n,) = unpack("H")
        name = take(n).decode("utf-8", "replace")
        coded, dtype_code, ndim = unpack("BBB")
        if name not in expected or name in seen:
            raise SaicmError(f"weight stream: unexpected tensor {name[:60]!r}")
        seen.add(name)
        shape = unpack(f"{ndim}I")
        if shape != expected[name]:
            raise SaicmError(f"weight stream: {name} is {list(shape)}, not {list(expected[name])}")
        if dtype_code != 0:  # float32: what NeRV is made of
            raise SaicmError(f"weight stream: {name} is not float32")
        numel = math.prod(shape)
        if coded not in (0, 1):
            raise SaicmError(f"weight stream: {name} has kind {coded}")
        if not coded:
            take(4 * numel)
            continue
        if ndim == 0:
            raise SaicmError(f"weight stream: coded {name} has no shape")
        take(1 + 4 * shape[0])
        _, length = unpack("iI")
        if not 2 <= length <= 2**16 + 2:
            raise SaicmError(f"weight stream: {name} has a table of {length} entries")
        take(4 * length)
        (size,) = unpack("I")
        take(size)
    if pos != len(stream) - 4:
        raise SaicmError("weight stream has trailing bytes")


def read_snv(data: bytes | str | os.PathLike) -> VideoStream:
    """Parse ``.snv`` bytes (or a file) into a ready network.

    Raises :class:`BitstreamError` (one line) if it is not a complete, intact ``.snv`` file or
    any header field is out of its limits; nothing large is allocated before the sizes are
    checked against the file's length and the limits.
    """
    if not isinstance(data, bytes | bytearray):
        path = Path(data)
        try:
            if path.is_file() and path.stat().st_size > MAX_FILE:
                raise BitstreamError(
                    f"{path}: {path.stat().st_size} bytes, more than a .snv file can hold "
                    f"({MAX_FILE})"
                )
            data = path.read_bytes()
        except FileNotFoundError:
            raise BitstreamError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise BitstreamError(f"{path}: a folder, not a .snv file") from None
    data = bytes(data)
    if len(data) < 13 or data[:4] != MAGIC:
        raise BitstreamError("not a .snv file (bad magic)")
    body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
    if zlib.crc32(body) != crc:
        raise BitstreamError(".snv file is truncated or corrupted (checksum mismatch)")
    version, hlen = struct.unpack("<BI", body[4:9])
    if version != VERSION:
        raise BitstreamError(f".snv version {version} not supported")
    if hlen > min(MAX_HEADER, len(body) - 9):
        raise BitstreamError(f".snv file is damaged (header of {hlen} bytes)")
    try:
        header = json.loads(body[9 : 9 + hlen].decode(), parse_constant=_no_constant)
        if not isinstance(header, dict) or set(header) != {"config", "frames", "fps", "bits"}:
            raise SaicmError("the header is not a .snv header")
        frames, fps, bits = header["frames"], header["fps"], header["bits"]
        _check_header_values(frames, fps, bits, SaicmError)
        config = NeRVConfig.from_dict(header["config"])  # bounded, nothing built yet
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in NeRV(config).state_dict().items()}
        stream = body[9 + hlen :]
        _check_weight_table(stream, shapes)
        state = decode_state(stream)
        if {k: tuple(v.shape) for k, v in state.items()} != shapes:
            raise SaicmError("weights do not fit the network")
        if not all(bool(torch.isfinite(v).all()) for v in state.values()):
            raise SaicmError("weights hold NaN or infinite values")
        net = NeRV(config)
        net.load_state_dict(state)
    except (
        ValueError, KeyError, TypeError, RuntimeError, OverflowError, RecursionError, SaicmError
    ) as exc:  # fmt: skip
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise BitstreamError(f".snv file is damaged ({first})") from None
    return VideoStream(net.eval(), frames, float(fps), bits, len(data))


def decode_batch(config: NeRVConfig, most: int = 8) -> int:
    """Frames decoded at once: at most ``most``, and as many as keep the widest step of the
    forward pass under ``BATCH_ACTIVATION`` float values (at least one frame)."""
    per_frame = activation_elements(config)
    assert per_frame <= MAX_ACTIVATION  # validated with the config
    return max(1, min(most, BATCH_ACTIVATION // per_frame))


@torch.no_grad()
def iter_frames(net: NeRV, frames: int, batch: int | None = None) -> Iterator[np.ndarray]:
    """The ``frames`` frames of ``net`` in order, as ``(B, H, W, 3)`` uint8 batches (memory:
    one batch, see :func:`decode_batch`). Values: ``round(255 * clamp(x, 0, 1))``."""
    batch = batch or decode_batch(net.config)
    for start in range(0, frames, batch):
        idx = torch.arange(start, min(start + batch, frames))
        x = net(frame_times(idx, frames))
        if not torch.isfinite(x).all():
            raise BitstreamError("decoded frames hold NaN or infinite values (damaged weights?)")
        yield (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def decode_frames(net: NeRV, frames: int, batch: int | None = None) -> np.ndarray:
    """All ``frames`` frames of ``net`` as a ``(T, H, W, 3)`` uint8 array."""
    return np.concatenate(list(iter_frames(net, frames, batch)))

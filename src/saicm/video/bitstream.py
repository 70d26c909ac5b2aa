"""The ``.snv`` file: a NeRV video as quantised, entropy-coded weights.

Layout (little-endian)::

    b"SANV"  u8 version  u32 header length  header (UTF-8 JSON: NeRV config, frames, fps, bits)
    weight stream (saicm.utils.weight_coding: per-channel quantised, rANS-coded)
    u32 CRC-32 of everything before it

Decoding builds the network from the header, loads the dequantised weights and runs it on every
frame index: the frames are those of the dequantised model the encoder holds, exactly.
The rate is the whole file: ``bpp = 8 * bytes / (frames * height * width)``.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import BitstreamError, SaicmError
from ..utils.io import atomic_write_bytes
from ..utils.weight_coding import decode_state, encode_state
from .nerv import NeRV, NeRVConfig, frame_times

__all__ = ["VideoStream", "decode_frames", "encode_nerv", "read_snv"]

MAGIC = b"SANV"
VERSION = 1


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
    ``path``, atomically) the ``.snv`` bytes."""
    header = json.dumps(
        {"config": net.config.to_dict(), "frames": frames, "fps": fps, "bits": bits}
    ).encode()
    state = net.state_dict()
    body = MAGIC + struct.pack("<BI", VERSION, len(header)) + header
    body += encode_state(state, bits=bits, min_numel=64)
    data = body + struct.pack("<I", zlib.crc32(body))
    if path is not None:
        atomic_write_bytes(path, data)
    return data


def read_snv(data: bytes | str | os.PathLike) -> VideoStream:
    """Parse ``.snv`` bytes (or a file) into a ready network; :class:`BitstreamError` if it is
    not a complete, intact ``.snv`` file."""
    if not isinstance(data, bytes | bytearray):
        path = Path(data)
        try:
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
    try:
        header = json.loads(body[9 : 9 + hlen].decode())
        config = NeRVConfig.from_dict(header["config"])
        frames, fps, bits = int(header["frames"]), float(header["fps"]), int(header["bits"])
        state = decode_state(body[9 + hlen :])
        net = NeRV(config)
        net.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError, SaicmError) as exc:
        raise BitstreamError(f".snv file is damaged ({str(exc).splitlines()[0][:200]})") from None
    if frames < 1:
        raise BitstreamError(".snv file holds no frames")
    return VideoStream(net.eval(), frames, fps, bits, len(data))


@torch.no_grad()
def decode_frames(net: NeRV, frames: int, batch: int = 8) -> np.ndarray:
    """All ``frames`` frames of ``net`` as a ``(T, H, W, 3)`` uint8 array."""
    out = []
    for start in range(0, frames, batch):
        idx = torch.arange(start, min(start + batch, frames))
        x = net(frame_times(idx, frames))
        out.append((x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)

"""The ``.sic`` container: one entropy-coded image and what is needed to decode it.

Layout (all integers big-endian)::

    offset  size  field
    0       4     magic b"SAIC"
    4       1     format version (2)
    5       1     n = length of the model name (1..255)
    6       n     model name, UTF-8
    6+n     8     first 8 bytes of the SHA-256 of the model's weights
    14+n    4     original height  (1..8192*8192 with width, see saicm.image.MAX_PIXELS)
    18+n    4     original width
    22+n    2     padding added at the top
    24+n    2     padding added at the left
    26+n    2     padding added at the bottom
    28+n    2     padding added at the right
    30+n    2     hyper-latent height
    32+n    2     hyper-latent width
    34+n    1     g = number of entropy-coded strings (1..16), latent by latent
    35+n    4*g   length of each string
    ...           the strings, one after the other
    end-4   4     CRC-32 of every byte before it

The parser checks every field before any of it is used, so a truncated, corrupted or foreign
file fails with :class:`~saicm.errors.BitstreamError` and never reaches the entropy decoder.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..errors import BitstreamError
from ..image import MAX_PIXELS

__all__ = ["FORMAT_VERSION", "MAGIC", "Bitstream", "pack", "unpack"]

MAGIC = b"SAIC"
FORMAT_VERSION = 2
HASH_BYTES = 8
MAX_STRINGS = 16
_DIMS = struct.Struct(">IIHHHHHHB")


@dataclass(frozen=True)
class Bitstream:
    """The fields of a ``.sic`` file.

    Arguments:
        model: name of the model that wrote it.
        weights_hash: first 8 bytes of the SHA-256 of that model's weights.
        height, width: size of the original image.
        pad: ``(top, left, bottom, right)`` padding added before coding.
        latent_shape: spatial size of the hyper-latent ``z``.
        strings: the entropy-coded strings, one per latent (``y`` then ``z``).
    """

    model: str
    weights_hash: bytes
    height: int
    width: int
    pad: tuple[int, int, int, int]
    latent_shape: tuple[int, int]
    strings: tuple[bytes, ...]

    @property
    def header_bytes(self) -> int:
        """Bytes of the file that are not entropy-coded payload."""
        return len(pack(self)) - sum(len(s) for s in self.strings)


def pack(bs: Bitstream) -> bytes:
    """Serialise ``bs``; raises ``ValueError`` for fields that the format cannot hold."""
    name = bs.model.encode("utf-8")
    if not 1 <= len(name) <= 255:
        raise ValueError("model name must be 1..255 bytes of UTF-8")
    if len(bs.weights_hash) != HASH_BYTES:
        raise ValueError(f"weights_hash must be {HASH_BYTES} bytes")
    if not 1 <= len(bs.strings) <= MAX_STRINGS:
        raise ValueError(f"1..{MAX_STRINGS} strings")
    parts = [
        MAGIC,
        bytes([FORMAT_VERSION, len(name)]),
        name,
        bs.weights_hash,
        _DIMS.pack(bs.height, bs.width, *bs.pad, *bs.latent_shape, len(bs.strings)),
        struct.pack(f">{len(bs.strings)}I", *(len(s) for s in bs.strings)),
        *bs.strings,
    ]
    body = b"".join(parts)
    return body + struct.pack(">I", zlib.crc32(body))


def unpack(data: bytes) -> Bitstream:
    """Parse and validate a ``.sic`` file's bytes."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BitstreamError("not a saicm .sic file (bad magic)")
    if len(data) < 6:
        raise BitstreamError("truncated .sic file")
    version, name_len = data[4], data[5]
    if version != FORMAT_VERSION:
        raise BitstreamError(
            f".sic format version {version} is not supported (this saicm reads {FORMAT_VERSION})"
        )
    fixed_end = 6 + name_len + HASH_BYTES + _DIMS.size
    if name_len == 0 or len(data) < fixed_end + 4:
        raise BitstreamError("truncated .sic file")
    body, (crc,) = data[:-4], struct.unpack(">I", data[-4:])
    if zlib.crc32(body) != crc:
        raise BitstreamError(".sic file is corrupted or truncated (checksum mismatch)")
    try:
        model = data[6 : 6 + name_len].decode("utf-8")
    except UnicodeDecodeError:
        raise BitstreamError(".sic file has an invalid model name") from None
    weights_hash = data[6 + name_len : 6 + name_len + HASH_BYTES]
    height, width, pad_t, pad_l, pad_b, pad_r, zh, zw, count = _DIMS.unpack_from(
        data, 6 + name_len + HASH_BYTES
    )
    if height == 0 or width == 0 or height * width > MAX_PIXELS:
        raise BitstreamError(f".sic file declares an invalid image size {width}x{height}")
    if zh == 0 or zw == 0:
        raise BitstreamError(".sic file declares an empty latent")
    if not 1 <= count <= MAX_STRINGS:
        raise BitstreamError(f".sic file declares {count} strings")
    lengths_end = fixed_end + 4 * count
    if len(body) < lengths_end:
        raise BitstreamError("truncated .sic file")
    lengths = struct.unpack_from(f">{count}I", data, fixed_end)
    if lengths_end + sum(lengths) != len(body):
        raise BitstreamError(".sic file length does not match its string table")
    strings, pos = [], lengths_end
    for n in lengths:
        strings.append(bytes(data[pos : pos + n]))
        pos += n
    pad = (pad_t, pad_l, pad_b, pad_r)
    return Bitstream(model, weights_hash, height, width, pad, (zh, zw), tuple(strings))

"""The ``.sic`` container: one entropy-coded image and what is needed to decode and check it.

Layout of format version 2 (all integers big-endian)::

    offset  size  field
    0       4     magic b"SAIC"
    4       1     format version (2)
    5       1     n = length of the model name (1..255)
    6       n     model name, UTF-8
    6+n     8     first 8 bytes of the SHA-256 of the model's weights
    14+n    4     original height  (1..8192*8192 with width, see saicm.image.MAX_PIXELS)
    18+n    4     original width
    22+n    2x4   padding added at the top, left, bottom and right
    30+n    2     hyper-latent height
    32+n    2     hyper-latent width
    34+n    1     g = number of entropy-coded strings (1..16)
    35+n    4*g   length of each string
    ...     4     CRC-32 of the entropy tables the encoder used (saicm.codec.entropy.Tables)
    ...     4     CRC-32 of every symbol's table index, in coding order (int32 little-endian)
    ...     4     CRC-32 of every decoded symbol, in coding order (int32 little-endian)
    ...     4     (version 3 only) quantisation gain of a variable-rate model, float32
    ...     v     s = number of signalled indexes (varint: LEB128, at most 5 bytes)
    ...     v     o = number of outliers (varint)
    ...     2v*s  signalled indexes: gap to the previous position minus 1 (varint; the first
                  counts from -1), table index (varint)
    ...     2v*o  outliers: position gap as above (varint), true symbol (zigzag varint)
    ...           the strings, one after the other
    end-4   4     CRC-32 of every byte before it

Version 3 is version 2 with the gain: the rate setting of a variable-rate model
(:mod:`saicm.codec.vbr`), which the decoder must use exactly. Variable-rate models write
version 3, every other model version 2, so files of fixed-rate models are unchanged.

Version 1 (still read, with a warning that it carries no check) has no checks, no signalled
indexes, no outliers, and only the bottom and right padding (``pad = (0, 0, bottom, right)``).
The three check CRCs let the decoder prove that it rebuilt exactly the encoder's entropy model
(see :mod:`saicm.codec.latents`); the signalled indexes are those whose scale lies so close to a
table boundary that another machine's arithmetic could round it to the neighbouring table.

The parser checks every field before any of it is used, so a truncated, corrupted or foreign
file fails with :class:`~saicm.errors.BitstreamError` and never reaches the entropy decoder.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field

from ..errors import BitstreamError
from ..image import MAX_PIXELS

__all__ = ["FORMAT_VERSION", "MAGIC", "VBR_FORMAT_VERSION", "Bitstream", "Checks", "pack", "unpack"]

MAGIC = b"SAIC"
#: The version fixed-rate models write.
FORMAT_VERSION = 2
#: The version variable-rate models write (version 2 plus the gain).
VBR_FORMAT_VERSION = 3
READ_VERSIONS = (1, 2, 3)
HASH_BYTES = 8
MAX_STRINGS = 16
_DIMS_V1 = struct.Struct(">IIHHHHB")
_DIMS = struct.Struct(">IIHHHHHHB")
_CHECKS = struct.Struct(">III")
_GAIN = struct.Struct(">f")
#: Positions and values of the side information are unsigned LEB128 varints (7 bits a byte);
#: none is over 2^35 - 1, so none takes more than 5 bytes.
_VARINT_MAX_BYTES = 5


@dataclass(frozen=True)
class Checks:
    """What the decoder must reproduce, and the side information that makes it reproducible.

    Arguments:
        tables: CRC-32 of the entropy tables (:meth:`saicm.codec.entropy.Tables.fingerprint`).
        indexes: CRC-32 of all table indexes, in coding order.
        symbols: CRC-32 of all symbols, in coding order.
        signalled: ``(position, table index)`` of the symbols whose index is given, not computed.
        outliers: ``(position, value)`` of the symbols outside their table's range.
    """

    tables: int
    indexes: int
    symbols: int
    signalled: tuple[tuple[int, int], ...] = ()
    outliers: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Bitstream:
    """The fields of a ``.sic`` file.

    Arguments:
        model: name of the model that wrote it.
        weights_hash: first 8 bytes of the SHA-256 of that model's weights.
        height, width: size of the original image.
        pad: ``(top, left, bottom, right)`` padding added before coding.
        latent_shape: spatial size of the hyper-latent ``z``.
        strings: the entropy-coded strings (version 2: ``z`` then ``y``; version 1: ``y``, ``z``).
        checks: the checks of versions 2 and 3; ``None`` for version 1.
        version: the format version.
        gain: the quantisation gain of a variable-rate model (version 3), else ``None``.
    """

    model: str
    weights_hash: bytes
    height: int
    width: int
    pad: tuple[int, int, int, int]
    latent_shape: tuple[int, int]
    strings: tuple[bytes, ...]
    checks: Checks | None = None
    version: int = field(default=FORMAT_VERSION)
    gain: float | None = None

    @property
    def header_bytes(self) -> int:
        """Bytes of the file that are not entropy-coded payload."""
        return len(pack(self)) - sum(len(s) for s in self.strings)


def _unzigzag(v: int) -> int:
    return -((v + 1) >> 1) if v & 1 else v >> 1


def pack(bs: Bitstream) -> bytes:
    """Serialise ``bs``; raises ``ValueError`` for fields that the format cannot hold."""
    name = bs.model.encode("utf-8")
    if not 1 <= len(name) <= 255:
        raise ValueError("model name must be 1..255 bytes of UTF-8")
    if len(bs.weights_hash) != HASH_BYTES:
        raise ValueError(f"weights_hash must be {HASH_BYTES} bytes")
    if not 1 <= len(bs.strings) <= MAX_STRINGS:
        raise ValueError(f"1..{MAX_STRINGS} strings")
    if len(bs.pad) != 4:
        raise ValueError("pad is (top, left, bottom, right)")
    n = len(bs.strings)
    if bs.version == 1:
        if bs.pad[:2] != (0, 0) or bs.checks is not None:
            raise ValueError("version 1 holds only bottom/right padding and no checks")
        dims = _DIMS_V1.pack(bs.height, bs.width, *bs.pad[2:], *bs.latent_shape, n)
        checks = b""
    elif bs.version in (FORMAT_VERSION, VBR_FORMAT_VERSION):
        c = bs.checks
        if c is None:
            raise ValueError(f"version {bs.version} needs checks")
        if (bs.gain is not None) != (bs.version == VBR_FORMAT_VERSION):
            raise ValueError("version 3 and only version 3 holds a gain")
        dims = _DIMS.pack(bs.height, bs.width, *bs.pad, *bs.latent_shape, n)
        checks = _CHECKS.pack(c.tables, c.indexes, c.symbols)
        if bs.gain is not None:
            checks += _GAIN.pack(bs.gain)
        checks += _varint(len(c.signalled)) + _varint(len(c.outliers))
        checks += _side(c.signalled, lambda i: i)
        checks += _side(c.outliers, lambda v: 2 * v if v >= 0 else -2 * v - 1)  # zigzag
    else:
        raise ValueError(f"cannot write format version {bs.version}")
    parts = [
        MAGIC,
        bytes([bs.version, len(name)]),
        name,
        bs.weights_hash,
        dims,
        struct.pack(f">{n}I", *(len(s) for s in bs.strings)),
        checks,
        *bs.strings,
    ]
    body = b"".join(parts)
    return body + struct.pack(">I", zlib.crc32(body))


def _varint(v: int) -> bytes:
    if not 0 <= v < 1 << (7 * _VARINT_MAX_BYTES):
        raise ValueError("side information out of range")
    out = bytearray()
    while True:
        byte, v = v & 0x7F, v >> 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _side(pairs: tuple[tuple[int, int], ...], code) -> bytes:
    """Pairs ``(position, value)`` as varints: the gap to the previous position (minus one, so
    positions strictly increase by construction) and the coded value."""
    out, prev = bytearray(), -1
    for pos, value in pairs:
        if pos <= prev:
            raise ValueError("side information positions must increase")
        out += _varint(pos - prev - 1) + _varint(code(value))
        prev = pos
    return bytes(out)


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    v = 0
    for i in range(_VARINT_MAX_BYTES):
        if pos >= end:
            raise BitstreamError("truncated .sic file (side information)")
        byte = data[pos]
        pos += 1
        v |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return v, pos
    raise BitstreamError(".sic file has an over-long number in its side information")


def _read_side(data: bytes, pos: int, end: int, count: int, decode) -> tuple[list, int]:
    pairs, prev = [], -1
    for _ in range(count):
        gap, pos = _read_varint(data, pos, end)
        value, pos = _read_varint(data, pos, end)
        prev += gap + 1
        pairs.append((prev, decode(value)))
    return pairs, pos


def unpack(data: bytes) -> Bitstream:
    """Parse and validate a ``.sic`` file's bytes.

    Raises :class:`~saicm.errors.BitstreamError` for a foreign, truncated, corrupted or
    inconsistent file (every length, count and position checked against the file's size).
    """
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BitstreamError("not a saicm .sic file (bad magic)")
    if len(data) < 6:
        raise BitstreamError("truncated .sic file")
    version, name_len = data[4], data[5]
    if version not in READ_VERSIONS:
        raise BitstreamError(
            f".sic format version {version} is not supported (this saicm reads "
            f"{', '.join(map(str, READ_VERSIONS))})"
        )
    dims_struct = _DIMS if version >= 2 else _DIMS_V1
    fixed_end = 6 + name_len + HASH_BYTES + dims_struct.size
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
    fields = dims_struct.unpack_from(data, 6 + name_len + HASH_BYTES)
    height, width, count = fields[0], fields[1], fields[-1]
    zh, zw = fields[-3], fields[-2]
    pad = tuple(fields[2:6]) if version >= 2 else (0, 0, *fields[2:4])
    if height == 0 or width == 0 or height * width > MAX_PIXELS:
        raise BitstreamError(f".sic file declares an invalid image size {width}x{height}")
    if zh == 0 or zw == 0:
        raise BitstreamError(".sic file declares an empty latent")
    if not 1 <= count <= MAX_STRINGS:
        raise BitstreamError(f".sic file declares {count} strings")
    pos = fixed_end + 4 * count
    if len(body) < pos:
        raise BitstreamError("truncated .sic file")
    lengths = struct.unpack_from(f">{count}I", data, fixed_end)
    checks, gain = None, None
    if version >= 2:
        if len(body) < pos + _CHECKS.size:
            raise BitstreamError("truncated .sic file")
        tables, indexes, symbols = _CHECKS.unpack_from(data, pos)
        pos += _CHECKS.size
        if version == VBR_FORMAT_VERSION:
            if len(body) < pos + _GAIN.size:
                raise BitstreamError("truncated .sic file")
            (gain,) = _GAIN.unpack_from(data, pos)
            pos += _GAIN.size
            if not (math.isfinite(gain) and gain > 0):
                raise BitstreamError(f".sic file declares an invalid quantisation gain {gain!r}")
        end = len(body) - sum(lengths)  # the side information ends where the strings begin
        n_sig, pos = _read_varint(data, pos, end)
        n_out, pos = _read_varint(data, pos, end)
        if 2 * (n_sig + n_out) > end - pos:  # every entry takes at least two bytes
            raise BitstreamError(".sic file declares more side information than it holds")
        signalled, pos = _read_side(data, pos, end, n_sig, lambda v: v)
        outliers, pos = _read_side(data, pos, end, n_out, _unzigzag)
        if any(i >= 1 << 16 for _, i in signalled):
            raise BitstreamError(".sic file signals an entropy-model index out of range")
        if any(not -(1 << 31) <= v < 1 << 31 for _, v in outliers):
            raise BitstreamError(".sic file has an outlier outside int32")
        checks = Checks(tables, indexes, symbols, tuple(signalled), tuple(outliers))
    if pos + sum(lengths) != len(body):
        raise BitstreamError(".sic file length does not match its string table")
    strings = []
    for n in lengths:
        strings.append(bytes(data[pos : pos + n]))
        pos += n
    return Bitstream(
        model, weights_hash, height, width, pad, (zh, zw), tuple(strings), checks, version, gain
    )

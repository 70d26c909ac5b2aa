"""Quantise network weights per channel and entropy-code them with rANS.

One coder for every place the project stores weights compactly: shipped image-codec models and
NeRV video bitstreams (NeRV, Chen et al., NeurIPS 2021, section 3.3: pruning, 8-bit quantisation,
entropy coding of the weights). A tensor of at least ``min_numel`` floating-point values becomes
``round(w / s)`` with one symmetric scale ``s`` per output channel (dimension 0), and its integers
are coded with compressai's rANS coder under the tensor's own histogram; pruned (zero) weights
thus cost a fraction of a bit. Smaller tensors (biases, norms) and integer buffers are stored raw.

Layout (little-endian)::

    b"SAIW" u8 version u32 count, then per tensor:
      u16 name length, name (UTF-8), u8 kind (0 raw, 1 coded), u8 dtype, u8 ndim, u32 dims...
      raw:   the tensor's bytes
      coded: u8 bits, f32 scale x dim0, i32 qmin, u32 cdf length, i32 cdf..., u32 n, rANS bytes
    u32 CRC-32 of everything before it

Version 2 (written now) codes with an escape-free table (``cdf[length-2] == 2^16``: every
symbol lies in ``qmin .. qmin+length-3`` by construction), so the native rANS decoder's reads
are bounded and it runs on the padded stream (:class:`saicm.codec.entropy.StreamDecoder`).
Every table is checked first (starts at 0, ends at ``2^16``, non-decreasing, sizes), and a coded
tensor holds at most ``MAX_CODED_NUMEL`` values. Version-1 streams (escape-bearing tables) are
decoded by the native decoder in a forked child process (``isolated_call``), so a crafted one
can only fail, not crash or hang the caller.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

import numpy as np
import torch

from ..errors import SaicmError
from .entropy import (
    LEGACY_DAMAGED,
    MAX_TABLE,
    StreamDecoder,
    Tables,
    check_tables,
    isolated_call,
    legacy_paddings,
)

__all__ = ["decode_state", "dequantize", "encode_state", "quantize"]

MAGIC = b"SAIW"
VERSION = 2
READ_VERSIONS = (1, 2)
PRECISION = 16  # bits of the rANS frequency tables
#: Most values in one coded tensor (the largest LIC-TCM tensor has 0.6 M); bounds the memory a
#: stream can make the decoder allocate (about 16 bytes per value).
MAX_CODED_NUMEL = 1 << 24

_DTYPES = [
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float64,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
]


def quantize(w: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel quantisation: ``(q, scale)`` with ``w ~ q * scale``.

    ``q`` holds integers in ``[-(2^(bits-1) - 1), 2^(bits-1) - 1]``; ``scale`` one float32 per
    slice of dimension 0 (a channel with all weights zero gets scale 1 and codes as zeros).
    """
    if not 2 <= bits <= 16:
        raise SaicmError(f"quantisation bits must be 2..16, not {bits}")
    w = w.detach().float().cpu()
    flat = w.reshape(w.shape[0], -1) if w.dim() > 0 else w.reshape(1, 1)
    top = flat.abs().amax(dim=1)
    levels = 2 ** (bits - 1) - 1
    scale = torch.where(top > 0, top / levels, torch.ones_like(top))
    q = torch.round(flat / scale[:, None]).clamp_(-levels, levels).to(torch.int32)
    return q.reshape(w.shape), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``q * scale`` per output channel, in float32 (the same on every machine)."""
    flat = q.reshape(q.shape[0], -1).float() if q.dim() > 0 else q.reshape(1, 1).float()
    return (flat * scale[:, None]).reshape(q.shape)


def _cdf(symbols: np.ndarray, qmin: int, qmax: int) -> list[int]:
    from .. import _compressai  # noqa: F401  (before CompressAI)

    # isort: split
    from compressai._CXX import pmf_to_quantized_cdf

    counts = np.bincount(symbols - qmin, minlength=qmax - qmin + 1).astype(np.float64)
    pmf = counts / counts.sum()
    # The last slot is the coder's escape symbol: never used, so it gets zero width (its one
    # unit goes to the last real symbol), which bounds the decoder's reads.
    cdf = list(pmf_to_quantized_cdf([*pmf.tolist(), 0.0], PRECISION))
    cdf[-2] = 1 << PRECISION
    return cdf


def encode_state(
    state: Mapping[str, torch.Tensor],
    bits: int = 8,
    min_numel: int = 256,
    raw: frozenset[str] = frozenset(),
) -> bytes:
    """Code a state dict: floating tensors of >= ``min_numel`` values quantised to ``bits`` and
    rANS-coded, the rest (and the names in ``raw``) stored as they are."""
    out = bytearray(MAGIC + struct.pack("<BI", VERSION, len(state)))
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        if t.dtype not in _DTYPES:
            raise SaicmError(f"{name}: cannot store dtype {t.dtype}")
        key = name.encode()
        coded = t.is_floating_point() and t.numel() >= min_numel and t.dim() > 0
        coded = coded and name not in raw
        out += struct.pack("<H", len(key)) + key
        out += struct.pack(f"<BBB{t.dim()}I", int(coded), _DTYPES.index(t.dtype), t.dim(), *t.shape)
        if not coded:
            data = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
            out += data.numpy().tobytes()
            continue
        out += _coded_entry(*quantize(t, bits), bits)
    out += struct.pack("<I", zlib.crc32(out))
    return bytes(out)


def _coded_entry(q: torch.Tensor, scale: torch.Tensor, bits: int) -> bytes:
    """The coded part of one tensor's entry: bits, scales, table and rANS stream (version 2)."""
    from .. import _compressai  # noqa: F401  (before CompressAI)

    # isort: split
    from compressai.ans import RansEncoder

    symbols = q.flatten().numpy()
    # at least two symbols: a lone one would get width 2^16, which the encoder's uint16
    # overflows (division by zero)
    qmin, qmax = int(symbols.min()), max(int(symbols.max()), int(symbols.min()) + 1)
    cdf = _cdf(symbols, qmin, qmax)
    stream = RansEncoder().encode_with_indexes(
        symbols.tolist(), [0] * symbols.size, [cdf], [len(cdf)], [qmin]
    )
    out = struct.pack("<B", bits) + scale.numpy().astype("<f4").tobytes()
    out += struct.pack(f"<iI{len(cdf)}i", qmin, len(cdf), *cdf)
    return out + struct.pack("<I", len(stream)) + stream


def upgrade_state(data: bytes) -> bytes:
    """A weight stream re-coded as version 2 with the same integers and scales, so that it
    decodes to bit-identical tensors without the legacy (forked, POSIX-only) decoder. A
    version-2 stream is returned as it is.

    Raises:
        SaicmError: ``data`` is not an intact weight stream, or the re-coded stream does not
            decode to exactly the same tensors.
    """
    import math

    old = decode_state(data)  # checks everything; version-1 streams decoded in isolation
    if data[4] == VERSION:
        return data
    r = _Reader(data[:-4])
    r.take(4)
    _, count = r.unpack("BI")
    out = bytearray(MAGIC + struct.pack("<BI", VERSION, count))
    for _ in range(count):
        (n,) = r.unpack("H")
        key = r.take(n)
        coded, dtype_code, ndim = r.unpack("BBB")
        shape = r.unpack(f"{ndim}I")
        out += struct.pack("<H", n) + key
        out += struct.pack(f"<BBB{ndim}I", coded, dtype_code, ndim, *shape)
        if not coded:
            dtype = _DTYPES[dtype_code]
            storage = torch.int16 if dtype == torch.bfloat16 else dtype
            out += r.take(math.prod(shape) * torch.empty((), dtype=storage).element_size())
            continue
        (bits,) = r.unpack("B")
        scale = torch.from_numpy(np.frombuffer(r.take(4 * shape[0]), "<f4").copy())
        _, length = r.unpack("iI")
        r.take(4 * length)
        (size,) = r.unpack("I")
        r.take(size)
        t = old[key.decode("utf-8", "replace")].float()
        flat = t.reshape(shape[0], -1)
        q = torch.round(flat / scale[:, None]).to(torch.int32).reshape(shape)  # exact: |q| small
        out += _coded_entry(q, scale, bits)
    out += struct.pack("<I", zlib.crc32(out))
    new = decode_state(bytes(out))
    if new.keys() != old.keys() or not all(torch.equal(new[k], old[k]) for k in old):
        raise SaicmError("re-coded weights do not decode to the same tensors")
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise SaicmError("coded weights are truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def decode_state(data: bytes) -> dict[str, torch.Tensor]:
    """The tensors of :func:`encode_state` (coded ones dequantised to their original dtype).

    Raises :class:`SaicmError` on anything that is not a complete, intact weight stream.
    """
    import math

    if len(data) < len(MAGIC) + 9 or data[:4] != MAGIC:
        raise SaicmError("not a saicm weight stream")
    body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
    if zlib.crc32(body) != crc:
        raise SaicmError("coded weights are corrupted (checksum mismatch)")
    r = _Reader(body)
    r.take(4)
    version, count = r.unpack("BI")
    if version not in READ_VERSIONS:
        raise SaicmError(f"weight stream version {version} not supported")
    state: dict[str, torch.Tensor] = {}
    legacy: list[tuple[str, bytes, Tables, tuple[int, ...], torch.Tensor, torch.dtype]] = []
    for _ in range(count):
        (n,) = r.unpack("H")
        name = r.take(n).decode("utf-8", "replace")
        coded, dtype_code, ndim = r.unpack("BBB")
        if dtype_code >= len(_DTYPES):
            raise SaicmError(f"{name}: unknown dtype code {dtype_code}")
        dtype = _DTYPES[dtype_code]
        shape = r.unpack(f"{ndim}I")
        numel = math.prod(shape)
        if not coded:
            storage = torch.int16 if dtype == torch.bfloat16 else dtype
            size = numel * torch.empty((), dtype=storage).element_size()
            arr = np.frombuffer(r.take(size), dtype=torch.empty((), dtype=storage).numpy().dtype)
            t = torch.from_numpy(arr.copy()).reshape(shape)
            state[name] = t.view(torch.bfloat16) if dtype == torch.bfloat16 else t
            continue
        if ndim == 0 or 0 in shape:
            raise SaicmError(f"{name}: a coded tensor needs a shape with values")
        if numel > MAX_CODED_NUMEL:
            raise SaicmError(f"{name}: {numel} coded values, above the limit {MAX_CODED_NUMEL}")
        if not dtype.is_floating_point:
            raise SaicmError(f"{name}: a coded tensor must be floating point")
        r.take(1)  # the bit depth: informative, the scales carry everything needed
        scale = torch.from_numpy(np.frombuffer(r.take(4 * shape[0]), "<f4").copy())
        qmin, length = r.unpack("iI")
        if length > MAX_TABLE:
            raise SaicmError(f"{name}: entropy table of {length} entries")
        cdf = list(r.unpack(f"{length}i"))
        (size,) = r.unpack("I")
        stream = r.take(size)
        tables = _tables(name, cdf, qmin, escape=version == 1)
        if version == 1:
            legacy.append((name, stream, tables, shape, scale, dtype))
            continue
        symbols = StreamDecoder(stream, numel, tables, SaicmError).decode(np.zeros(numel, np.int64))
        q = torch.from_numpy(symbols).reshape(shape)
        state[name] = dequantize(q, scale).to(dtype)
    if r.pos != len(body):
        raise SaicmError("coded weights have trailing bytes")
    if legacy:
        decoded = _decode_isolated(legacy)
        for (name, _, _, shape, scale, dtype), q in zip(legacy, decoded, strict=True):
            state[name] = dequantize(torch.from_numpy(q).reshape(shape), scale).to(dtype)
    return state


def _tables(name: str, cdf: list[int], qmin: int, escape: bool) -> Tables:
    """The one table of a coded tensor, checked (:func:`saicm.codec.entropy.check_tables`)."""
    tables = Tables([cdf], [len(cdf)], [qmin], escape)
    try:
        check_tables(tables.cdfs, tables.sizes, tables.offsets, escape=escape, error=SaicmError)
    except SaicmError as exc:
        raise SaicmError(f"{name}: {exc}") from None
    return tables


def _decode_isolated(legacy: list) -> list[np.ndarray]:
    """Version-1 (escape-bearing) tensors, decoded natively in one forked child process."""
    import math

    def work() -> bytes:
        from .. import _compressai  # noqa: F401  (before CompressAI)

        # isort: split
        from compressai.ans import RansDecoder

        out = [b"\x00"]
        for _, stream, t, shape, _, _ in legacy:
            n = math.prod(shape)
            a, b = (
                RansDecoder().decode_with_indexes(padded, [0] * n, t.cdfs, t.sizes, t.offsets)
                for padded in legacy_paddings(stream)
            )
            if a != b:  # read past the stream's end: damaged
                return b"\x01"
            out.append(np.asarray(a, dtype="<i4").tobytes())
        return b"".join(out)

    result = isolated_call(work, SaicmError)
    if result[:1] != b"\x00":
        raise SaicmError(f"coded weights: {LEGACY_DAMAGED}")
    raw = np.frombuffer(result[1:], dtype="<i4")
    parts, pos = [], 0
    for _, _, _, shape, _, _ in legacy:
        n = math.prod(shape)
        parts.append(raw[pos : pos + n].astype(np.int32))
        pos += n
    if pos != raw.size:
        raise SaicmError("coded weights: the legacy decoder returned the wrong count")
    return parts

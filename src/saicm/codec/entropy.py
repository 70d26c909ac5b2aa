"""rANS coding of integer symbols under validated tables: the one place where saicm hands data to
a native (C++) entropy decoder, and the proof that the decoder stays inside its buffer.

saicm codes with CompressAI's 64-bit rANS (``compressai.ans``, F. Giesen's ``rans64.h``,
16-bit frequencies). CompressAI 1.2.8's ``RansDecoder`` (``rans_interface.cpp``) reads its
stream without any bound:

* ``Rans64DecInit`` reads two 32-bit words;
* each symbol's ``Rans64DecAdvance`` reads at most one word (``if (x < RANS64_L)``);
* a symbol equal to the table's last entry (the *escape*) enters "bypass mode", whose loop
  ``while (val == 15) val = Rans64DecGetBits(...)`` and the ``n_bypass`` reads after it are
  driven by the stream itself: a crafted stream reads as far as it likes (out of bounds);
* ``std::find_if`` runs past a table that does not end at ``2^16``, and an index outside the
  table list reads a random vector (both only ``assert``-ed, and asserts are compiled out).

So the version-2 coding here never lets the decoder take the escape: every table handed to it
gives the escape symbol zero width (``cdf[size-2] == cdf[size-1] == 2^16``; the decoder picks
the symbol ``s`` with ``cdf[s] <= cum < cdf[s+1]``, ``cum < 2^16``, which is then never the
escape), symbols outside a table's range are coded as their table's most probable symbol and
their true value is carried beside the stream (:class:`Outliers`), and every table, size, offset and
index is checked before the call (:func:`check_tables`). Reading is then at most
``8 + 4 * n_symbols`` bytes, and the stream is handed over padded with that many zero bytes:
no read can leave the buffer, whatever the stream holds.

Streams written with the escape (``.sic`` version 1, weight streams version 1) are decoded by
:class:`IsolatedDecoder`: the native decoder runs in a forked child process, so a crafted
stream can crash or hang only the child, which becomes a clean error.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import BitstreamError, SaicmError

__all__ = [
    "PRECISION",
    "IsolatedDecoder",
    "Outliers",
    "StreamDecoder",
    "Tables",
    "check_tables",
    "crc32_of",
    "decode_symbols",
    "encode_symbols",
    "isolated_call",
]

PRECISION = 16
TOTAL = 1 << PRECISION
#: Longest table accepted (entries): CompressAI's Gaussian tables for scales up to 256 have
#: ~3,200; weight tables at most 2^16 + 2 (16-bit quantisation).
MAX_TABLE = TOTAL + 2
#: Seconds an isolated (legacy) decode may take before it is called a hang.
ISOLATED_TIMEOUT_S = 120.0


def crc32_of(values: np.ndarray) -> int:
    """CRC-32 of an integer array as little-endian int32 (the form the file's checks use)."""
    return zlib.crc32(np.ascontiguousarray(values, dtype="<i4").tobytes())


@dataclass(frozen=True)
class Tables:
    """Checked CDF tables in the form CompressAI's coder takes.

    Arguments:
        cdfs: one quantised CDF per table (``int``, ``2^16`` total), ``len(cdfs[i]) >= sizes[i]``.
        sizes: entries of each table in use (the last real symbol is ``sizes[i] - 3``, then the
            escape at ``sizes[i] - 2``).
        offsets: the symbol value of each table's entry 0.
        escape: whether the escape symbol has non-zero width (legacy streams only).

    CompressAI's encoder keeps a symbol's start and width in ``uint16``: no symbol may have the
    full width ``2^16`` (a table with one real symbol gets a second, unused one).
    """

    cdfs: list[list[int]]
    sizes: list[int]
    offsets: list[int]
    escape: bool

    @classmethod
    def from_model(
        cls, cdf, sizes, offsets, *, escape: bool = False, error: type[SaicmError] = BitstreamError
    ) -> Tables:
        """Tables from an entropy model's buffers (``quantized_cdf``, ``cdf_length``, ``offset``),
        checked; with ``escape=False`` the escape's width goes to the last real symbol."""
        cdfs = [list(map(int, row)) for row in np.asarray(cdf).tolist()]
        sizes = [int(s) for s in np.asarray(sizes).reshape(-1).tolist()]
        offsets = [int(o) for o in np.asarray(offsets).reshape(-1).tolist()]
        check_tables(cdfs, sizes, offsets, escape=True, error=error)
        if not escape:
            cdfs = [row.copy() for row in cdfs]
            for i, (row, n) in enumerate(zip(cdfs, sizes, strict=True)):
                if n == 3:  # one real symbol: a width of 2^16 overflows the encoder's uint16
                    cdfs[i], sizes[i] = [0, TOTAL - 1, TOTAL, TOTAL], 4  # + an unused symbol
                else:
                    row[n - 2] = TOTAL
        return cls(cdfs, sizes, offsets, escape)

    def fingerprint(self) -> int:
        """CRC-32 over every table entry in use, size and offset (tables that code alike)."""
        crc = 0
        for row, n, off in zip(self.cdfs, self.sizes, self.offsets, strict=True):
            crc = zlib.crc32(struct.pack(f"<ii{n}i", n, off, *row[:n]), crc)
        return crc


def check_tables(
    cdfs: Sequence[Sequence[int]],
    sizes: Sequence[int],
    offsets: Sequence[int],
    *,
    escape: bool,
    error: type[SaicmError] = BitstreamError,
) -> None:
    """Raise ``error`` unless the tables are safe to hand to the native decoder.

    Each table: ``3 <= size <= len(cdf) <= MAX_TABLE``, ``cdf[0] == 0``, non-decreasing,
    ``cdf[size-1] == 2^16``; each real symbol (``0 .. size-3``) and, with ``escape``, the escape
    has width >= 1; without ``escape`` the escape has width 0; offsets keep every value in int32.
    """
    if not (len(cdfs) == len(sizes) == len(offsets)) or not 1 <= len(cdfs) <= 1 << 16:
        raise error("entropy tables: counts of tables, sizes and offsets differ or out of range")
    for i, (row, n, off) in enumerate(zip(cdfs, sizes, offsets, strict=True)):
        if not 3 <= n <= len(row) <= MAX_TABLE:
            raise error(f"entropy table {i}: size {n} for {len(row)} entries")
        c = np.asarray(row[:n], dtype=np.int64)
        widths = np.diff(c)
        if c[0] != 0 or c[-1] != TOTAL or (widths < 0).any() or (widths[:-1] == 0).any():
            raise error(f"entropy table {i} is not a CDF from 0 to 2^{PRECISION}")
        if (widths[-1] > 0) != escape:
            raise error(f"entropy table {i}: escape symbol has the wrong width")
        if not (off >= -(1 << 31) and off + n < 1 << 31):
            raise error(f"entropy table {i}: offset {off} out of range")


@dataclass(frozen=True)
class Outliers:
    """Symbols outside their table's range, carried beside the rANS stream.

    Arguments:
        positions: strictly increasing positions in the coded symbol sequence (int64).
        values: their true values (int32).
    """

    positions: np.ndarray
    values: np.ndarray

    @classmethod
    def none(cls) -> Outliers:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.positions)


def _ranges(indexes: np.ndarray, tables: Tables) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.asarray(tables.sizes, np.int64)
    offsets = np.asarray(tables.offsets, np.int64)
    lo = offsets[indexes]
    return lo, lo + sizes[indexes] - 3  # inclusive range of real (non-escape) symbols


def _check_indexes(indexes: np.ndarray, tables: Tables, error: type[SaicmError]) -> np.ndarray:
    idx = np.ascontiguousarray(indexes, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= len(tables.cdfs)):
        raise error("entropy-model index out of range")
    return idx


def encode_symbols(
    symbols: np.ndarray, indexes: np.ndarray, tables: Tables
) -> tuple[bytes, Outliers]:
    """rANS-code ``symbols`` (any integer array) under ``tables[indexes]`` without the escape.

    Returns the stream and the out-of-range symbols, which the caller stores and hands back to
    :func:`decode_symbols`. Raises ``ValueError`` for escape-bearing tables or bad indexes.
    """
    from .. import _compressai  # noqa: F401  (before CompressAI)

    # isort: split
    from compressai.ans import RansEncoder

    if tables.escape:
        raise ValueError("encode with escape-free tables")
    idx = _check_indexes(indexes, tables, SaicmError)
    sym = np.ascontiguousarray(symbols, dtype=np.int64).reshape(-1)
    if sym.shape != idx.shape:
        raise ValueError("one index per symbol")
    lo, hi = _ranges(idx, tables)
    out = np.flatnonzero((sym < lo) | (sym > hi))
    if out.size and (np.abs(sym[out]) >= 1 << 31).any():  # checked before the cast wraps it
        raise ValueError("symbol outside int32")
    outliers = Outliers(out.astype(np.int64), sym[out].astype(np.int32))
    # an outlier's place in the stream holds its table's most probable symbol (the cheapest:
    # the decoder puts the true value there from the side information)
    coded = np.where((sym < lo) | (sym > hi), _modes(tables)[idx], sym)
    stream = RansEncoder().encode_with_indexes(
        coded.tolist(), idx.tolist(), tables.cdfs, tables.sizes, tables.offsets
    )
    return bytes(stream), outliers


def _modes(tables: Tables) -> np.ndarray:
    """Each table's most probable real symbol (its value, offset included)."""
    modes = [
        off + int(np.argmax(np.diff(np.asarray(row[: n - 1]))))
        for row, n, off in zip(tables.cdfs, tables.sizes, tables.offsets, strict=True)
    ]
    return np.asarray(modes, dtype=np.int64)


class StreamDecoder:
    """Decodes one escape-free rANS stream in consecutive parts (slices), never reading outside
    it: the stream is padded with ``8 + 4 * total`` zero bytes, the most CompressAI's decoder can
    read for ``total`` symbols when no table has an escape (see the module docstring).

    Arguments:
        data: the stream.
        total: how many symbols will be decoded from it, all parts together.
        tables: escape-free, checked tables.
        error: the exception raised for bad input.
    """

    def __init__(
        self, data: bytes, total: int, tables: Tables, error: type[SaicmError] = BitstreamError
    ) -> None:
        from .. import _compressai  # noqa: F401  (before CompressAI)

        # isort: split
        from compressai.ans import RansDecoder

        if tables.escape:
            raise error("entropy tables with an escape symbol are decoded in isolation only")
        check_tables(tables.cdfs, tables.sizes, tables.offsets, escape=False, error=error)
        self.tables, self.error, self.left = tables, error, int(total)
        self._decoder = RansDecoder()
        self._decoder.set_stream(bytes(data) + bytes(8 + 4 * self.left))

    def decode(self, indexes: np.ndarray) -> np.ndarray:
        """The next ``len(indexes)`` symbols (int32), each under ``tables[indexes[i]]``."""
        idx = _check_indexes(indexes, self.tables, self.error)
        if idx.size > self.left:
            raise self.error("more symbols asked of an entropy stream than it was opened for")
        self.left -= idx.size
        t = self.tables
        values = self._decoder.decode_stream(idx.tolist(), t.cdfs, t.sizes, t.offsets)
        return np.asarray(values, dtype=np.int32)


def decode_symbols(
    data: bytes,
    indexes: np.ndarray,
    tables: Tables,
    outliers: Outliers | None = None,
    error: type[SaicmError] = BitstreamError,
) -> np.ndarray:
    """Decode a stream of :func:`encode_symbols` (one part) and restore its outliers."""
    values = StreamDecoder(data, np.size(indexes), tables, error).decode(indexes)
    return restore_outliers(values, 0, outliers, error)


def restore_outliers(
    values: np.ndarray, start: int, outliers: Outliers | None, error: type[SaicmError]
) -> np.ndarray:
    """Put the true values of the outliers at positions ``start .. start+len(values)`` back."""
    if outliers is None or not len(outliers):
        return values
    pos = outliers.positions
    sel = (pos >= start) & (pos < start + values.size)
    if sel.any():
        values = values.copy()
        values[pos[sel] - start] = outliers.values[sel]
    return values


def check_outliers(outliers: Outliers, total: int, error: type[SaicmError]) -> None:
    """Positions strictly increasing and inside ``0 .. total-1``."""
    pos = outliers.positions
    if pos.size and (pos[0] < 0 or pos[-1] >= total or (np.diff(pos) <= 0).any()):
        raise error("outlier positions are out of range or out of order")


# -- streams written with the escape (legacy): the native decoder in a child process ----------
#: What a legacy stream that reads past its own end is told.
LEGACY_DAMAGED = (
    "the stream is damaged: its decoder reads past its end (a version-1 file carries no check)"
)

class IsolatedDecoder:
    """Like :class:`StreamDecoder` for escape-bearing (legacy) streams, whose reads cannot be
    bounded: CompressAI's decoder runs in a forked child process; a crash or a hang there (over
    ``ISOLATED_TIMEOUT_S``) becomes ``error``. Use as a context manager (the child is ended on
    exit). Platforms without ``fork`` refuse such streams."""

    def __init__(self, data: bytes, tables: Tables, error: type[SaicmError] = BitstreamError):
        check_tables(tables.cdfs, tables.sizes, tables.offsets, escape=tables.escape, error=error)
        if not hasattr(os, "fork"):
            raise error("this platform cannot decode legacy (version 1) streams safely")
        self.tables, self.error = tables, error
        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: decode requests until the pipe closes
            code = 0
            try:
                _quiet_child()
                os.close(req_w)
                os.close(res_r)
                _serve(data, tables, req_r, res_w)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(req_r)
        os.close(res_w)
        self.pid, self._req, self._res = pid, req_w, res_r

    def __enter__(self) -> IsolatedDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.pid:
            for fd in (self._req, self._res):
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = 0

    def decode(self, indexes: np.ndarray) -> np.ndarray:
        idx = _check_indexes(indexes, self.tables, self.error).astype("<i4")
        try:
            _write_all(self._req, struct.pack("<I", idx.size) + idx.tobytes())
            status = _read_exact(self._res, 1, ISOLATED_TIMEOUT_S)
            if status != b"\x00":
                self.close()
                raise self.error(LEGACY_DAMAGED)
            raw = _read_exact(self._res, 4 * idx.size, ISOLATED_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            why = "took too long" if isinstance(exc, TimeoutError) else "crashed"
            self.close()
            raise self.error(f"entropy decoding failed (the legacy decoder {why})") from None
        return np.frombuffer(raw, dtype="<i4").astype(np.int32)


def _quiet_child() -> None:
    """A crash in the child is reported by the parent as one line: no dump on stderr."""
    import faulthandler

    faulthandler.disable()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


#: Bytes appended to a legacy stream, twice: once zeros, once 0xFF (:func:`legacy_paddings`).
LEGACY_PAD = 1 << 16


def legacy_paddings(data: bytes) -> tuple[bytes, bytes]:
    """``data`` with :data:`LEGACY_PAD` zero bytes and with as many 0xFF bytes. An intact rANS
    stream is read exactly to its end, so both decode alike; a damaged or crafted one that reads
    past its end decodes differently (it would otherwise decode whatever lies in memory after
    it, a different picture on every run): decoding both and comparing tells them apart."""
    return bytes(data) + bytes(LEGACY_PAD), bytes(data) + b"\xff" * LEGACY_PAD


def _serve(data: bytes, tables: Tables, req: int, res: int) -> None:
    from .. import _compressai  # noqa: F401  (before CompressAI)

    # isort: split
    from compressai.ans import RansDecoder

    decoders = []
    for padded in legacy_paddings(data):
        decoders.append(RansDecoder())
        decoders[-1].set_stream(padded)
    while True:
        head = _read_exact(req, 4, None, eof_ok=True)
        if not head:
            return
        (n,) = struct.unpack("<I", head)
        idx = np.frombuffer(_read_exact(req, 4 * n, None), dtype="<i4").tolist()
        a, b = (d.decode_stream(idx, tables.cdfs, tables.sizes, tables.offsets) for d in decoders)
        if a != b:  # read past the stream's end: damaged
            _write_all(res, b"\x01")
            return
        _write_all(res, b"\x00" + np.asarray(a, dtype="<i4").tobytes())


def _write_all(fd: int, buf: bytes) -> None:
    view = memoryview(buf)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, n: int, timeout: float | None, eof_ok: bool = False) -> bytes:
    chunks, got = [], 0
    while got < n:
        if timeout is not None:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            if eof_ok and got == 0:
                return b""
            raise OSError("pipe closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def isolated_call(fn, error: type[SaicmError] = BitstreamError) -> bytes:
    """Run ``fn() -> bytes`` in a forked child process and return its bytes; a crash, a
    non-zero exit or more than ``ISOLATED_TIMEOUT_S`` seconds becomes ``error``. For native
    decoding of data whose reads cannot be bounded (legacy escape-bearing streams)."""
    if not hasattr(os, "fork"):
        raise error("this platform cannot decode legacy (version 1) streams safely")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _quiet_child()
            os.close(r)
            out = fn()
            _write_all(w, struct.pack("<Q", len(out)) + out)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    try:
        try:
            head = _read_exact(r, 8, ISOLATED_TIMEOUT_S)
            out = _read_exact(r, struct.unpack("<Q", head)[0], ISOLATED_TIMEOUT_S)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            raise error("entropy decoding failed (the legacy decoder took too long)") from None
        except OSError:
            raise error("entropy decoding failed (the legacy decoder crashed)") from None
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if status != 0:
        raise error("entropy decoding failed (the legacy decoder crashed)")
    return out

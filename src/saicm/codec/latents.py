"""Coding the latents of a model into checked strings, so that a file decodes to the same
symbols on every machine or fails with one clear error.

Why (issue 17): the rANS decoder picks each symbol's CDF table from a scale that a network
computes from the hyper-latent (and, in LIC-TCM, from the slices decoded before). A decoder
whose floating point differs from the encoder's (another thread count, memory format, oneDNN
build or ISA, a GPU) computes the scale differently in the last bits; where the scale lies on a
table boundary the index differs, the coder desynchronises and the image is garbage.

What (the method, chosen by measurement; docs/BENCHMARKS.md):

1. The whole entropy-parameter path is computed in float64 on the CPU: the modules each
   architecture names (:mod:`saicm.codec.entropy_params`: for ``mbt2018-mean`` the
   hyper-synthesis ``h_s``; for LIC-TCM ``h_mean_s``, ``h_scale_s`` and, slice by slice,
   SWAtten, the ``cc_*_transforms`` and the LRP that feeds later slices). Two float64 decoders
   disagree by ~1e-14 relative (measured), where float32 ones disagree by ~3e-6.
2. The encoder finds the symbols whose float64 scale lies within ``MARGIN`` (relative) of a
   table boundary and signals their index in the file (:class:`~saicm.codec.bitstream.Checks`);
   about none per image, so it costs no rate. Every other index is then the same on any
   decoder whose float64 scale is within ``MARGIN`` of the encoder's.
3. The file carries CRC-32s of the tables, of all indexes and of all symbols. The decoder checks
   the tables before decoding, the indexes before each latent (or slice) is entropy-decoded, and
   the symbols at the end; NaN or inf anywhere is an error.
4. Symbols outside their table's range are carried beside the stream (no rANS escape), so the
   native decoder's reads are bounded (:mod:`saicm.codec.entropy`).

The means and the synthesis transform ``g_s`` stay float32 (they move pixels, they do not
desynchronise the coder): decoded pixels may differ from the encoder's reconstruction by at most
one level (8-bit) in a few pixels; ``tests/codec/test_latents.py`` tests that bound.
"""

from __future__ import annotations

from .. import _compressai  # noqa: F401  (before CompressAI: see saicm._compressai)

# isort: split

import copy
import warnings
import weakref
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from compressai.models import CompressionModel
from torch import Tensor, nn

from ..errors import BitstreamError, ModelError, SaicmWarning
from .bitstream import Checks
from .entropy import (
    IsolatedDecoder,
    Outliers,
    StreamDecoder,
    Tables,
    check_outliers,
    encode_symbols,
    restore_outliers,
)
from .entropy_params import EntropyParameters, VariableRate

__all__ = ["MARGIN", "Coded", "decode_latents", "encode_latents", "scale_indexes"]

#: Relative distance of a scale to a table boundary under which its index is signalled. Two
#: float64 decoders differ by <= 1.3e-14 relative on these scales (channels-last against
#: contiguous; threads and oneDNN change nothing; benchmarks/decode_integrity.py,
#: docs/BENCHMARKS.md), float32 ones by ~3e-6; 1e-9 leaves a factor of 10^4-10^5 of headroom
#: and signals no symbol in the photos measured.
MARGIN = 1e-9

_PARAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

ARITHMETIC = (
    "the decoder's arithmetic differs from the encoder's beyond what the file's signalled "
    "indexes cover, or the file was altered after it was written"
)


def _structure(net: CompressionModel) -> EntropyParameters:
    """``net`` as the entropy-parameter interface (:mod:`saicm.codec.entropy_params`).

    Raises:
        ModelError: the network does not implement it.
    """
    if not isinstance(net, EntropyParameters):
        raise ModelError(f"saicm cannot code latents of {type(net).__name__}")
    return net


def _sources(net: CompressionModel) -> list[nn.Module]:
    return [net._modules[k] for k in _structure(net).entropy_modules]


def _state_key(tensors) -> tuple:
    """Identity, storage and in-place version of each tensor: changes when weights or tables
    are replaced or modified (inference tensors keep no version: identity and storage only)."""
    return tuple((id(t), t.data_ptr(), -1 if t.is_inference() else t._version) for t in tensors)


def _param_net(net: CompressionModel) -> nn.Module:
    """A float64, channels-first copy of the modules that compute the entropy parameters
    (cached; rebuilt when the network's weights change)."""
    sources = _sources(net)
    key = _state_key(t for m in sources for t in m.parameters())
    cached = _PARAMS.get(net)
    if cached is not None and (cached[0] is None or cached[0] == key):
        return cached[1]
    p = copy.deepcopy(net.entropy_param_module())
    p = p.double().to(memory_format=torch.contiguous_format).eval()
    for t in p.parameters():
        t.requires_grad_(False)
    _PARAMS[net] = (key, p)
    return p


def coding_tables(net: CompressionModel, escape: bool = False) -> tuple[Tables, Tables]:
    """The checked ``(z, y)`` tables of a model (escape-free unless ``escape``), cached until
    the model's CDF tables change."""
    eb, gc = net.entropy_bottleneck, net.gaussian_conditional
    bufs = [e._quantized_cdf for e in (eb, gc)] + [e._cdf_length for e in (eb, gc)]
    bufs += [e._offset for e in (eb, gc)]
    key = (_state_key(bufs), escape)
    cache = _TABLES.setdefault(net, {})
    if key not in cache:
        try:
            cache.clear()
            cache[key] = tuple(
                Tables.from_model(e.quantized_cdf, e.cdf_length, e.offset, escape=escape)
                for e in (eb, gc)
            )
        except BitstreamError as exc:
            raise ModelError(f"the model's CDF tables are unusable ({exc})") from None
    return cache[key]


def tables_crc(net: CompressionModel) -> int:
    z, y = coding_tables(net)
    return zlib.crc32(z.fingerprint().to_bytes(4, "little") + y.fingerprint().to_bytes(4, "little"))


def scale_indexes(scales: Tensor, table: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """CompressAI's table index of each scale and whether it lies within ``MARGIN`` of a
    boundary.

    ``index = #{t in table[:-1] : t < scale}`` (``GaussianConditional.build_indexes``, whose lower
    bound clamps scales to ``table[0]``). Returns ``(indexes int64, near bool)``, flattened.
    """
    s = scales.detach().double().reshape(-1)
    bounds = table.detach().double()[:-1]
    idx = torch.searchsorted(bounds, s, right=False)
    below = bounds[(idx - 1).clamp(min=0)]
    above = bounds[idx.clamp(max=len(bounds) - 1)]
    near = ((idx > 0) & (s - below <= MARGIN * below)) | (
        (idx < len(bounds)) & (above - s <= MARGIN * above)
    )
    return idx.numpy().astype(np.int64), near.numpy()


def _finite(*tensors: Tensor) -> None:
    for t in tensors:
        if not torch.isfinite(t).all():
            raise BitstreamError(
                "decoding produced NaN or inf: the weights or entropy tables do not belong to "
                "this file, or the model is broken"
            )


@dataclass
class Coded:
    """What :func:`encode_latents` produces: the strings (``z`` then ``y``), the checks and
    the shape of ``z``."""

    strings: tuple[bytes, bytes]
    checks: Checks
    latent_shape: tuple[int, int]


class _Symbols:
    """Accumulates the coding order's indexes and symbols (and their CRCs)."""

    def __init__(self) -> None:
        self.idx: list[np.ndarray] = []
        self.sym: list[np.ndarray] = []
        self.near: list[np.ndarray] = []
        self.count = 0

    def add(self, idx: np.ndarray, sym: np.ndarray, near: np.ndarray | None = None) -> None:
        self.idx.append(idx)
        self.sym.append(sym)
        self.near.append(np.zeros(idx.size, bool) if near is None else near)
        self.count += idx.size


def _crc(parts: list[np.ndarray]) -> int:
    crc = 0
    for p in parts:
        crc = zlib.crc32(np.ascontiguousarray(p, dtype="<i4").tobytes(), crc)
    return crc


def _z_indexes(net: CompressionModel, shape: tuple[int, ...]) -> np.ndarray:
    c, h, w = shape
    return np.repeat(np.arange(c, dtype=np.int64), h * w)


def _medians(net: CompressionModel) -> Tensor:
    eb = net.entropy_bottleneck
    return eb._get_medians().detach().reshape(1, -1, 1, 1).float()


@torch.inference_mode()
def encode_latents(net: CompressionModel, x: Tensor, gain: float | None = None) -> Coded:
    """Analyse ``x`` ``(1, 3, H, W)`` (sides a multiple of the model's downsampling) and code
    its latents with the checks of format version 2.

    ``gain``: the quantisation gain of a variable-rate model (:mod:`saicm.codec.vbr`; the
    symbols are ``round((y - mu) * gain)`` with scales ``sigma * gain``); ``None`` for every
    other model.
    """
    if x.shape[0] != 1:
        raise ValueError("one image at a time")
    g = _gain(net, gain)
    ztab, ytab = coding_tables(net)
    p = _param_net(net)
    y = net.g_a(x)
    z = net.hyper_analysis(y)
    med = _medians(net)
    zq = torch.round(z.float() - med)
    z_hat = zq + med
    acc = _Symbols()
    z_sym = _symbols(zq[0])
    acc.add(_z_indexes(net, tuple(zq.shape[1:])), z_sym)
    table = net.gaussian_conditional.scale_table
    parts = iter(net.y_slices(y.double().contiguous()))

    def code(scale: Tensor, mu: Tensor) -> Tensor:
        """Round the next part of ``y``; its reconstruction (without a variable-rate model's
        offsets: single-part models use none of it)."""
        _check_encoder(scale, mu)
        q = torch.round((next(parts) - mu) * g)
        idx, near = scale_indexes(scale * g, table)
        acc.add(idx, _symbols(q), near)
        return q / g + mu  # q + mu, exactly, for a fixed-rate model (g = 1)

    net.code_y(p, z_hat.double(), y.shape[2:], code)
    n_z = acc.idx[0].size
    z_stream, z_out = encode_symbols(acc.sym[0], acc.idx[0], ztab)
    y_idx, y_sym = np.concatenate(acc.idx[1:]), np.concatenate(acc.sym[1:])
    y_stream, y_out = encode_symbols(y_sym, y_idx, ytab)
    near = np.flatnonzero(np.concatenate(acc.near))
    all_idx = np.concatenate(acc.idx)
    signalled = tuple((int(i), int(all_idx[i])) for i in near)
    outliers = tuple(
        (int(pos) + off, int(v))
        for out, off in ((z_out, 0), (y_out, n_z))
        for pos, v in zip(out.positions, out.values, strict=True)
    )
    checks = Checks(tables_crc(net), _crc(acc.idx), _crc(acc.sym), signalled, outliers)
    return Coded((z_stream, y_stream), checks, (int(z.shape[2]), int(z.shape[3])))


def _gain(net: CompressionModel, gain: float | None) -> float:
    """The gain as float64 (1.0 for a fixed-rate model); checked against the model.

    Raises:
        ModelError: a gain for a fixed-rate model, none for a variable-rate one, or one outside
            the model's range.
    """
    if not isinstance(net, VariableRate):
        if gain is not None:
            raise ModelError("a fixed-rate model takes no rate setting (gain)")
        return 1.0
    if gain is None:
        raise ModelError("a variable-rate model needs a rate setting (gain)")
    net.check_gain(gain)
    return float(np.float32(gain))


def _symbols(q: Tensor) -> np.ndarray:
    """The rounded latents ``q`` (any shape) as a flat int64 array.

    Raises:
        ModelError: a symbol is not finite or outside int32 (what a file can hold): the model
            (or its gain) scales its latents far beyond any trained network's.
    """
    if q.numel() and not (torch.isfinite(q).all() and q.abs().max() < 2**31):
        raise ModelError(
            "the model's latents are too large to code (a symbol is not finite or outside "
            "int32): its weights or gains are broken"
        )
    return q.reshape(-1).to(torch.int64).numpy()


def _check_encoder(*tensors: Tensor) -> None:
    for t in tensors:
        if not torch.isfinite(t).all():
            raise ModelError("the model computes NaN or inf entropy parameters for this image")


@torch.inference_mode()
def decode_latents(
    net: CompressionModel,
    strings: tuple[bytes, ...],
    latent_shape: tuple[int, int],
    checks,
    gain: float | None = None,
) -> Tensor:
    """Decode the strings of a ``.sic`` file into ``y_hat`` ``(1, M, h, w)`` float32, checking
    everything the encoder recorded; ``checks=None`` decodes a version-1 file (``y`` then ``z``
    strings, CompressAI's float32 arithmetic, no check) with a :class:`SaicmWarning`.
    ``gain``: the file's quantisation gain (format 3, variable-rate models), else ``None``.

    Raises :class:`BitstreamError` with the likely cause when a check fails, or when the file's
    gain does not fit the model (a fixed-rate file for a variable-rate model or the reverse, a
    gain outside the model's range).
    """
    try:
        g = _gain(net, gain)
    except ModelError as exc:
        raise BitstreamError(f"the file's rate setting does not fit the model: {exc}") from None
    if checks is None:
        return _decode_v1(net, strings, latent_shape)
    if len(strings) != 2:
        raise BitstreamError(f".sic file holds {len(strings)} strings, this model codes 2")
    if checks.tables != tables_crc(net):
        raise BitstreamError(
            "the file was coded with other entropy tables than this model's (tables differ: "
            "the CDF tables were rebuilt with another scale table or CompressAI version)"
        )
    ztab, ytab = coding_tables(net)
    p = _param_net(net)
    zh, zw = latent_shape
    c_z = int(net.entropy_bottleneck.quantized_cdf.shape[0])
    n_z = c_z * zh * zw
    m = int(net.M)
    n_y = m * 16 * zh * zw
    total = n_z + n_y
    outliers = Outliers(
        np.array([o[0] for o in checks.outliers], np.int64),
        np.array([o[1] for o in checks.outliers], np.int32),
    )
    check_outliers(outliers, total, BitstreamError)
    sig_pos = np.array([s[0] for s in checks.signalled], np.int64)
    sig_idx = np.array([s[1] for s in checks.signalled], np.int64)
    if sig_pos.size and (sig_pos[-1] >= total or sig_pos[0] < n_z):
        raise BitstreamError(".sic file signals an index outside its latents")
    if sig_idx.size and sig_idx.max() >= len(ytab.cdfs):
        raise BitstreamError(".sic file signals an entropy-model index out of range")
    acc = _Symbols()
    z_idx = _z_indexes(net, (c_z, zh, zw))
    z_sym = StreamDecoder(strings[0], n_z, ztab).decode(z_idx).astype(np.int64)
    z_sym = restore_outliers(z_sym, 0, outliers, BitstreamError)
    acc.add(z_idx, z_sym)
    med = _medians(net)
    z_hat = torch.from_numpy(z_sym.astype(np.float32)).reshape(1, c_z, zh, zw) + med
    _finite(z_hat)
    table = net.gaussian_conditional.scale_table
    decoder = StreamDecoder(strings[1], n_y, ytab)

    def next_symbols(scale: Tensor, mu: Tensor) -> Tensor:
        _finite(scale, mu)
        idx, _ = scale_indexes(scale, table)
        start = acc.count
        sel = (sig_pos >= start) & (sig_pos < start + idx.size)
        idx[sig_pos[sel] - start] = sig_idx[sel]
        acc.add(idx, np.zeros(0))
        # The last part's indexes complete the list: check it before that part is decoded.
        if acc.count == total and _crc(acc.idx) != checks.indexes:
            raise BitstreamError(f"file check failed: {ARITHMETIC} (entropy-model indexes differ)")
        sym = decoder.decode(idx).astype(np.int64)
        sym = restore_outliers(sym, start, outliers, BitstreamError)
        acc.sym[-1] = sym
        return torch.from_numpy(sym.astype(np.float64)).reshape(mu.shape)

    def part(scale: Tensor, mu: Tensor) -> Tensor:
        q = next_symbols(scale * g, mu)
        if gain is None:
            return q + mu
        off = net.offsets(q.float(), scale.float(), g).double()  # a variable-rate model
        return q.sign() * (q.abs() + off) / g + mu

    y_hat = net.code_y(p, z_hat.double(), (zh * 4, zw * 4), part)
    if _crc(acc.idx) != checks.indexes:
        raise BitstreamError(f"file check failed: {ARITHMETIC} (entropy-model indexes differ)")
    if _crc(acc.sym) != checks.symbols:
        raise BitstreamError(
            "file check failed: decoded symbols differ from the encoder's (wrong weights, "
            "other entropy tables, or a damaged file)"
        )
    _finite(y_hat)
    return y_hat.float()


def _decode_v1(net: CompressionModel, strings: tuple[bytes, ...], latent_shape) -> Tensor:
    """Format version 1: CompressAI's own float32 arithmetic and escape-bearing tables; the
    native decoder runs isolated (:class:`IsolatedDecoder`), nothing is checked."""
    warnings.warn(
        ".sic format version 1 carries no check: if this machine's arithmetic differs from the "
        "encoder's, the picture may be silently wrong (re-encode to get version 2)",
        SaicmWarning,
        stacklevel=3,
    )
    if len(strings) != 2:
        raise BitstreamError(f".sic file holds {len(strings)} strings, this model codes 2")
    ztab, ytab = coding_tables(net, escape=True)
    _structure(net)
    zh, zw = latent_shape
    c_z = int(net.entropy_bottleneck.quantized_cdf.shape[0])
    with IsolatedDecoder(strings[1], ztab) as dec:
        z_sym = dec.decode(_z_indexes(net, (c_z, zh, zw)))
    z_hat = torch.from_numpy(z_sym.astype(np.float32)).reshape(1, c_z, zh, zw) + _medians(net)
    gc = net.gaussian_conditional
    with IsolatedDecoder(strings[0], ytab) as dec:

        def part(scale: Tensor, mu: Tensor) -> Tensor:
            _finite(scale, mu)
            idx = gc.build_indexes(scale).reshape(-1).numpy()
            q = torch.from_numpy(dec.decode(idx).astype(np.float32)).reshape(mu.shape)
            return q + mu

        y_hat = net.code_y(net.entropy_param_module(), z_hat, torch.Size((zh * 4, zw * 4)), part)
    _finite(y_hat)
    return y_hat

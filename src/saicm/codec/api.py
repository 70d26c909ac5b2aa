"""Python API of the image codec: an image in, ``.sic`` bytes out, and back.

>>> import saicm
>>> data = saicm.encode("photo.jpg")                  # default shipped SA-ICM model
>>> image = saicm.decode(data)                        # (H, W, 3) uint8 RGB
>>> image = saicm.decode("photo.sic")                 # or a file's path
>>> bpp = 8 * len(data) / (image.shape[0] * image.shape[1])
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import BitstreamError, ImageError, ModelError, SaicmError
from ..image import ImageLike, crop, to_array, to_rgb, to_tensor
from .bitstream import FORMAT_VERSION, VBR_FORMAT_VERSION, Bitstream, pack, unpack
from .installed import load_installed_model, load_model
from .latents import decode_latents, encode_latents
from .model_file import TrainedModel
from .registry import get_architecture

__all__ = ["ModelLike", "decode", "encode", "memory_budget", "rate_gain", "resolve_model"]

#: Environment variable: the most memory (GiB) one image's coding may take (see
#: :func:`memory_budget`).
MEMORY_ENV = "SAICM_MEMORY_GB"

ModelLike = TrainedModel | str | os.PathLike[str] | None


def resolve_model(model: ModelLike) -> TrainedModel:
    """A loaded model from a :class:`TrainedModel`, an installed name, a path, or ``None``."""
    return model if isinstance(model, TrainedModel) else load_model(model)


def memory_budget() -> int:
    """Bytes one image's coding may take: ``$SAICM_MEMORY_GB`` GiB if set, else three quarters
    of the memory this process may use, at most 16 GiB: the least of the machine's physical
    memory, the cgroup's limit less its usage (a container, a job scheduler; cgroup v2
    ``memory.max``, v1 ``memory.limit_in_bytes``) and the address space ``RLIMIT_AS``
    (``ulimit -v``, ``prlimit --as``) leaves beside what the process already maps.

    Raises:
        SaicmError: ``$SAICM_MEMORY_GB`` is not a positive number.
    """
    value = os.environ.get(MEMORY_ENV)
    if value:
        try:
            gib = float(value)
        except ValueError:
            gib = float("nan")
        if not 0 < gib < 1e6:
            raise SaicmError(f"{MEMORY_ENV}={value!r}: a number of GiB above 0")
        return int(gib * 2**30)
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): the cap alone
        physical = 1 << 62
    return int(min(16 * 2**30, 0.75 * min(physical, _process_limit())))


def _process_limit() -> int:
    """Bytes this process may still allocate under its own limits (``RLIMIT_AS`` less the
    address space it maps, the cgroup's memory limit less its usage); 2^62 when unlimited or
    unknown (not Linux)."""
    free = 1 << 62
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            free = min(free, soft - _status_bytes("VmSize"))
    except (ImportError, OSError, ValueError):
        pass
    for version, root in ((2, "/sys/fs/cgroup"), (1, "/sys/fs/cgroup/memory")):
        free = min(free, cgroup_free(root, version))
    return max(free, 0)


def cgroup_free(root: str, version: int) -> int:
    """Bytes the cgroup whose memory files are in ``root`` may still allocate: its limit less
    its working set (usage less the page cache it may reclaim, ``inactive_file``); 2^62 when
    unlimited or unreadable.

    Arguments:
        root: ``/sys/fs/cgroup`` (v2) or ``/sys/fs/cgroup/memory`` (v1).
        version: 2 (``memory.max``, ``memory.current``) or 1 (``memory.limit_in_bytes``,
            ``memory.usage_in_bytes``, ``total_inactive_file``).
    """
    limit, usage, cache = (
        ("memory.max", "memory.current", "inactive_file")
        if version == 2
        else ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
    )
    try:
        with open(f"{root}/{limit}") as f:
            text = f.read().strip()
        if text == "max" or int(text) >= 1 << 60:  # v1 writes "unlimited" as ~2^63
            return 1 << 62
        with open(f"{root}/{usage}") as f:
            used = int(f.read().strip())
    except (OSError, ValueError):
        return 1 << 62
    return int(text) - (used - _cgroup_stat(f"{root}/memory.stat", cache))


def _cgroup_stat(path: str, key: str) -> int:
    """A field of a cgroup's ``memory.stat`` (bytes; 0 where absent). The usage counts the
    page cache of files read, which the kernel reclaims under pressure: ``inactive_file`` is
    taken off it, as container runtimes count a working set."""
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _status_bytes(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmSize``: the address space mapped) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise ValueError(field)


def _check_memory(m: TrainedModel, height: int, width: int, error: type[SaicmError]) -> None:
    """Refuse, before any allocation, an image whose coding would need more than the budget
    (the architecture's measured bytes per padded pixel times its padded pixels)."""
    need = get_architecture(m.arch).coding_bytes_per_pixel * height * width
    budget = memory_budget()
    if need > budget:
        raise error(
            f"coding a {width}x{height} image with {m.name!r} needs about {need / 2**30:.1f} GiB, "
            f"more than the {budget / 2**30:.1f} GiB allowed (set {MEMORY_ENV} to allow more)"
        )


def rate_gain(m: TrainedModel, lmbda: float | None) -> float | None:
    """The quantisation gain of ``lmbda`` for a variable-rate model (its default setting when
    ``lmbda`` is None); ``None`` for a fixed-rate model, which takes no ``lmbda``.

    Raises:
        ModelError: ``lmbda`` given for a fixed-rate model, or outside the model's range.
    """
    from .vbr import is_variable_rate

    if not is_variable_rate(m.net):
        if lmbda is not None:
            trained = m.card.get("lmbda")
            at = f" (trained at lambda {trained:g})" if isinstance(trained, (int, float)) else ""
            raise ModelError(
                f"{m.name!r} is a fixed-rate model{at}: a rate setting (lambda) needs a "
                "variable-rate model"
            )
        return None
    return m.net.gain_for(m.net.default_lmbda if lmbda is None else lmbda)


@torch.inference_mode()
def encode(image: ImageLike, model: ModelLike = None, lmbda: float | None = None) -> bytes:
    """Code one image into the bytes of a ``.sic`` file (format version 2, with checks;
    version 3 for a variable-rate model, which adds the rate setting).

    The image is padded by the model's own rule (``model.padding``: saicm's models to a multiple
    of 64 at the bottom and right with edge pixels, the LIC-TCM / SA-ICM authors' checkpoints to
    a multiple of 128, centred, with zeros); the file records the padding.

    Arguments:
        image: a path, a PIL image or an ``(H, W, 3)`` array.
        model: a loaded model, an installed model's name, a model file, or ``None`` (default).
        lmbda: the rate setting of a variable-rate model (a lambda within its trained range,
            :attr:`~saicm.codec.vbr.VariableRateMeanScale.rate_range`; default its geometric
            middle); must be ``None`` for a fixed-rate model.

    Raises:
        ImageError: an unreadable or too large image.
        ModelError: a model that cannot be loaded or computes NaN entropy parameters; a
            ``lmbda`` for a fixed-rate model or outside a variable-rate model's range.
    """
    m = resolve_model(model)
    gain = rate_gain(m, lmbda)
    rgb = to_rgb(image)
    height, width = rgb.shape[:2]
    top, left, bottom, right = m.padding.amounts(height, width)
    _check_memory(m, top + height + bottom, left + width + right, ImageError)
    x, pad = m.padding.apply(to_tensor(rgb))
    coded = encode_latents(m.net, x.contiguous(memory_format=torch.channels_last), gain)
    bs = Bitstream(
        m.name,
        m.hash_prefix,
        height,
        width,
        pad,
        coded.latent_shape,
        coded.strings,
        coded.checks,
        FORMAT_VERSION if gain is None else VBR_FORMAT_VERSION,
        gain,
    )
    return pack(bs)


@torch.inference_mode()
def decode(
    data: bytes | str | os.PathLike[str], model: ModelLike = None, rounding: str | None = None
) -> np.ndarray:
    """Decode a ``.sic`` file (its bytes, or its path) into an ``(H, W, 3)`` uint8 RGB array.

    A version-2 file decodes to the same symbols on every machine, or fails: see README,
    "Decoding on another machine", and :mod:`saicm.codec.latents`. Version-1 files decode with
    a :class:`~saicm.errors.SaicmWarning` (no check).

    Arguments:
        data: the file's bytes (``bytes``, ``bytearray``, ``memoryview``), or its path (a
            ``str`` or ``os.PathLike``).
        model: the model to decode with; ``None`` finds the installed model named in the file.
        rounding: ``"nearest"`` or ``"floor"`` (see :func:`saicm.image.to_array`); ``None``:
            the model's own (``model.rounding``: ``floor`` for the authors' checkpoints, whose
            scripts truncate, ``nearest`` for saicm's models).

    Raises:
        BitstreamError: no such file, a damaged or foreign file, its padding or latent size do
            not fit the model, or a failed check (the message names the likely cause: the decoder's
            arithmetic, the entropy tables or the weights).
        ModelError: the model is missing or has other weights than the file's.
        ValueError: another ``rounding``.
    """
    if rounding not in (None, "nearest", "floor"):
        raise ValueError(f"rounding {rounding!r}: choose nearest or floor")
    if isinstance(data, (str, os.PathLike)):
        try:
            data = Path(data).read_bytes()
        except FileNotFoundError:
            raise BitstreamError(f"{data}: no such file") from None
        except IsADirectoryError:
            raise BitstreamError(f"{data}: a folder, not a .sic file") from None
    elif isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    elif not isinstance(data, bytes):
        raise BitstreamError(
            f"cannot decode a {type(data).__name__}: give the bytes of a .sic file or its path"
        )
    bs = unpack(data)
    # the name in the file is looked up among installed models, never opened as a path
    m = resolve_model(model) if model is not None else load_installed_model(bs.model)
    if bs.weights_hash != m.hash_prefix:
        raise ModelError(
            f"file was written by model {bs.model!r} with weights {bs.weights_hash.hex()}, "
            f"but {m.name!r} has weights {m.hash_prefix.hex()}"
        )
    ds, multiple = m.downsampling, m.padding.multiple
    top, left, bottom, right = bs.pad
    ph, pw = top + bs.height + bottom, left + bs.width + right
    if ph % multiple or pw % multiple or top + bottom >= multiple or left + right >= multiple:
        raise BitstreamError(f"padding {bs.pad} does not fit model {m.name!r}")
    if (ph // ds, pw // ds) != bs.latent_shape:  # z sits at 1/downsampling of the image
        raise BitstreamError(f"latent shape {bs.latent_shape} does not fit a {pw}x{ph} image")
    _check_memory(m, ph, pw, BitstreamError)
    y_hat = decode_latents(m.net, bs.strings, bs.latent_shape, bs.checks, bs.gain)
    x_hat = m.net.g_s(y_hat.contiguous(memory_format=torch.channels_last))
    if not torch.isfinite(x_hat).all():
        raise BitstreamError(
            "decoding produced NaN or inf pixels: the weights do not belong to this file, or "
            "the model is broken"
        )
    x_hat = crop(x_hat.clamp_(0, 1), bs.height, bs.width, top, left)
    return to_array(x_hat, rounding or m.rounding)

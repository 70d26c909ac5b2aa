"""Reading mask files: one reader for training, validation, ``saicm video`` and the mask oracle.

A mask file is any image a user would call binary: exactly two pixel values (or one), whatever
the way they are stored:

* 1-bit (mode ``1``), grey 0/1 (``Image.fromarray(mask.astype(np.uint8))``), grey 0/255,
  16-bit 0/65535, or any two grey levels;
* a palette image using two colours (whatever their palette indices);
* RGB or RGBA with two colours (e.g. black and white, or black and a label colour); in an image
  with an alpha channel a fully transparent pixel is off whatever its colour.

The darker value (or transparent) is *off*, the other *on*. A file with a single value is all on
if that value is not black (or transparent), else *empty*. A file with more than two values
(a JPEG, an anti-aliased drawing, a probability map) is not a mask: it is refused rather than
thresholded at a guessed level. EXIF orientation is applied, as for images
(:func:`saicm.image.load_image`), so a mask lies on its image as a viewer shows both.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import SaicmError
from ..image import _orient

__all__ = ["MaskError", "check_masks", "read_mask"]


class MaskError(SaicmError):
    """A mask file that is not binary, is empty where that is not allowed, or cannot be read."""


_TRANSPARENT = 0xFFFFFFFF  # a key no 8-bit colour has: every fully transparent pixel


def _keys(img: Image.Image) -> np.ndarray:
    """Per pixel one integer standing for its value: the grey level, or the packed colour (with
    :data:`_TRANSPARENT` for a fully transparent pixel)."""
    if img.mode == "1":
        return np.asarray(img, dtype=np.uint8)
    if img.mode in ("P", "PA") or "transparency" in img.info:
        img = img.convert("RGBA")
    arr = np.asarray(img)
    if arr.ndim == 2:  # L, I;16, I, F: the grey level itself
        return arr
    alpha = arr[..., -1] if img.mode in ("RGBA", "LA", "RGBa", "La") else None
    colour = arr[..., : arr.shape[2] - 1] if alpha is not None else arr
    buf = np.zeros((*arr.shape[:2], 4), np.uint8)  # channels as the low bytes of one uint32
    buf[..., : colour.shape[2]] = colour
    packed = buf.view("<u4")[..., 0].astype(np.uint32)
    if alpha is not None:
        packed[alpha == 0] = _TRANSPARENT
    return packed


def _brightness(key: float | int, packed: bool) -> float:
    """How bright one value is: the grey level, the sum of the colour's channels, -1 for
    transparent."""
    if not packed:
        return float(key)
    if int(key) == _TRANSPARENT:
        return -1.0
    return float(sum((int(key) >> (8 * c)) & 255 for c in range(3)))


def read_mask(path: str | os.PathLike[str], allow_empty: bool = False) -> np.ndarray:
    """The mask in ``path`` as an ``(H, W)`` bool array (True = on).

    A few passes over the pixels, no sort: a 640x480 mask reads in about a millisecond.

    Raises:
        MaskError: missing or unreadable file; more than two pixel values (names the file and
            their number); two values equally bright (no way to tell on from off); an empty
            mask (every pixel off) unless ``allow_empty``.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            img = _orient(img)  # as load_image turns its image
            mode = img.mode
            keys = _keys(img)
    except FileNotFoundError:
        raise MaskError(f"{path}: no such mask file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise MaskError(f"{path}: not an image saicm can read as a mask ({exc})") from None
    packed = keys.dtype == np.uint32 and mode != "I"
    flat = keys.reshape(-1)
    first = flat[0]
    other = flat != first
    if not other.any():  # one value: all on, unless black or transparent
        mask = np.full(keys.shape, _brightness(first, packed) > 0)
    else:
        second = flat[int(other.argmax())]
        if (other & (flat != second)).any():
            count = len(np.unique(flat))
            raise MaskError(
                f"{path}: not a binary mask: {count} different pixel values ({mode}); a mask "
                "holds two (e.g. 0/1 or 0/255), see docs/TRAINING.md"
            )
        b1, b2 = _brightness(first, packed), _brightness(second, packed)
        if b1 == b2:
            raise MaskError(f"{path}: two colours of the same brightness: which one is on?")
        mask = keys != (first if b1 < b2 else second)
    if not allow_empty and not mask.any():
        raise MaskError(f"{path}: empty mask (every pixel off)")
    return mask


def check_masks(
    paths: Sequence[str | os.PathLike[str]], allow_empty: bool = False
) -> tuple[float, list[Path]]:
    """Read every mask in ``paths``; return the mean on-fraction and the empty ones.

    Raises:
        MaskError: naming every file that is not a binary mask (the first few and a count), every
            empty one unless ``allow_empty``, and always when *all* of them are empty (nothing
            would be learned from the masks).
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(p: str | os.PathLike[str]) -> float | str:
        try:
            return float(read_mask(p, allow_empty=True).mean())
        except MaskError as exc:
            return str(exc)

    bad: list[str] = []
    empty: list[Path] = []
    fractions: list[float] = []
    # PNG decoding and numpy release the GIL: threads read a large mask folder several times
    # faster (COCO's 118k masks at ~3 ms each on one core)
    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
        for p, got in zip(paths, pool.map(one, paths), strict=True):
            if isinstance(got, str):
                bad.append(got)
                continue
            fractions.append(got)
            if got == 0.0:
                empty.append(Path(p))
    if bad:
        raise MaskError(_listing(bad, "bad mask file(s)"))
    if empty and (not allow_empty or len(empty) == len(fractions)):
        what = "every mask is empty (all off)" if len(empty) == len(fractions) else "empty masks"
        raise MaskError(_listing([f"{p}: empty (all off)" for p in empty], what))
    return (float(np.mean(fractions)) if fractions else float("nan")), empty


def _listing(lines: Iterable[str], what: str, shown: int = 5) -> str:
    lines = list(lines)
    more = f"; and {len(lines) - shown} more" if len(lines) > shown else ""
    return f"{len(lines)} {what}: " + "; ".join(lines[:shown]) + more

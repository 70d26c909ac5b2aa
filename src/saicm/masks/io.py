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
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import SaicmError

__all__ = ["MaskError", "check_masks", "read_mask"]


class MaskError(SaicmError):
    """A mask file that is not binary, is empty where that is not allowed, or cannot be read."""


def _values(img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel an integer key of its value, and per key its brightness (-1: transparent)."""
    if img.mode == "1":
        arr = np.asarray(img, dtype=np.uint8)
        return arr, np.array([0.0, 1.0])
    if img.mode in ("P", "PA") or "transparency" in img.info:
        img = img.convert("RGBA")
    arr = np.asarray(img)
    if arr.ndim == 2:  # L, I;16, I, F: the grey value is the key
        keys, inverse = np.unique(arr, return_inverse=True)
        return inverse.reshape(arr.shape), keys.astype(np.float64)
    arr = arr.astype(np.uint32)
    channels = arr.shape[2]
    alpha = arr[..., -1] if img.mode in ("RGBA", "LA", "RGBa", "La") else None
    colour = arr[..., : channels - 1] if alpha is not None else arr
    packed = np.zeros(arr.shape[:2], np.uint64)
    for c in range(colour.shape[2]):
        packed = packed * 256 + colour[..., c]
    if alpha is not None:  # every fully transparent pixel is one value, whatever its colour
        packed = np.where(alpha == 0, np.uint64(2**40), packed)
    keys, inverse = np.unique(packed, return_inverse=True)
    bright = np.array(
        [
            -1.0 if k == 2**40 else float(sum((int(k) >> (8 * c)) & 255 for c in range(3)))
            for k in keys
        ]
    )
    return inverse.reshape(arr.shape[:2]), bright


def read_mask(path: str | os.PathLike[str], allow_empty: bool = False) -> np.ndarray:
    """The mask in ``path`` as an ``(H, W)`` bool array (True = on).

    Raises:
        MaskError: missing or unreadable file; more than two pixel values (names the file and
            the values); two values equally bright (no way to tell on from off); an empty mask
            (every pixel off) unless ``allow_empty``.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img) or img
            keys, bright = _values(img)
            mode = img.mode
    except FileNotFoundError:
        raise MaskError(f"{path}: no such mask file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise MaskError(f"{path}: not an image saicm can read as a mask ({exc})") from None
    used = np.unique(keys)
    if len(used) > 2:
        raise MaskError(
            f"{path}: not a binary mask: {len(used)} different pixel values ({mode}); a mask "
            "holds two (e.g. 0/1 or 0/255), see docs/TRAINING.md"
        )
    if len(used) == 2 and bright[used[0]] == bright[used[1]]:
        raise MaskError(f"{path}: two colours of the same brightness: which one is on?")
    if len(used) == 2:
        off = used[int(np.argmin(bright[used]))]
        mask = keys != off
    else:
        mask = np.full(keys.shape, bright[used[0]] > 0)
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
    bad: list[str] = []
    empty: list[Path] = []
    fractions: list[float] = []
    for p in paths:
        try:
            m = read_mask(p, allow_empty=True)
        except MaskError as exc:
            bad.append(str(exc))
            continue
        fractions.append(float(m.mean()))
        if not m.any():
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

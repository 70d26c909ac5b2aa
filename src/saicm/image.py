"""Reading, converting and writing images; tensors in and out of the codecs.

Every image inside saicm is an ``(H, W, 3)`` ``uint8`` RGB array. Other modes are converted with
a :class:`~saicm.errors.SaicmWarning` that says so.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .errors import ImageError, SaicmError, SaicmWarning
from .utils.io import atomic_path

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "ImageLike",
    "crop",
    "list_images",
    "load_image",
    "pad_amounts",
    "pad_to_multiple",
    "save_image",
    "to_array",
    "to_rgb",
    "to_tensor",
]

#: Files that folder-taking commands pick up as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm")

#: Largest image saicm codes (pixels): 8192 x 8192. Checked from the file header, before any
#: pixel is decoded, so an absurd size is refused without allocating it.
MAX_PIXELS = 8192 * 8192

ImageLike = str | os.PathLike | Image.Image | np.ndarray


def _check_size(width: int, height: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{what} has zero size ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{what} is {width}x{height} = {width * height} pixels, above the limit of "
            f"{MAX_PIXELS} (saicm.image.MAX_PIXELS)"
        )


def _pil_to_rgb(img: Image.Image, what: str) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        warnings.warn(f"{what}: {mode} image converted to 8-bit RGB", SaicmWarning, stacklevel=3)
        grey = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode != "RGB":
        if mode not in ("P", "YCbCr", "RGBX"):  # lossless re-labelling needs no warning
            warnings.warn(f"{what}: {mode} image converted to RGB", SaicmWarning, stacklevel=3)
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)  # a writable copy, C-contiguous


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as an ``(H, W, 3)`` uint8 RGB array.

    Raises:
        ImageError: missing or unreadable file, not an image, zero size, or above ``MAX_PIXELS``.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    try:
        with Image.open(path) as img:
            _check_size(img.width, img.height, str(path))  # header only: nothing decoded yet
            img.load()
            return _pil_to_rgb(img, str(path))
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise ImageError(f"{path}: not an image saicm can read") from None
    except Exception as exc:  # decoders raise many kinds (OSError, SyntaxError, struct.error...)
        raise ImageError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from None


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly inside ``folder``, sorted; an error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SaicmError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SaicmError(f"{folder}: no images")
    return files


def to_rgb(image: ImageLike) -> np.ndarray:
    """Any image-like input (path, PIL image, array) as an ``(H, W, 3)`` uint8 RGB array."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        _check_size(image.width, image.height, "image")
        return _pil_to_rgb(image, "image")
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise ImageError(f"array of shape {image.shape} is not an image")
        _check_size(arr.shape[1], arr.shape[0], "image")
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        elif arr.shape[2] == 4:
            warnings.warn("alpha channel dropped", SaicmWarning, stacklevel=2)
            arr = arr[..., :3]
        if arr.dtype == np.uint16:
            warnings.warn("16-bit image converted to 8-bit", SaicmWarning, stacklevel=2)
            arr = (arr.astype(np.float64) / 257.0).round()
        elif arr.dtype.kind == "f":
            arr = arr * 255.0 if float(arr.max(initial=0)) <= 1.0 else arr
            arr = arr.round()
        return np.ascontiguousarray(np.clip(arr, 0, 255).astype(np.uint8))
    raise ImageError(f"cannot use a {type(image).__name__} as an image")


def save_image(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an RGB array atomically; the format follows the suffix (PNG if none)."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=fmt)
    return path


def to_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` float in [0, 1]."""
    return torch.from_numpy(image).to(device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_array(x: torch.Tensor, rounding: str = "nearest") -> np.ndarray:
    """``(1, 3, H, W)`` float in [0, 1] -> ``(H, W, 3)`` uint8, clipped to [0, 1] first.

    ``rounding``: ``"nearest"`` (``round(255 x)``, unbiased) or ``"floor"`` (``floor(255 x)``:
    the truncation of ``(x * 255).astype(np.uint8)`` in the LIC-TCM / SA-ICM authors' scripts,
    computed in the same float32 arithmetic, so the pixels are identical).

    Raises:
        ValueError: another ``rounding``.
    """
    x = x.detach().clamp(0, 1).mul(255.0)
    if rounding == "nearest":
        x = x.round()
    elif rounding == "floor":
        x = x.floor()
    else:
        raise ValueError(f"rounding {rounding!r}: choose nearest or floor")
    return x.to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()


def pad_amounts(
    height: int, width: int, multiple: int, placement: str = "bottom-right"
) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` padding that brings ``height`` x ``width`` to the next
    multiple of ``multiple`` on each side.

    ``placement``: ``"bottom-right"`` (all of it there) or ``"centre"`` (``top = total // 2``,
    the odd pixel at the bottom; likewise left / right), as ``utils.pad`` of the SA-ICM
    authors and LIC-TCM's ``eval.py``.

    Raises:
        ValueError: a non-positive size or multiple, or another ``placement``.
    """
    if height < 1 or width < 1 or multiple < 1:
        raise ValueError(f"cannot pad {width}x{height} to a multiple of {multiple}")
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if placement == "bottom-right":
        return 0, 0, pad_h, pad_w
    if placement == "centre":
        return pad_h // 2, pad_w // 2, pad_h - pad_h // 2, pad_w - pad_w // 2
    raise ValueError(f"padding placement {placement!r}: choose bottom-right or centre")


def pad_to_multiple(
    x: torch.Tensor, multiple: int, *, placement: str = "bottom-right", mode: str = "replicate"
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad ``(B, C, H, W)`` so that ``H`` and ``W`` are multiples of ``multiple``.

    ``placement`` as :func:`pad_amounts`; ``mode``: ``"replicate"`` (edge pixels: a flat
    continuation costs almost no bits) or ``"zeros"``. Returns the padded tensor and
    ``(top, left, bottom, right)``; :func:`crop` undoes it.

    Raises:
        ValueError: another ``placement`` or ``mode``.
    """
    if mode not in ("replicate", "zeros"):
        raise ValueError(f"padding mode {mode!r}: choose replicate or zeros")
    top, left, bottom, right = pad_amounts(x.shape[-2], x.shape[-1], multiple, placement)
    if top or left or bottom or right:
        if mode == "replicate":
            x = F.pad(x, (left, right, top, bottom), mode="replicate")
        else:
            x = F.pad(x, (left, right, top, bottom), mode="constant", value=0.0)
    return x, (top, left, bottom, right)


def crop(x: torch.Tensor, height: int, width: int, top: int = 0, left: int = 0) -> torch.Tensor:
    """The ``height`` x ``width`` window of ``(..., H, W)`` at ``(top, left)``: undoes
    :func:`pad_to_multiple` given its ``top`` and ``left``.

    Raises:
        ValueError: the window does not lie inside ``x``.
    """
    h, w = x.shape[-2:]
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > h or left + width > w:
        raise ValueError(f"cannot crop {width}x{height} at ({left}, {top}) out of {w}x{h}")
    return x[..., top : top + height, left : left + width]

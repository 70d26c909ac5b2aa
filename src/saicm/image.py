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


def to_array(x: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` float in [0, 1] -> ``(H, W, 3)`` uint8 (rounded, clipped)."""
    x = x.detach().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return x[0].permute(1, 2, 0).cpu().numpy()


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``(B, C, H, W)`` at the bottom and right to a multiple of ``multiple``.

    Edge pixels are replicated rather than zeros: a flat continuation costs almost no bits.
    Returns the padded tensor and ``(pad_bottom, pad_right)``.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x, (pad_h, pad_w)


def crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`."""
    return x[..., :height, :width]

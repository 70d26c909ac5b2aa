"""Reading, converting and writing images; tensors in and out of the codecs.

Every image inside saicm is an ``(H, W, 3)`` ``uint8`` RGB array, as a viewer shows the file:
EXIF orientation applied, transparency composited onto white, other modes converted, each lossy
step said with a :class:`~saicm.errors.SaicmWarning` (README.md, "Input images").
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, SaicmError, SaicmWarning
from .utils.io import atomic_path

__all__ = [
    "BACKGROUND",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "WRITE_SUFFIXES",
    "ImageLike",
    "crop",
    "image_size",
    "is_image_file",
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
#: Extensions of the images saicm writes (:func:`save_image`; the format follows the extension).
WRITE_SUFFIXES = IMAGE_SUFFIXES


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether a folder's entry counts as one of its images: an image extension, and not a
    hidden file (``.x.png``: a temporary file of a write in flight, or the system's own)."""
    name = os.path.basename(path)
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES

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


#: What transparent pixels are composited onto: white, as a browser or document viewer shows
#: a transparent picture on a page. Never the colour hidden under the transparent pixels.
BACKGROUND = (255, 255, 255)

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def _warn(msg: str) -> None:
    warnings.warn(msg, SaicmWarning, stacklevel=4)


def _orient(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation tag says (as viewers and phones show it)."""
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block: the pixels as stored
        return img
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(img)
    return img


def _composite(rgb: np.ndarray, alpha: np.ndarray, what: str) -> np.ndarray:
    """``rgb`` over :data:`BACKGROUND` with ``alpha`` (uint8, 255 = opaque)."""
    if alpha.min(initial=255) == 255:
        return rgb  # fully opaque: nothing to decide
    _warn(
        f"{what}: transparent pixels composited onto white "
        f"({float(np.mean(alpha < 255)) * 100:.1f}% of the image is not opaque)"
    )
    a = alpha.astype(np.float64)[..., None] / 255.0
    bg = np.asarray(BACKGROUND, np.float64)
    out = rgb.astype(np.float64) * a + bg * (1.0 - a)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _to_srgb(img: Image.Image, what: str, mode: str = "RGB") -> Image.Image:
    """An RGB, RGBA or CMYK image with an embedded ICC profile, converted to sRGB in ``mode``
    (as browsers do); alpha is left as it is."""
    icc = img.info.get("icc_profile")
    if not icc:
        return img
    try:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = ImageCms.getProfileDescription(src) or ""
        if img.mode in ("RGB", "RGBA") and "srgb" in name.lower().replace(" ", ""):
            return img  # already sRGB: left bit-exact
        out = ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode=mode)
    except Exception as exc:  # no LittleCMS, or a broken profile: the pixels as stored
        _warn(f"{what}: colour profile not applied ({type(exc).__name__}); pixels taken as sRGB")
        return img
    _warn(f"{what}: {img.mode} image with colour profile {name.strip()!r} converted to sRGB")
    out.info.pop("icc_profile", None)
    return out


def _pil_to_rgb(img: Image.Image, what: str) -> np.ndarray:
    """The one conversion of every Pillow image saicm reads (see README, "Input images").

    EXIF orientation applied; transparency (alpha channel, palette or tRNS transparent colour)
    composited onto :data:`BACKGROUND`; 16-bit grey scaled to 8 bits; CMYK and images with a
    colour profile converted to sRGB; the first frame of a multi-frame file. Every conversion
    that changes or drops information is said with a :class:`SaicmWarning`.
    """
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        _warn(f"{what}: {frames} frames (animation or pages): the first frame only")
        img.seek(0)
    img = _orient(img)
    mode = img.mode
    if mode in (*_SIXTEEN_BIT, "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode in _SIXTEEN_BIT or (mode == "I" and img.format == "PNG"):
            peak = 65535.0  # 16-bit samples, whatever the image's own range
        elif mode == "F":
            peak = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        else:
            peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        _warn(f"{what}: {mode} image converted to 8-bit RGB (full scale {peak:g})")
        grey = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        if "transparency" in img.info:
            alpha = (np.asarray(img) != img.info["transparency"]).astype(np.uint8) * 255
            rgb = _composite(rgb, alpha, what)
        return rgb
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        if mode == "RGBA":
            img = _to_srgb(img, what, "RGBA")
        rgba = np.array(img.convert("RGBA"), dtype=np.uint8)
        return np.ascontiguousarray(_composite(rgba[..., :3], rgba[..., 3], what))
    if mode in ("RGB", "CMYK"):
        img = _to_srgb(img, what)
    if img.mode != "RGB":
        if img.mode not in ("P", "YCbCr", "RGBX"):  # lossless re-labelling: no warning
            _warn(f"{what}: {img.mode} image converted to RGB")
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)  # a writable copy, C-contiguous


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of an image file as :func:`load_image` returns it (after its EXIF
    orientation), read from the header alone.

    Raises:
        ImageError: missing file or not an image.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
            try:
                orientation = img.getexif().get(0x0112, 1)
            except Exception:
                orientation = 1
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except Exception:
        raise ImageError(f"{path}: not an image saicm can read") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as an ``(H, W, 3)`` uint8 RGB array, as a viewer shows it.

    Every command reads images here (encode, masks, train, eval, demo, video frames); what is
    done to each kind of file is in :func:`_pil_to_rgb`.

    Raises:
        ImageError: missing or unreadable file, not an image, zero size, or above ``MAX_PIXELS``.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    if not path.is_file():  # a FIFO would block for ever, a device never ends
        raise ImageError(f"{path}: not a regular file")
    try:
        with Image.open(path) as img:
            _check_size(img.width, img.height, str(path))  # header only: nothing decoded yet
            raw = [str(t[3]) for t in getattr(img, "tile", None) or [] if len(t) > 3]
            img.load()
            if img.mode in ("RGB", "RGBA") and any(";16" in r for r in raw):  # Pillow keeps the
                _warn(f"{path}: 16-bit {img.mode} image converted to 8-bit")  # high byte
            return _pil_to_rgb(img, str(path))
    except ImageError:
        raise
    except Image.DecompressionBombError:  # Pillow's own limit, met before _check_size's
        raise ImageError(
            f"{path}: image larger than the limit of {MAX_PIXELS} pixels "
            "(saicm.image.MAX_PIXELS)"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image saicm can read") from None
    except Exception as exc:  # decoders raise many kinds (OSError, SyntaxError, struct.error...)
        raise ImageError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from None


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly inside ``folder``, sorted; an error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SaicmError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not files:
        raise SaicmError(f"{folder}: no images")
    return files


def to_rgb(image: ImageLike) -> np.ndarray:
    """Any image-like input as an ``(H, W, 3)`` uint8 RGB array.

    Arguments:
        image: a path (read by :func:`load_image`), a PIL image, or an array of shape
            ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (straight alpha, composited
            onto white) whose values are, by dtype: ``uint8`` 0-255 as they are; ``uint16``
            0-65535 (to 8 bits, with a warning); other integers (and ``bool``) 0-255; floats
            0.0-1.0 (times 255, rounded: the convention of torchvision and scikit-image).

    Raises:
        ImageError: another shape or dtype, NaN or infinite values, or values outside the
            range of their dtype above (never scaled or clipped silently).
    """
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        _check_size(image.width, image.height, "image")
        return _pil_to_rgb(image, "image")
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise ImageError(
                f"array of shape {image.shape} is not an image: (H, W), (H, W, 1), (H, W, 3) "
                "or (H, W, 4)"
            )
        _check_size(arr.shape[1], arr.shape[0], "image")
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        arr = _to_uint8(arr)
        if arr.shape[2] == 4:  # straight alpha, as PNG and Pillow store it
            arr = _composite(arr[..., :3], arr[..., 3], "image")
        return np.ascontiguousarray(arr)
    raise ImageError(f"cannot use a {type(image).__name__} as an image")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """An image array's values as uint8, by the rules of :func:`to_rgb` (the range is checked,
    not assumed from the values: a dark float image is not mistaken for a 0-255 one)."""
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        warnings.warn("16-bit image converted to 8-bit", SaicmWarning, stacklevel=3)
        return (arr.astype(np.float64) / 257.0).round().astype(np.uint8)
    if kind in "iub":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 255:
            raise ImageError(
                f"{arr.dtype} array with values {lo}..{hi}: an integer image holds 0-255 "
                "(or give uint16 for 16 bits)"
            )
        return arr.astype(np.uint8)
    if kind == "f":
        if not np.isfinite(arr).all():
            raise ImageError(f"{arr.dtype} array with NaN or infinite values is not an image")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo < 0 or hi > 1:
            raise ImageError(
                f"{arr.dtype} array with values {lo:g}..{hi:g}: a float image holds 0.0-1.0 "
                "(divide 0-255 values by 255, or give uint8)"
            )
        return (arr.astype(np.float64) * 255.0).round().astype(np.uint8)
    raise ImageError(f"{arr.dtype} array is not an image (uint8, uint16, int or float 0-1)")


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

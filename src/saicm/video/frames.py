"""Frames in and out: video files through the bundled ffmpeg (``imageio-ffmpeg``), or folders.

Every clip inside saicm is a ``(T, H, W, 3)`` ``uint8`` RGB array.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SaicmError
from ..image import IMAGE_SUFFIXES, list_images, load_image, save_image
from ..utils.io import atomic_path

__all__ = ["Clip", "parse_size", "read_clip", "write_clip"]

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".y4m", ".m4v", ".mpg", ".mpeg")
#: Containers ``write_clip`` writes H.264 into.
_WRITE_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}


@dataclass
class Clip:
    """Frames and their rate (``fps`` 0 when unknown, as for a folder of frames)."""

    frames: np.ndarray
    fps: float = 0.0

    @property
    def shape(self) -> tuple[int, int, int]:
        t, h, w, _ = self.frames.shape
        return t, h, w


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"WxH"`` -> ``(W, H)``; None stays None."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SaicmError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 416x240") from None
    if w < 1 or h < 1:
        raise SaicmError(f"size {text!r}: width and height must be positive")
    return w, h


def _fit(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Scale to cover ``size`` (W, H) keeping the aspect ratio, then centre-crop to it."""
    if size is None:
        return frame
    from PIL import Image

    w, h = size
    fh, fw = frame.shape[:2]
    s = max(w / fw, h / fh)
    sw, sh = max(w, round(fw * s)), max(h, round(fh * s))
    img = Image.fromarray(frame)
    if (sw, sh) != (fw, fh):
        img = img.resize((sw, sh), Image.Resampling.LANCZOS)
    x, y = (sw - w) // 2, (sh - h) // 2
    return np.asarray(img.crop((x, y, x + w, y + h)))


def read_clip(
    source: str | os.PathLike[str],
    size: tuple[int, int] | None = None,
    max_frames: int | None = None,
    step: int = 1,
) -> Clip:
    """Read a video file or a folder of frames (sorted by name).

    Arguments:
        source: a video file ffmpeg can read, or a folder of images.
        size: ``(W, H)``: scale to cover and centre-crop every frame to this size.
        max_frames: keep at most this many frames (after ``step``).
        step: keep every ``step``-th frame.
    """
    path = Path(source)
    if step < 1:
        raise SaicmError("frame step must be >= 1")
    if path.is_dir():
        if not any(f.suffix.lower() in IMAGE_SUFFIXES for f in path.iterdir()):
            raise SaicmError(f"{path}: no frames (no images in the folder)")
        files = list_images(path)[::step][:max_frames]
        frames = [_fit(load_image(f), size) for f in files]
        fps = 0.0
    elif path.is_file():
        frames, fps = _read_video(path, size, max_frames, step)
    else:
        raise SaicmError(f"{path}: no such video file or folder")
    if not frames:
        raise SaicmError(f"{path}: no frames")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise SaicmError(f"{path}: frames differ in size ({sorted(shapes)[:2]}); give --frame-size WxH")
    return Clip(np.stack(frames), fps)


def _read_video(
    path: Path, size: tuple[int, int] | None, max_frames: int | None, step: int
) -> tuple[list[np.ndarray], float]:
    import imageio_ffmpeg

    try:
        gen = imageio_ffmpeg.read_frames(str(path))
        meta = next(gen)
        w, h = meta["size"]
        frames = []
        for i, raw in enumerate(gen):
            if i % step:
                continue
            frames.append(_fit(np.frombuffer(raw, np.uint8).reshape(h, w, 3), size))
            if max_frames is not None and len(frames) >= max_frames:
                gen.close()
                break
    except (OSError, RuntimeError, StopIteration, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SaicmError(f"{path}: not a readable video ({first[:200]})") from None
    return frames, float(meta.get("fps") or 0.0)


def write_clip(frames: np.ndarray, out: str | os.PathLike[str], fps: float = 25.0) -> Path:
    """Write frames as a video (``out`` ends in a video suffix: H.264, CRF 12) or as numbered
    PNGs in the folder ``out``. The video file appears whole or not at all."""
    out = Path(out)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise SaicmError("frames must be a non-empty (T, H, W, 3) uint8 array")
    suffix = out.suffix.lower()
    if suffix in VIDEO_SUFFIXES and suffix not in _WRITE_FORMATS:
        raise SaicmError(f"{out}: write {', '.join(_WRITE_FORMATS)} or a folder of frames")
    if suffix in _WRITE_FORMATS:
        import imageio_ffmpeg

        h, w = frames.shape[1:3]
        with atomic_path(out) as tmp:
            writer = imageio_ffmpeg.write_frames(
                str(tmp),
                (w, h),
                fps=fps or 25.0,
                codec="libx264",
                macro_block_size=1,
                output_params=["-crf", "12", "-pix_fmt", "yuv444p", "-f", _WRITE_FORMATS[suffix]],
            )
            writer.send(None)
            for f in frames:
                writer.send(np.ascontiguousarray(f))
            writer.close()
        return out
    if suffix in IMAGE_SUFFIXES:
        raise SaicmError(f"{out}: give a folder for frames or a video file name")
    out.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        save_image(f, out / f"frame_{i:05d}.png")
    return out

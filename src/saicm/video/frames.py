"""Frames in and out: video files through the bundled ffmpeg (``imageio-ffmpeg``), or folders.

Every clip inside saicm is a ``(T, H, W, 3)`` ``uint8`` RGB array.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SaicmError
from ..image import IMAGE_SUFFIXES, load_image, save_image
from ..utils.io import atomic_path, no_space_error
from .presets import MAX_FRAMES, MAX_PIXELS, MAX_SIDE, parse_size  # light: the CLI checks

__all__ = ["Clip", "is_video_output", "packet_times", "parse_size", "read_clip", "write_clip"]

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".y4m", ".m4v", ".mpg", ".mpeg")
_FRAME = re.compile(r"frame_\d{5}\.png")
#: Containers ``write_clip`` writes H.264 into.
_WRITE_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}


@dataclass
class Clip:
    """Frames and their rate (``fps`` 0 when unknown, as for a folder of frames)."""

    frames: np.ndarray
    fps: float = 0.0
    source: str | None = None  #: key of the source a run's frames cache was made from

    @property
    def shape(self) -> tuple[int, int, int]:
        t, h, w, _ = self.frames.shape
        return t, h, w


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
    files: list[Path] | None = None,
) -> Clip:
    """Read a video file or a folder of frames (sorted by name; hidden files, such as another
    writer's temporary files, are not frames).

    Arguments:
        source: a video file ffmpeg can read, or a folder of images.
        size: ``(W, H)``: scale to cover and centre-crop every frame to this size.
        max_frames: keep at most this many frames (after ``step``).
        step: keep every ``step``-th frame.
        files: exactly these images of the folder, in this order (a run's frames cache).

    Raises :class:`SaicmError` for an unreadable source, no frames, frames of different sizes,
    or frames larger than a NeRV frame may be (:func:`parse_size`'s limits) without ``size``.
    """
    path = Path(source)
    if step < 1:
        raise SaicmError("frame step must be >= 1")
    if max_frames is not None and max_frames < 1:
        raise SaicmError("max frames must be >= 1")
    if path.is_dir():
        if files is None:
            files = [
                f
                for f in sorted(path.iterdir())
                if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
            ]
            if not files:
                raise SaicmError(f"{path}: no frames (no images in the folder)")
            files = files[::step][:max_frames]
            if len(files) > MAX_FRAMES:
                raise SaicmError(f"{path}: more than {MAX_FRAMES} frames: give --max-frames")
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
        raise SaicmError(
            f"{path}: frames differ in size ({sorted(shapes)[:2]}); give --frame-size WxH"
        )
    h, w = frames[0].shape[:2]
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise SaicmError(f"{path}: frames of {w}x{h} exceed NeRV's limit: give --frame-size WxH")
    return Clip(np.stack(frames), fps)


def _read_video(
    path: Path, size: tuple[int, int] | None, max_frames: int | None, step: int
) -> tuple[list[np.ndarray], float]:
    """The frames a video file holds, as they are (``-fps_mode passthrough``: ffmpeg neither
    repeats nor drops a frame to reach a constant rate), and the rate of the kept frames
    (:func:`_kept_rate`: the file's own for a constant rate, divided by ``step``)."""
    import imageio_ffmpeg

    try:
        gen = imageio_ffmpeg.read_frames(
            str(path), output_params=["-map", "0:v:0", "-fps_mode", "passthrough"]
        )
        meta = next(gen)
        w, h = meta["size"]
        if size is None and (w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS):
            gen.close()
            raise SaicmError(f"{path}: frames of {w}x{h} exceed NeRV's limit: give --frame-size")
        frames = []
        read = 0  # frames of the file decoded (kept or not)
        for i, raw in enumerate(gen):
            read = i + 1
            if i % step:
                continue
            frames.append(_fit(np.frombuffer(raw, np.uint8).reshape(h, w, 3), size))
            if max_frames is not None and len(frames) >= max_frames:
                gen.close()
                break
            if len(frames) > MAX_FRAMES:
                gen.close()
                raise SaicmError(f"{path}: more than {MAX_FRAMES} frames: give --max-frames")
    except (OSError, RuntimeError, StopIteration, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SaicmError(f"{path}: not a readable video ({first[:200]})") from None
    return frames, _kept_rate(path, float(meta.get("fps") or 0.0), len(frames), read, step)


def packet_times(path: str | os.PathLike[str]) -> tuple[np.ndarray, float] | None:
    """Presentation times (seconds, from the first frame, in display order) of the frames of
    a video file's first video stream, and the last frame's duration (0 where the file does not
    say); None where the container gives no time for some frame.

    Read from the packets (``ffmpeg -c copy -f framecrc``): nothing is decoded."""
    from ..eval.codecs import ffmpeg_exe

    cmd = [ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy",
           "-f", "framecrc", "-"]  # fmt: skip
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=600).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return None
    tb = None
    pts, durations = [], []
    for line in out.splitlines():
        if line.startswith("#tb 0:"):
            num, _, den = line.split(":", 1)[1].strip().partition("/")
            tb = int(num) / int(den) if num.isdigit() and den.isdigit() and int(den) else None
            continue
        fields = [f.strip() for f in line.split(",")]
        if line.startswith("#") or len(fields) < 5 or fields[0] != "0":
            continue
        try:
            pts.append(int(fields[2]))
            durations.append(int(fields[3]))
        except ValueError:  # NOPTS: no time for this frame
            return None
    if tb is None or not pts:
        return None
    order = np.argsort(pts, kind="stable")
    times = (np.asarray(pts, np.float64)[order] - min(pts)) * tb
    return times, max(durations[int(order[-1])], 0) * tb


def _kept_rate(path: Path, fps: float, kept: int, read: int, step: int) -> float:
    """Frames per second of the ``kept`` frames (every ``step``-th of the first ``read``) so
    that, written back at that constant rate, they last as long as they did in the file.

    A constant-rate file: its rate divided by ``step``. A variable-rate file (its frames'
    times not evenly spaced): saicm keeps the real frames, never repeats or drops one, and
    their rate is their average, ``kept / seconds they span``; a :class:`SaicmWarning` says so
    (every video command reads clips here, so training, coding, decoding and evaluation all
    see the same frames and the same rate).
    """
    import warnings

    from ..errors import SaicmWarning

    timed = packet_times(path)
    if timed is None or len(timed[0]) < read or read < 2:
        return fps / step if fps else 0.0
    times, last = timed
    gaps = np.diff(times[:read]) if read <= len(times) else np.diff(times)
    tick = float(np.min(gaps[gaps > 0])) if (gaps > 0).any() else 0.0
    spread = float(gaps.max() - gaps.min())
    # a constant rate in a coarse time base (29.97 fps in ms: 33 and 34 ms) is not variable
    if spread <= max(0.0015, 0.02 * float(np.median(gaps))) or tick == 0.0:
        return fps / step if fps else (1.0 / float(np.median(gaps)) / step if tick else 0.0)
    end_index = (kept - 1) * step + step  # the frame after the last one kept stands for
    end = times[end_index] if end_index < len(times) else times[-1] + (last or np.median(gaps))
    seconds = float(end - times[0])
    rate = kept / seconds
    warnings.warn(
        f"{path}: variable frame rate (frames {gaps.min():.3f} to {gaps.max():.3f} s apart): "
        f"saicm keeps the {kept} real frames, none repeated or dropped, and writes them back at "
        f"their average rate, {rate:.4g} fps, over the same {seconds:.2f} s (each frame's own "
        "time is evened out)",
        SaicmWarning,
        stacklevel=4,
    )
    return rate


def is_video_output(out: str | os.PathLike[str]) -> bool:
    """Whether :func:`write_clip` writes ``out`` as one video file (its suffix names a format
    it writes), not as a folder of frames (``clip.v1/`` is a folder)."""
    return Path(out).suffix.lower() in _WRITE_FORMATS


def write_clip(
    frames: np.ndarray | Iterable[np.ndarray],
    out: str | os.PathLike[str],
    fps: float = 25.0,
    overwrite: bool = False,
) -> Path:
    """Write frames as a video (``out`` ends in a video suffix: H.264, CRF 12, yuv444p) or as
    numbered PNGs ``frame_NNNNN.png`` in the folder ``out``.

    A folder that already holds ``frame_NNNNN.png`` files is refused (two clips would mix),
    unless ``overwrite``: then, once the new frames are all written, the old frames (those
    names only; other files in the folder stay) are replaced. A video file is replaced by the
    caller's rule (:func:`saicm.utils.io.refuse_existing`).

    ``frames``: a ``(T, H, W, 3)`` uint8 array, or an iterable of such batches (all of one
    size; written as they come, so a long decode holds one batch). The video file, or the set of
    PNGs, appears whole or not at all: ffmpeg's exit status is checked and the file it wrote is
    read back (frame count); any failure (a full disk, a killed encoder) is a
    :class:`SaicmError` naming ``out`` and nothing is left behind.
    """
    out = Path(out)
    chunks = iter([frames] if isinstance(frames, np.ndarray) else frames)
    suffix = out.suffix.lower()
    if suffix in VIDEO_SUFFIXES and suffix not in _WRITE_FORMATS:
        raise SaicmError(f"{out}: write {', '.join(_WRITE_FORMATS)} or a folder of frames")
    if suffix in IMAGE_SUFFIXES:
        raise SaicmError(f"{out}: give a folder for frames or a video file name")
    if is_video_output(out):
        return _write_video(chunks, out, fps)
    if out.exists() and not out.is_dir():
        raise SaicmError(f"{out}: exists and is not a folder")
    old = [f for f in out.iterdir() if _FRAME.fullmatch(f.name)] if out.is_dir() else []
    if old and not overwrite:
        raise SaicmError(f"{out}: already holds frames (another clip's would mix in): give an "
                         "empty or new folder, or --overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out))
    try:
        count, shape = 0, None
        for chunk in chunks:
            shape = _check_chunk(chunk, shape)
            for f in chunk:
                try:
                    save_image(f, tmp / f"frame_{count:05d}.png")
                except OSError as exc:  # name the user's folder, not the hidden one beside it
                    why = exc.strerror or str(exc)
                    raise SaicmError(f"{out}: cannot write frame {count} ({why})") from None
                except SaicmError as exc:  # no space: the message names the hidden file
                    why = str(exc).partition(": ")[2] or str(exc)
                    raise SaicmError(f"{out}: cannot write frame {count}: {why}") from None
                count += 1
        if not count:
            raise SaicmError("frames must be a non-empty (T, H, W, 3) uint8 array")
        for f in old:  # a longer old clip leaves no frames behind the new one's last
            f.unlink(missing_ok=True)
        for i in range(count):
            os.replace(tmp / f"frame_{i:05d}.png", out / f"frame_{i:05d}.png")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _check_chunk(chunk: np.ndarray, shape: tuple[int, ...] | None) -> tuple[int, ...]:
    if not isinstance(chunk, np.ndarray) or chunk.ndim != 4 or chunk.shape[-1] != 3:
        raise SaicmError("frames must be a non-empty (T, H, W, 3) uint8 array")
    if chunk.dtype != np.uint8 or (shape is not None and chunk.shape[1:] != shape):
        raise SaicmError("frames must be a non-empty (T, H, W, 3) uint8 array of one size")
    return chunk.shape[1:]


def _write_video(chunks: Iterator[np.ndarray], out: Path, fps: float) -> Path:
    from ..eval.codecs import ffmpeg_exe

    first = next(chunks, None)
    if first is None or not len(first):
        raise SaicmError("frames must be a non-empty (T, H, W, 3) uint8 array")
    shape = _check_chunk(first, None)
    h, w = shape[:2]
    with atomic_path(out) as tmp, tempfile.TemporaryFile() as log:
        cmd = [
            ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", f"{w}x{h}", "-r", f"{fps or 25.0:g}", "-i", "-", "-c:v", "libx264",
            "-crf", "12", "-pix_fmt", "yuv444p", "-f", _WRITE_FORMATS[out.suffix.lower()],
            str(tmp),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=log)
        count = 0
        try:
            for chunk in itertools.chain([first], chunks):
                shape = _check_chunk(chunk, shape)
                proc.stdin.write(np.ascontiguousarray(chunk).tobytes())
                count += len(chunk)
        except BrokenPipeError:
            pass  # ffmpeg stopped: its exit status and message say why
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        code = proc.wait()
        log.seek(0)
        why = (log.read().decode(errors="replace").strip().splitlines() or [""])[-1][:200]
        if code:
            full = no_space_error(tmp, out)
            if full is not None:
                raise full
            raise SaicmError(f"{out}: ffmpeg could not write the video (exit {code}: {why})")
        written = _count_frames(tmp)
        if written != count:
            raise SaicmError(
                f"{out}: ffmpeg wrote {written} of {count} frames ({why or 'no message'})"
            )
    return out


def _count_frames(path: Path) -> int:
    """Frames in a video file, decoded by the bundled ffmpeg (0 if it cannot be read)."""
    import imageio_ffmpeg

    if not path.is_file() or path.stat().st_size == 0:
        return 0
    try:
        return int(imageio_ffmpeg.count_frames_and_secs(str(path))[0])
    except (RuntimeError, OSError, ValueError):
        return 0

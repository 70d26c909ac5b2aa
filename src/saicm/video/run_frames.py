"""The frames a video run learns, cached in its folder: the clip as PNGs under ``frames/`` with
``clip.yaml`` (written last) vouching for them, checked against the source on resume, and for
``sa-nerv`` the edge masks of the frames under ``masks/``.

``cfg`` below is the run's :class:`saicm.video.train.VideoTrainConfig` (``video``,
``frame_size``, ``max_frames``, ``frame_step``, ``loss``, ``mask_source``).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import SaicmError
from ..utils.io import atomic_path
from ..utils.progress import say
from .bitstream import MAX_FRAMES
from .frames import Clip, parse_size, read_clip, write_clip

__all__ = ["CLIP", "FRAMES_READER", "prepare_frames", "read_source"]

#: The file that vouches for the cached frames.
CLIP = "clip.yaml"

_FRAME = re.compile(r"frame_\d{5}\.png")


#: Version of how frames are read from a source (2: a video file's real frames, never repeated
#: to reach a constant rate, at the kept frames' own rate: :func:`saicm.video.frames.read_clip`).
FRAMES_READER = 2


def _source_key(cfg: Any) -> str:
    """SHA-256 of what identifies the source cheaply: its resolved path, the size and
    modification time of the file (or of each image in the folder), and the frame selection."""
    path = Path(cfg.video).resolve()
    if path.is_dir():
        stats = [
            (f.name, f.stat().st_size, f.stat().st_mtime_ns)
            for f in sorted(path.iterdir())
            if f.is_file() and not f.name.startswith(".")
        ]
    else:
        st = path.stat()
        stats = [(path.name, st.st_size, st.st_mtime_ns)]
    # FRAMES_READER: a cache made by an older reader (a variable-rate clip read with repeated
    # frames) is checked against the source again, and refused if its frames differ
    key = [str(path), stats, cfg.frame_size, cfg.max_frames, cfg.frame_step, FRAMES_READER]
    return hashlib.sha256(repr(key).encode()).hexdigest()


def _digest(frames: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()


def _read_cache(out: Path) -> Clip | None:
    """The cached clip if ``clip.yaml`` (written last) vouches for every frame, else None."""
    try:
        meta = yaml.safe_load((out / CLIP).read_text())
    except (OSError, ValueError, yaml.YAMLError, RecursionError):  # RecursionError: crafted
        return None
    if not isinstance(meta, dict) or not {"frames", "sha256", "source"} <= set(meta):
        return None
    n = meta["frames"]
    if type(n) is not int or not 1 <= n <= MAX_FRAMES:
        return None
    files = [out / "frames" / f"frame_{i:05d}.png" for i in range(n)]
    if not all(f.is_file() for f in files):
        return None
    clip = read_clip(out / "frames", files=files)
    if _digest(clip.frames) != meta["sha256"]:
        raise SaicmError(f"{out / 'frames'}: the cached frames were changed since they were made")
    clip.fps = float(meta.get("fps") or 0.0)
    clip.source = str(meta["source"])
    return clip


def _clear_stale_frames(frames_dir: Path) -> None:
    """Remove a frames cache that was never completed (only saicm's own files are in it)."""
    if not frames_dir.exists():
        return
    foreign = [
        f.name
        for f in frames_dir.iterdir()
        if not (_FRAME.fullmatch(f.name) or (f.name.startswith(".") and ".part" in f.name))
    ]
    if foreign:
        raise SaicmError(
            f"{frames_dir}: an incomplete frames cache with files saicm did not write "
            f"({foreign[0]}): move them away or use a new run folder"
        )
    shutil.rmtree(frames_dir)


def read_source(cfg: Any, out: Path) -> Clip:
    """The run's clip: the complete cache, checked against the source, or the source itself
    (``clip.source`` unset: not cached yet)."""
    cached = _read_cache(out)
    if cached is None:
        say(f"reading the frames of {cfg.video}")
        clip = read_clip(cfg.video, parse_size(cfg.frame_size), cfg.max_frames, cfg.frame_step)
        clip.source = None
        return clip
    if Path(cfg.video).exists() and _source_key(cfg) != cached.source:
        fresh = read_clip(cfg.video, parse_size(cfg.frame_size), cfg.max_frames, cfg.frame_step)
        if _digest(fresh.frames) != _digest(cached.frames):
            raise SaicmError(
                f"{cfg.video}: not the frames this run learns (they changed since it started): "
                "use a new run folder"
            )
    return cached


def prepare_frames(
    cfg: Any, out: Path, source: Clip | None
) -> tuple[Clip, np.ndarray | None]:
    """The clip (``source``, cached as PNGs in the run with ``clip.yaml`` last, or the cache)
    and, for sa-nerv, its edge masks (cached)."""
    frames_dir = out / "frames"
    if source is None:
        clip = _read_cache(out)
        if clip is None:
            raise SaicmError(f"{frames_dir}: the frames cache is incomplete")
    elif source.source is None:
        clip = source
        with contextlib.suppress(FileNotFoundError):
            (out / CLIP).unlink()
        _clear_stale_frames(frames_dir)
        say(f"caching {len(clip.frames)} frames in {frames_dir}")
        write_clip(clip.frames, frames_dir)
        meta = {
            "frames": len(clip.frames),
            "height": int(clip.frames.shape[1]),
            "width": int(clip.frames.shape[2]),
            "fps": float(clip.fps),
            "sha256": _digest(clip.frames),
            "source": _source_key(cfg),
        }
        with atomic_path(out / CLIP) as tmp:
            tmp.write_text(yaml.safe_dump(meta, sort_keys=False))
    else:
        clip = source
    if cfg.loss != "sa-nerv":
        return clip, None
    from ..masks.build import build_masks
    from ..masks.io import read_mask
    from ..masks.sources import create_source

    mask_dir = out / "masks"
    say(f"edge masks ({cfg.mask_source}) of {len(clip.frames)} frames into {mask_dir}")
    summary = build_masks([frames_dir], mask_dir, create_source(cfg.mask_source), progress=False)
    if summary.failures:
        name, why = next(iter(summary.failures.items()))
        raise SaicmError(f"edge mask of {name} failed: {why}")
    masks = []
    for i in range(len(clip.frames)):
        f = frames_dir / f"frame_{i:05d}.png"
        m = mask_dir / f"{f.stem}.png"
        if not m.exists():
            raise SaicmError(f"{m}: mask missing")
        mask = read_mask(m, allow_empty=True)  # a flat frame has no edges
        if mask.shape != clip.frames.shape[1:3]:
            h, w = mask.shape
            raise SaicmError(f"{m}: mask is {w}x{h}, its frame {f.name} is not")
        masks.append(mask)
    if not any(m.any() for m in masks):
        raise SaicmError(f"{mask_dir}: every edge mask is empty (all off)")
    return clip, np.stack(masks)

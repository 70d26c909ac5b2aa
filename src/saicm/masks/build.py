"""The resumable, shardable dataset builder behind ``saicm masks``.

Every image ``<stem>.<ext>`` of the input gets ``<stem>.png`` (1-bit) in the output folder,
written atomically, then a line in ``manifest-<i>of<n>.jsonl`` (its shard's own file, so ranks
never write the same file). A re-run skips an image whose mask exists and whose manifest line
was made from the same image bytes (SHA-256) by the same source with the same settings; a
replaced image or another source or setting makes its mask again. A killed run loses at most
the images in flight (one batch). Under ``torchrun`` each rank takes the shard
``RANK/WORLD_SIZE`` and the GPU ``LOCAL_RANK``. Worker threads read, hash, decode and prepare
(``MaskSource.prepare``: SAM's resize) the next images while the model works on these. A
source that batches (SAM's batched generator) is given ``image_batch`` images at a time, then
each image's mask and manifest line are written as they would be one at a time.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from ..errors import SaicmError
from ..image import is_image_file, load_image
from ..utils.fingerprint import file_sha256
from ..utils.io import atomic_path, folder_lock, refuse_overwrite, remove_stale_parts_of
from .sources import MaskResult, MaskSource

__all__ = ["BuildSummary", "build_masks", "find_images", "read_manifest", "torchrun_shard"]

#: settings that change how fast masks are made, not what they are (the two SAM generators
#: make the same masks: tests/masks/test_amg.py), and the checkpoint file's hash (a record:
#: the weights that make the masks are keyed by ``model_sha256``, whatever file holds them)
_NOT_CONTENT = ("device", "points_per_batch", "generator", "checkpoint_sha256")

#: images read, decoded and prepared (resized for SAM) ahead of the model, in worker threads
#: (at least two batches)
PREFETCH = 4

#: the most images one batch may hold (``--image-batch``)
MAX_IMAGE_BATCH = 256


@dataclass
class BuildSummary:
    """What a build did: counts, failures (path -> reason), mean edge fraction, speed."""

    done: int = 0
    skipped: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    fractions: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def mean_fraction(self) -> float:
        return float(np.mean(self.fractions)) if self.fractions else float("nan")

    def lines(self) -> list[str]:
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        out = [f"images {self.done} made, {self.skipped} already done, {len(self.failures)} failed"]
        if self.done:  # nothing to say of fractions or speed when every mask was already there
            out.append(f"mean mask fraction {self.mean_fraction:.4f}, {rate:.2f} images/s")
        out += [f"failed: {p}: {why}" for p, why in self.failures.items()]
        return out


def find_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files from folders (not recursive) and file paths, in a stable order."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if is_image_file(f))
        else:
            files.append(p)  # a missing or bad file is reported when its turn comes
    stems = {}
    for f in files:
        if f.stem in stems and stems[f.stem] != f:
            raise SaicmError(f"{f} and {stems[f.stem]} would write the same mask {f.stem}.png")
        stems[f.stem] = f
    return files


def torchrun_shard() -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` when launched by torchrun, else None."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return None


def read_manifest(folder: str | Path) -> dict[str, dict]:
    """Every manifest entry of a mask folder (all shards), keyed by image stem."""
    entries: dict[str, dict] = {}
    for m in sorted(Path(folder).glob("manifest-*.jsonl")):
        if m.is_symlink() or not m.is_file():  # a pipe would never end; the build refuses it
            continue
        for line in m.read_text().splitlines():
            try:
                rec = json.loads(line)
                entries[Path(rec["mask"]).stem] = rec
            except (ValueError, KeyError, TypeError, RecursionError):  # a cut or bad line: redone
                continue
    return entries


def build_masks(
    inputs: Sequence[str | Path],
    out: str | Path,
    source: MaskSource,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    progress: bool = True,
    image_batch: int | None = None,
) -> BuildSummary:
    """Write a mask for every image of ``inputs`` that belongs to ``shard`` (index, count).

    Refused before any work (SaicmError): no input exists; a mask would replace an input or
    land in an input folder; the folder holds masks of another source or other settings, or
    PNG files without a manifest (unless ``overwrite``); another run holds the shard's lock;
    ``image_batch`` is not an integer from 1 to :data:`MAX_IMAGE_BATCH`.

    Arguments:
        inputs: folders (not recursive) and image files.
        out: the mask folder.
        source: what makes the masks.
        shard: ``(index, count)``: this run takes every ``count``-th image from ``index``.
        overwrite: make every mask again.
        progress: show a progress bar (plain lines when stderr is not a terminal).
        image_batch: images the source makes at once where it batches
            (:attr:`MaskSource.batchable`: SAM's batched generator, one image-encoder call);
            None: its :meth:`MaskSource.default_image_batch` (4 on a GPU, 1 on a CPU). Not a
            setting of the masks: the same masks whatever it is. A source that does not batch
            makes one image at a time.
    """
    index, count = shard
    if not 0 <= index < count:
        raise SaicmError(f"shard {index}/{count} is not valid (need 0 <= i < n)")
    if image_batch is not None and (
        not isinstance(image_batch, int)
        or isinstance(image_batch, bool)
        or not 1 <= image_batch <= MAX_IMAGE_BATCH
    ):
        raise SaicmError(
            f"image batch {image_batch!r}: expected an integer from 1 to {MAX_IMAGE_BATCH}"
        )
    out = Path(out)
    missing = [str(p) for p in inputs if not Path(p).exists()]
    if missing and len(missing) == len(inputs):
        raise SaicmError(f"{missing[0]}: no such image or folder")
    every = find_images(inputs)
    if not every and not missing:
        raise SaicmError(f"no images in {', '.join(str(p) for p in inputs)}")
    # Before any work: no mask may replace an input, nor land in an input folder.
    refuse_overwrite([*inputs, *every], [out / f"{p.stem}.png" for p in every])
    if out.exists() and not out.is_dir():
        raise SaicmError(f"{out}: not a folder")
    source.load()
    batch = (image_batch or source.default_image_batch()) if source.batchable else 1
    files = every[index::count]
    with folder_lock(out, f".saicm-masks-{index}of{count}.lock"):
        return _build(files, out, source, (index, count), overwrite, progress, batch)


def _content_settings(source_name: str, settings: dict) -> dict:
    plain = json.loads(json.dumps(settings, default=str))
    return {"source": source_name, **{k: v for k, v in plain.items() if k not in _NOT_CONTENT}}


#: Settings that sources gained after masks had been made without them, with the value those
#: masks were made with; None: not recorded then (the SAM weights' hash; the checkpoint path
#: was), so not compared.
_ADDED_SETTINGS = {"crop_n_layers": 0, "min_mask_region_area": 0, "model_sha256": None}


def _recorded_settings(rec: dict, want: dict) -> dict:
    """The content settings of a manifest record, with the settings it predates filled in."""
    have = _content_settings(rec.get("source", "?"), rec.get("settings", {}))
    for key, old in _ADDED_SETTINGS.items():
        if key in want and key not in have:
            have[key] = want[key] if old is None else old
    return have


def _check_folder(
    out: Path, done: dict[str, dict], source: MaskSource, files: list[Path]
) -> None:
    """Refuse a folder of masks from another source or other settings, or of masks saicm did
    not write (no manifest), instead of taking them for this run's finished work."""
    want = _content_settings(source.name, source.settings())
    for stem, rec in done.items():
        have = _recorded_settings(rec, want)
        if have != want:
            diff = sorted(
                (k for k in want.keys() | have.keys() if want.get(k) != have.get(k)),
                key=lambda k: (k != "source", k),
            )
            shown = ", ".join(f"{k}={have.get(k)!r} (now {want.get(k)!r})" for k in diff[:3])
            raise SaicmError(
                f"{out} holds masks made with other settings ({stem}.png: {shown}); "
                "choose another folder, or pass --overwrite to make them again"
            )
    # A folder with no manifest line at all was not made by saicm masks (with one, a mask
    # without its line is the one in flight when a run was killed: made again). Only this
    # shard's own targets count: other ranks of a torchrun write theirs at the same time.
    foreign = [p for p in files if (out / f"{p.stem}.png").exists()] if not done else []
    if foreign:
        raise SaicmError(
            f"{out} holds PNG files that saicm masks did not write (no manifest line for "
            f"{foreign[0].stem}.png); choose another folder, or pass --overwrite to replace them"
        )


@contextlib.contextmanager
def _drop_if_empty(manifest: Path) -> Iterator[None]:
    """Remove ``manifest`` at the end if it is empty (nothing made: every image failed, or the
    first write found a full disk), so that a run that made nothing leaves nothing."""
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if manifest.stat().st_size == 0:
                manifest.unlink()


def _append(log: BinaryIO, manifest: Path, line: str) -> None:
    """Write all of ``line`` to the unbuffered manifest ``log``, or raise naming ``manifest``.

    Raises:
        OSError: the write failed (a full disk), with ``manifest`` as its file name.
    """
    data = line.encode()
    try:
        while data:
            n = log.write(data)
            if not n:  # a short write: the device took nothing more
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            data = data[n:]
    except OSError as exc:  # a full disk: name the manifest, not a bare errno
        raise OSError(exc.errno, exc.strerror, str(manifest)) from None


@dataclass
class _Failure:
    reason: str


def _reason(path: Path, exc: Exception) -> str:
    msg = str(exc)
    return msg[len(str(path)) + 2 :] if msg.startswith(str(path)) else msg


def _prefetch(
    files: list[Path],
    out: Path,
    done: dict[str, dict],
    want: dict,
    source: MaskSource,
    ahead: int = PREFETCH,
) -> Iterator[tuple[Path, Path, str | None, object]]:
    """``(path, target, sha256, loaded)`` for each file, in order, read ``ahead`` in worker
    threads. ``loaded`` is ``(image, prepared)``, None when the mask is already made from the
    same image bytes with the same settings, or a ``_Failure``."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    def read(path: Path) -> tuple[Path, Path, str | None, object]:
        target = out / f"{path.stem}.png"
        try:
            sha = file_sha256(path)
        except OSError as exc:
            return path, target, None, _Failure(f"cannot read ({exc.strerror or exc})")
        old = done.get(path.stem, {})
        if (
            target.is_file()
            and old.get("image_sha256") == sha
            and _recorded_settings(old, want) == want
        ):
            return path, target, sha, None
        try:
            image = load_image(path)
            return path, target, sha, (image, source.prepare(image))
        except SaicmError as exc:
            return path, target, sha, _Failure(_reason(path, exc))

    with ThreadPoolExecutor(max_workers=2) as pool:
        pending: deque = deque()
        todo = iter(files)
        for path in todo:
            pending.append(pool.submit(read, path))
            if len(pending) >= ahead:
                break
        while pending:
            item = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(read, nxt))
            yield item


#: an image to make: ``(path, target, sha256, (image, prepared))``
_Item = tuple[Path, Path, str, tuple[np.ndarray, object]]


def _make(source: MaskSource, batch: list[_Item]) -> list[tuple[MaskResult | _Failure, float]]:
    """Each image's mask (or why it failed) and its seconds: the batch in one
    ``generate_batch`` call (each image's share of its time), or one call per image for a batch
    of one, or when the batch fails (so that one bad image fails alone)."""
    if len(batch) > 1:
        start = time.perf_counter()
        try:
            results = source.generate_batch(
                [image for *_, (image, _) in batch],
                [path for path, *_ in batch],
                [prepared for *_, (_, prepared) in batch],
            )
        except SaicmError:
            pass  # made again one at a time, below, to tell which image fails
        else:
            share = (time.perf_counter() - start) / len(batch)
            return [(r, share) for r in results]
    out: list[tuple[MaskResult | _Failure, float]] = []
    for path, _, _, (image, prepared) in batch:
        start = time.perf_counter()
        try:
            result = source(image, path) if prepared is None else source(image, path, prepared)
        except SaicmError as exc:
            out.append((_Failure(_reason(path, exc)), 0.0))
            continue
        out.append((result, time.perf_counter() - start))
    return out


def _write(
    log: BinaryIO,
    manifest: Path,
    source: MaskSource,
    item: _Item,
    result: MaskResult,
    seconds: float,
) -> float:
    """Write one image's mask (atomically), then its manifest line; returns its mask fraction."""
    path, target, sha, _ = item
    with atomic_path(target) as tmp:
        Image.fromarray(result.mask.astype(bool)).save(tmp, format="PNG")
    fraction = float(result.mask.mean())
    rec = {
        "image": str(path),
        "image_sha256": sha,
        "mask": str(target),
        "source": source.name,
        "settings": source.settings(),
        "fraction": round(fraction, 6),
        "count": result.count,
        "seconds": round(seconds, 3),
    }
    try:
        _append(log, manifest, json.dumps(rec) + "\n")
    except BaseException:  # without its line the mask would be taken for a foreign file
        target.unlink(missing_ok=True)
        raise
    return fraction


def _build(
    files: list[Path],
    out: Path,
    source: MaskSource,
    shard: tuple[int, int],
    overwrite: bool,
    progress: bool,
    image_batch: int,
) -> BuildSummary:
    from ..utils.progress import progress as progress_bar

    index, count = shard
    done = {} if overwrite else read_manifest(out)
    if not overwrite:
        _check_folder(out, done, source, files)
    manifest = out / f"manifest-{index}of{count}.jsonl"
    if manifest.is_symlink() or (manifest.exists() and not manifest.is_file()):
        # appending would write through a link, or wait forever on a pipe
        raise SaicmError(f"{manifest}: not a regular file (a manifest is a file saicm writes)")
    # a killed run's temporary files, of this shard's targets only (others may be writing)
    remove_stale_parts_of(out, (f"{p.stem}.png" for p in files))
    summary = BuildSummary()
    t0 = time.perf_counter()
    want = _content_settings(source.name, source.settings())
    desc = f"masks[{source.name}]" + (f" shard {index}/{count}" if count > 1 else "")
    # Unbuffered: a write that fails (a full disk) leaves nothing pending that closing the file
    # would try again, and raise again, without a file name.
    with manifest.open("ab+", buffering=0) as log, _drop_if_empty(manifest):
        log.seek(0, os.SEEK_END)
        if log.tell():  # a line cut by a kill must not swallow the next record
            log.seek(log.tell() - 1)
            if log.read(1) != b"\n":
                _append(log, manifest, "\n")
        bar = progress_bar(  # plain lines when stderr is not a terminal
            len(files), desc, "image", disable=not progress, position=index
        )

        def run(batch: list[_Item]) -> None:
            for item, (result, seconds) in zip(batch, _make(source, batch), strict=True):
                bar.update(1)
                if isinstance(result, _Failure):
                    summary.failures[str(item[0])] = result.reason
                    continue
                summary.fractions.append(_write(log, manifest, source, item, result, seconds))
                summary.done += 1

        batch: list[_Item] = []
        ahead = max(PREFETCH, 2 * image_batch)  # the next batch is decoded during this one
        for path, target, sha, loaded in _prefetch(files, out, done, want, source, ahead):
            if loaded is None:  # done before, by the same source and settings, from this image
                summary.skipped += 1
                bar.total -= 1  # the rate and the ETA count the images still to make
                if hasattr(bar, "refresh"):
                    bar.refresh()
            elif isinstance(loaded, _Failure):
                bar.update(1)
                summary.failures[str(path)] = loaded.reason
            else:
                batch.append((path, target, sha, loaded))
                if len(batch) == image_batch:
                    run(batch)
                    batch = []
        if batch:
            run(batch)
        bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary

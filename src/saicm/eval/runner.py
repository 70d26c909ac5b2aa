"""``saicm eval``: every image through every codec setting, every task on every decoded image.

Each finished (codec, setting, image) cell is a small JSON file under ``OUT/cells/``, written
atomically; a killed run continues where it stopped. A cell holds its *key* (:func:`cell_key`):
the image's content hash, the codec's fingerprint, each task's fingerprint and the cache format;
a cell whose key differs from the one this run would compute is computed again, whatever its
file name says. Ground truth is the COCO annotation file
when given, else *pseudo ground truth*: the task's own confident outputs (score >= 0.5) on the
uncompressed image, which every table then says.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SaicmError
from ..image import load_image, save_image
from ..utils.fingerprint import file_sha256
from ..utils.io import atomic_path, remove_stale_parts, remove_stale_parts_of
from .cells import matches_key, well_formed
from .codecs import Codec
from .metrics import coco_map, coco_map_resampled, ms_ssim, pseudo_ground_truth, psnr
from .tasks import Task

__all__ = ["CACHE_FORMAT", "Point", "cell_key", "evaluate"]

ORIGINAL = "_original"

#: Version of the layout of a cached cell; cells of another version are computed again.
CACHE_FORMAT = 3  # 3: cells hold PSNR and MS-SSIM and are filed by coder, not by label


@dataclass
class Point:
    """One (codec, setting) aggregated over the images."""

    codec: str
    setting: str
    key: str  # names the cached cells and decoded images of this setting
    images: int
    missing: int
    bpp: float
    encode_s: float
    decode_s: float
    metrics: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    #: bootstrap replicates of each COCO mAP (the same image draws for every point)
    replicates: dict[str, list[float]] = field(default_factory=dict)
    #: mean PSNR (dB, inf for lossless) and mean MS-SSIM of the decoded images against the
    #: originals, as ``compressai.utils.eval_model`` reports them; NaN where no image has one
    #: (MS-SSIM needs a shorter side of 161 pixels: :data:`~saicm.eval.metrics.MS_SSIM_MIN_SIDE`)
    psnr: float = math.nan
    ms_ssim: float = math.nan
    #: the codec's own name (``jpeg``, ``saicm``), whatever label the curve carries: the cells
    #: of a (coder, setting) are filed under it, so a relabelled codec reuses them
    coder: str = ""


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9.@_-]+", "_", s)


def _file_stem(stem: str) -> str:
    """``stem`` as a file name with room for a suffix: any name a file system allows fits."""
    if len(stem.encode()) <= 200 and not stem.startswith("."):
        return stem
    return f"{_safe(stem)[:100]}-{hashlib.sha256(stem.encode()).hexdigest()[:16]}"


def cell_path(out: Path, codec: str, key: str, stem: str) -> Path:
    """The cached result of one image through one (codec, setting key)."""
    return out / "cells" / _safe(codec) / _safe(key) / f"{_file_stem(stem)}.json"


def decoded_path(out: Path, codec: str, key: str, stem: str) -> Path:
    """A decoded image kept for the report."""
    return out / "decoded" / _safe(codec) / _safe(key) / f"{_file_stem(stem)}.png"


def cell_key(
    image_sha256: str,
    codec: Codec | None,
    setting: str,
    tasks: list[Task],
    codec_fingerprint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What determines a cell: the image's bytes, the codec and its setting (its library version,
    or the model's weights hash), each task's model (architecture, weights hash, thresholds), and
    :data:`CACHE_FORMAT` (``codec_fingerprint``: the codec's, when already computed). The ground
    truth is not in it: no cell holds a score, every mAP is computed again from the cells'
    predictions on each run."""
    return {
        "format": CACHE_FORMAT,
        "image": image_sha256,
        "codec": (
            ORIGINAL
            if codec is None
            else codec_fingerprint
            if codec_fingerprint is not None
            else codec.fingerprint(setting)
        ),
        "tasks": {t.name: t.fingerprint() for t in tasks},
    }


def _mean(values: list[float]) -> float:
    """The mean of the defined (non-NaN) values; NaN if none (inf stays inf: lossless)."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def _load_gt(annotations: str | Path, images: list[Path]) -> tuple[dict, dict[str, int], list[str]]:
    """COCO annotations, the image id of each image stem, and the images it lacks (matched by
    whole relative path, an ambiguous base name refused: :func:`saicm.data.coco.match_images`)."""
    from ..data.coco import load_coco, match_images

    gt = load_coco(annotations)
    by_path, missing = match_images(gt, images, annotations)
    return gt, {p.stem: i for p, i in by_path.items()}, [p.name for p in missing]


def _run_cell(
    codec: Codec | None, setting: str, image: np.ndarray, tasks: list[Task], keep: Path | None
) -> dict[str, Any]:
    if codec is None:
        decoded, rec = image, {"bytes": 0, "encode_s": 0.0, "decode_s": 0.0}
    else:
        coded = codec.code(image, setting)
        decoded = coded.decoded
        rec = {"bytes": coded.nbytes, "encode_s": coded.encode_s, "decode_s": coded.decode_s}
    if decoded.shape != image.shape:
        raise SaicmError(f"decoded image is {decoded.shape}, expected {image.shape}")
    rec["pixels"] = int(image.shape[0] * image.shape[1])
    if codec is not None:
        rec["psnr"] = psnr(image, decoded)
        rec["ms_ssim"] = ms_ssim(image, decoded)
    rec["predictions"] = {t.name: t.predict(decoded) for t in tasks}
    if keep is not None:
        remove_stale_parts(keep)  # a killed run's temporary file (the folder is this run's)
        save_image(decoded, keep)
    return rec


def _label_map(gt: dict, task: Task, annotations: str | Path, image_ids: Any) -> Any:
    """The task's category ids -> the file's, by name (:func:`saicm.data.coco.match_categories`),
    said once on the console where the numberings differ; None for a task that the file does not
    score (privacy, panoptic: against the originals)."""
    if not task.iou_types:
        return None
    import warnings

    from ..data.coco import match_categories
    from ..errors import SaicmWarning

    labels = match_categories(gt, task.categories, task.name, annotations, image_ids)
    if labels.renumbered:
        warnings.warn(f"{annotations}: {labels.note}", SaicmWarning, stacklevel=3)
    return labels


_WORKER_TASKS: list[Task] = []


def _init_worker(specs: list[tuple[str, dict[str, Any]]]) -> None:
    import torch

    from .tasks import create_task

    torch.set_num_threads(1)  # one core per worker: the pool is the parallelism
    _WORKER_TASKS[:] = [create_task(name, **opts) for name, opts in specs]


def _worker_cell(args: tuple) -> tuple[dict[str, Any] | None, str | None]:
    codec, setting, image, keep = args
    try:
        return _run_cell(codec, setting, image, _WORKER_TASKS, keep), None
    except SaicmError as exc:
        return None, str(exc)


def _same_setting(setting: str) -> str:
    """A setting as compared for duplicates: an integer by its value (``010``, ``+10``: 10)."""
    text = setting.strip()
    sign = text[:1] if text[:1] in ("+", "-") else ""
    digits = text[len(sign) :]
    if digits.isdigit() and len(digits) < 20:
        return str(int(digits) * (-1 if sign == "-" else 1))
    return text


def evaluate(
    images: list[Path],
    codecs: list[Codec],
    tasks: list[Task],
    out: str | Path,
    annotations: str | Path | None = None,
    keep_images: int = 3,
    progress: bool = True,
    workers: int = 1,
    bootstrap: int = 0,
) -> dict[str, Any]:
    """Run (or resume) the evaluation; return ``{"points": [...], "ground_truth": ...}``.

    Arguments:
        images: the image files.
        codecs: codecs, each with its settings.
        tasks: recognition tasks.
        out: report folder (cells, decoded examples, results).
        annotations: COCO annotations of ``images``; None for pseudo ground truth.
        keep_images: decoded images kept for the report (the first ``keep_images`` images).
        workers: processes coding and recognising images in parallel (1: in this process).
        bootstrap: image sets drawn with replacement (seeded, the same for every point) on which
            each COCO mAP is computed again, for intervals of the BD-rates; 0: none.

    Raises:
        SaicmError: no images, two images of one name, a label given to two codecs or a
            setting given twice in one (each label is one curve, each setting one point), ...
    """
    from ..utils.progress import progress as progress_bar
    from ..utils.progress import say

    out = Path(out)
    if not images:
        raise SaicmError("no images to evaluate")
    labels: dict[str, Codec] = {}
    for c in codecs:  # a point is (label, setting): two of one would overwrite each other
        if c.name == ORIGINAL:
            raise SaicmError(f"--codec {c.name}: a label saicm keeps for the uncompressed images")
        if c.name in labels:
            raise SaicmError(
                f"--codec {c.name}: the label names two codecs; give each curve its own label "
                f"(LABEL=SPEC) and all of a codec's settings in one --codec, e.g. {c.name}:A,B"
            )
        labels[c.name] = c
        same = [_same_setting(s) for s in c.settings]  # 010 and +10 are 10
        twice = sorted({s for s, n in zip(c.settings, same, strict=True) if same.count(n) > 1})
        if twice:
            raise SaicmError(f"--codec {c.name}: the setting {twice[0]} is given twice")
    if bootstrap < 0:
        raise SaicmError(f"bootstrap {bootstrap}: a number of image draws, 0 or more")
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        raise SaicmError("two images share a file name stem")
    loaded: dict[str, np.ndarray] = {}
    hashes: dict[str, str] = {}
    bad_images: dict[str, str] = {}
    for p in images:
        try:
            loaded[p.stem] = load_image(p)
            hashes[p.stem] = file_sha256(p)  # the cells' key: the bytes, not the name
        except SaicmError as exc:
            bad_images[p.stem] = str(exc)
        except OSError as exc:
            loaded.pop(p.stem, None)
            bad_images[p.stem] = f"{p}: cannot read ({exc.strerror or exc})"
    ok = [p for p in images if p.stem in loaded]
    if not ok:
        raise SaicmError(f"none of the images can be read ({next(iter(bad_images.values()))})")
    if annotations is not None:  # a bad annotation file fails before any cell is computed
        gt, ids, _ = _load_gt(annotations, ok)
        labels = {t.name: _label_map(gt, t, annotations, ids.values()) for t in tasks}

    jobs: list[tuple[Codec | None, str]] = [(None, ORIGINAL)]
    jobs += [(c, s) for c in codecs for s in c.settings]
    cells: dict[tuple[str, str], dict[str, dict]] = {}
    errors: dict[tuple[str, str], list[str]] = {}
    cache_keys: dict[tuple[str, str], str] = {}
    coders: dict[tuple[str, str], str] = {}
    todo = []  # (codec, setting, key, image, cell path, keep path, cell key) of cells to compute
    shared: dict[Path, list[tuple[str, str]]] = {}  # a cell asked for under several labels
    for codec, setting in jobs:
        cname = codec.name if codec else ORIGINAL
        coder = codec.coder_name if codec else ORIGINAL  # files: the coder's, not the label's
        key = (cname, setting)
        cells[key], errors[key], coders[key] = {}, [], coder
        reason = codec.available() if codec else None
        if reason:
            errors[key].append(f"{cname} unavailable: {reason}")
            cache_keys[key] = setting
            continue
        cache_keys[key] = codec.cache_key(setting) if codec else setting
        fingerprint = codec.fingerprint(setting) if codec else None  # once: it may run ffmpeg
        for i, p in enumerate(ok):
            path = cell_path(out, coder, cache_keys[key], p.stem)
            if path in shared:  # the same coder, setting and image under another label
                shared[path].append(key)
                continue
            ckey = cell_key(hashes[p.stem], codec, setting, tasks, fingerprint)
            if path.is_file():  # not a folder or a pipe (reading one would wait forever)
                try:
                    rec = json.loads(path.read_text())
                except (ValueError, RecursionError):  # a cell cut by a crash: computed again
                    rec = {}
                if matches_key(rec, ckey) and well_formed(
                    rec, loaded[p.stem].shape[:2], codec is not None, tasks
                ):
                    cells[key][p.stem] = rec
                    shared[path] = [key]
                    continue  # else another image, codec, task model or format: again
            shared[path] = [key]
            keep = decoded_path(out, coder, cache_keys[key], p.stem)
            todo.append((codec, setting, key, p, path, keep if i < keep_images else None, ckey))
            if i >= keep_images:
                keep.unlink(missing_ok=True)  # an old image's decoding must not be shown

    def finish(item: tuple, rec: dict[str, Any] | None, err: str | None) -> None:
        _, _, _, p, path, keep, ckey = item
        if rec is None:
            for key in shared[path]:
                errors[key].append(f"{p.name}: {err}")
            if keep is not None:
                keep.unlink(missing_ok=True)
            return
        rec["key"] = ckey
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(rec))
        for key in shared[path]:
            cells[key][p.stem] = rec

    # a cell read from the cache serves every label that asks for it
    for keys in shared.values():
        for key in keys[1:]:
            cells[key].update({s: r for s, r in cells[keys[0]].items() if s not in cells[key]})

    found = len(shared) - len(todo)  # cell files, each counted once however many labels use it
    if progress and found:  # a resumed run says what it keeps before it computes the rest
        say(f"eval: {found} cells from {out / 'cells'}, {len(todo)} to compute")
    by_folder: dict[Path, list[str]] = {}
    for item in todo:
        by_folder.setdefault(item[4].parent, []).append(item[4].name)
    for folder, names in by_folder.items():  # a killed run's temporary files (this run's folder)
        remove_stale_parts_of(folder, names)
    bar = progress_bar(len(todo), "eval", "cell", disable=not progress)  # plain lines off a tty
    if workers > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(
            workers,
            mp_context=get_context("spawn"),
            initializer=_init_worker,
            initargs=([t.spec for t in tasks],),
        ) as pool:
            args = [(c, s, loaded[p.stem], keep) for c, s, _, p, _, keep, _ in todo]
            for item, (rec, err) in zip(todo, pool.map(_worker_cell, args), strict=True):
                finish(item, rec, err)
                bar.update(1)
    else:
        for item in todo:
            codec, setting, _, p, _, keep, _ = item
            try:
                finish(item, _run_cell(codec, setting, loaded[p.stem], tasks, keep), None)
            except SaicmError as exc:
                finish(item, None, str(exc))
            bar.update(1)
    bar.close()

    # Ground truth, real or pseudo, per task.
    if annotations is not None:
        gt, ids, not_annotated = _load_gt(annotations, ok)
        sizes = {im["id"]: (im.get("height"), im.get("width")) for im in gt["images"]}
        for p in ok:  # annotations drawn on other pixels (e.g. before an EXIF turn) score nothing
            want, got = sizes.get(ids.get(p.stem)), loaded[p.stem].shape[:2]
            if p.stem in ids and want and None not in want and tuple(want) != got:
                del ids[p.stem]
                bad_images[p.stem] = (
                    f"{p.name}: annotated as {want[1]}x{want[0]}, the image is {got[1]}x{got[0]}"
                    " (saicm applies the EXIF orientation)"
                )
        gts = {t.name: gt for t in tasks}
        gt_note = f"COCO annotations {annotations}"
        notes = sorted({m.note for m in labels.values() if m is not None})
        if notes:
            gt_note += f"; {'; '.join(notes)}"
        if not_annotated:
            gt_note += f" ({len(not_annotated)} image(s) without annotations left out)"
            for name in not_annotated:
                bad_images[Path(name).stem] = f"{name}: not in {annotations}"
    else:
        ids = {s: i + 1 for i, s in enumerate(p.stem for p in ok)}
        sizes = {ids[s]: loaded[s].shape[:2] for s in ids}
        original = cells[(ORIGINAL, ORIGINAL)]
        gts = {
            t.name: pseudo_ground_truth(
                {ids[s]: original[s]["predictions"][t.name] for s in ids if s in original}, sizes
            )
            for t in tasks
            if t.iou_types
        }
        gt_note = "pseudo ground truth: each task's outputs >= 0.5 on the uncompressed images"

    # One set of draws for all points: BD-rate replicates compare curves on the same images.
    draws = (
        np.random.default_rng(0).choice(sorted(ids.values()), (bootstrap, len(ids)))
        if bootstrap
        else []
    )
    points = []
    # COCO scoring of every point on every draw: minutes for a large study, so it counts too
    scoring = progress_bar(len(cells), "score", "point", disable=not (progress and bootstrap))
    for (cname, setting), per_image in cells.items():
        used = [s for s in per_image if s in ids]
        bits = sum(8 * per_image[s]["bytes"] for s in used)
        pixels = sum(per_image[s]["pixels"] for s in used)
        metrics: dict[str, float] = {}
        replicates: dict[str, list[float]] = {}
        original = cells[(ORIGINAL, ORIGINAL)]
        for t in tasks:
            if not t.iou_types:  # scored against the task's outputs on the originals
                both = [s for s in used if s in original]
                own = t.score(
                    [original[s]["predictions"][t.name] for s in both],
                    [per_image[s]["predictions"][t.name] for s in both],
                )
                metrics.update({f"{t.name}/{k}": v for k, v in own.items()})
                continue
            results = [
                {**r, "image_id": ids[s]}
                for s in used
                for r in per_image[s]["predictions"].get(t.name, [])
            ]
            if annotations is not None and labels[t.name] is not None:
                results = labels[t.name].apply(results)  # in the file's numbering
            for iou in t.iou_types:
                m = (
                    coco_map(gts[t.name], results, iou, [ids[s] for s in used])
                    if used
                    else {"map": math.nan, "map50": math.nan, "objects": 0}
                )
                prefix = t.name if iou == "bbox" else f"{t.name}-mask"
                metrics[f"{prefix}/map"] = m["map"]
                metrics[f"{prefix}/map50"] = m["map50"]
                metrics[f"{prefix}/objects"] = m["objects"]
                if bootstrap and used:
                    mine = {ids[s] for s in used}  # an image without a cell stays out, as above
                    replicates[f"{prefix}/map"] = coco_map_resampled(
                        gts[t.name], results, [[i for i in d if i in mine] for d in draws], iou
                    ).tolist()
        n = max(len(used), 1)
        points.append(
            Point(
                cname,
                setting,
                cache_keys[(cname, setting)],
                len(used),
                len(ids) - len(used),
                bits / pixels if pixels else math.nan,
                sum(per_image[s]["encode_s"] for s in used) / n,
                sum(per_image[s]["decode_s"] for s in used) / n,
                metrics,
                errors[(cname, setting)],
                replicates,
                _mean([per_image[s].get("psnr", math.nan) for s in used]),
                _mean([per_image[s].get("ms_ssim", math.nan) for s in used]),
                coders[(cname, setting)],
            )
        )
        scoring.update(1)
    scoring.close()
    return {
        "points": points,
        "ground_truth": gt_note,
        "bad_images": bad_images,
        "images": [p.name for p in ok],
        "tasks": [t.name for t in tasks],
        "cache": {
            "format": CACHE_FORMAT,
            "image_sha256": {p.name: hashes[p.stem] for p in ok},
            "tasks": {t.name: t.fingerprint() for t in tasks},
        },
    }

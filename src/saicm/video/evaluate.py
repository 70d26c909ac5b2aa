"""``saicm video eval``: NeRV / SA-NeRV bitstreams against HEVC and VVC on one clip.

For every ``.snv`` file: decode (timed: frames per second), PSNR against the original frames,
bpp from the file, and detection mAP of the bundled COCO detector on the decoded frames against
pseudo ground truth (its confident detections on the original frames), or against COCO-style
annotations of the frames when given. HEVC (x265) and VVC (vvenc) code the same frames as a
video (inter prediction, one file per QP) for anchors at similar rates.
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SaicmError
from ..eval.codecs import ffmpeg_exe
from ..eval.metrics import coco_map, pseudo_ground_truth, psnr
from ..utils.io import atomic_path
from .bitstream import decode_frames, read_snv

__all__ = ["VideoPoint", "code_video", "evaluate_video", "psnr"]

#: ffmpeg encoders of the video anchors: encoder, how a QP is passed, format, extra options,
#: largest QP (HEVC 51, VVC 63).
ANCHORS = {
    "hevc": ("libx265", ["-x265-params", "qp={}:log-level=error"], "hevc", (), 51),
    "vvc": ("libvvenc", ["-qp", "{}"], "vvc", ("-preset", "faster"), 63),
}


@dataclass
class VideoPoint:
    """One coded version of the clip."""

    codec: str
    setting: str
    bpp: float
    psnr: float
    decode_fps: float
    metrics: dict[str, float] = field(default_factory=dict)


def code_video(
    frames: np.ndarray, codec: str, qp: int, fps: float = 30.0
) -> tuple[np.ndarray, int, float]:
    """Code ``frames`` with an ffmpeg anchor (``hevc`` or ``vvc``, 4:2:0, constant QP): the
    decoded frames, the bitstream's bytes and the decode time in seconds."""
    if codec not in ANCHORS:
        raise SaicmError(f"video anchor {codec!r}: choose {', '.join(ANCHORS)}")
    encoder, param, fmt, extra, top = ANCHORS[codec]
    if type(qp) is not int or not 0 <= qp <= top:
        raise SaicmError(f"{codec} QP {qp!r}: an integer in [0, {top}]")
    exe = ffmpeg_exe()
    t, h, w, _ = frames.shape
    ph, pw = h % 2, w % 2
    src = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else frames
    with tempfile.TemporaryDirectory(prefix="saicm-") as tmp:
        bits = Path(tmp) / f"clip.{fmt}"
        enc = [
            exe, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", f"{w + pw}x{h + ph}", "-r", f"{fps or 30.0:g}", "-i", "-",
            "-c:v", encoder, *(p.format(qp) for p in param), *extra,
            "-pix_fmt", "yuv420p", "-f", fmt, str(bits),
        ]  # fmt: skip
        r = subprocess.run(enc, input=np.ascontiguousarray(src).tobytes(), capture_output=True)
        if r.returncode or not bits.exists() or bits.stat().st_size == 0:
            why = r.stderr.decode(errors="replace").strip()[-300:] or "no output"
            raise SaicmError(f"{codec} encoder failed (exit {r.returncode}): {why}")
        start = time.perf_counter()
        dec = [exe, "-v", "error", "-i", str(bits), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        r = subprocess.run(dec, capture_output=True)
        seconds = time.perf_counter() - start
        size = (h + ph) * (w + pw) * 3
        if r.returncode or not r.stdout or len(r.stdout) % size:
            why = r.stderr.decode(errors="replace").strip()[-300:] or "short output"
            raise SaicmError(f"{codec} decoder failed (exit {r.returncode}): {why}")
        decoded = np.frombuffer(r.stdout, np.uint8).reshape(-1, h + ph, w + pw, 3)[:, :h, :w]
        if len(decoded) != t:
            raise SaicmError(f"{codec} decoded {len(decoded)} of {t} frames")
        return decoded, bits.stat().st_size, seconds


def evaluate_video(
    original: np.ndarray,
    streams: dict[str, str | Path],
    anchors: Sequence[tuple[str, int]] = (),
    fps: float = 30.0,
    annotations: dict[str, Any] | None = None,
    detect: bool = True,
    progress: bool = True,
    frame_ids: Sequence[int] | None = None,
    source: str = "the annotations",
) -> list[VideoPoint]:
    """Score ``.snv`` files (label -> file) and anchors (codec, QP) on the ``original`` clip.

    Arguments:
        original: the clip the files code, ``(T, H, W, 3)`` uint8.
        streams: label -> ``.snv`` file.
        anchors: ``(hevc|vvc, qp)`` pairs.
        annotations: COCO dataset whose image ids are frame numbers (``frame_ids``); None for
            pseudo ground truth from the original frames. Its categories are matched to the
            detector's by name (:func:`saicm.data.coco.match_categories`).
        detect: run the detector (mAP); off for a quick rate-PSNR table.
        frame_ids: the annotation image id of each frame of ``original``: its number in the
            source video, 1-based (``1 + k * step`` for every ``step``-th frame); default
            ``1..T``.
        source: the annotation file's name, for messages.

    Raises:
        SaicmError: a file that codes other frames; annotations of none of the frames, drawn
            on frames of another size, or of categories the detector does not know.
    """
    from ..utils.progress import progress as progress_bar

    t, h, w, _ = original.shape
    coded: list[tuple[str, str, np.ndarray, int, float]] = []
    for label, path in streams.items():
        stream = read_snv(path)
        c = stream.net.config
        if (stream.frames, c.height, c.width) != (t, h, w):
            raise SaicmError(
                f"{path}: codes {stream.frames} frames of {c.width}x{c.height}, "
                f"the clip has {t} of {w}x{h} (same --frame-size, --max-frames and --frame-step "
                "as in training?)"
            )
        start = time.perf_counter()
        frames = decode_frames(stream.net, stream.frames)
        coded.append((label, Path(path).name, frames, stream.nbytes, time.perf_counter() - start))
    for codec, qp in anchors:
        frames, nbytes, seconds = code_video(original, codec, qp, fps)
        coded.append((codec, str(qp), frames, nbytes, seconds))

    detector = labels = None
    if detect:
        from ..eval.tasks import create_task

        detector = create_task("detection")
        ids = list(range(1, t + 1)) if frame_ids is None else [int(i) for i in frame_ids]
        if len(ids) != t:
            raise SaicmError(f"{len(ids)} frame numbers for {t} frames")
        if annotations is None:
            preds = {i: detector.predict(f) for i, f in zip(ids, original, strict=True)}
            annotations = pseudo_ground_truth(preds, {i: (h, w) for i in ids})
        else:
            labels, ids = _check_annotations(annotations, ids, (h, w), detector, source)
    points = []
    bar = progress_bar(  # plain lines when stderr is not a terminal
        len(coded), "video eval", "version", iterable=coded, disable=not progress
    )
    for label, setting, frames, nbytes, seconds in bar:
        point = VideoPoint(
            label, setting, 8 * nbytes / (t * h * w), psnr(original, frames), t / seconds
        )
        if detector is not None and annotations is not None:
            results = [
                {**p, "image_id": i}
                for i, f in zip(ids, frames, strict=True)
                if i is not None
                for p in detector.predict(f)
            ]
            if labels is not None:
                results = labels.apply(results)  # in the file's category numbering
            point.metrics = coco_map(annotations, results, image_ids=[i for i in ids if i])
        points.append(point)
    return points


def _check_annotations(
    annotations: dict[str, Any],
    ids: list[int],
    size: tuple[int, int],
    detector: Any,
    source: str,
) -> tuple[Any, list[int | None]]:
    """The detector's labels in the file's numbering, and each frame's image id (None for a
    frame the file does not list: left out of the mAP, as every frame would count as missed).

    Raises:
        SaicmError: the file lists none of the frames, lists a frame at another size than the
            frames read (``--frame-size`` scales them), or names categories the detector lacks.
    """
    import warnings

    from ..data.coco import match_categories
    from ..errors import SaicmWarning

    listed = {im["id"]: im for im in annotations["images"]}
    mine = [i if i in listed else None for i in ids]
    if not any(mine):
        raise SaicmError(
            f"{source}: lists none of the {len(ids)} frames read (image ids are frame numbers "
            f"in the source video, 1-based: {ids[0]}..{ids[-1]})"
        )
    h, w = size
    for i in (i for i in mine if i is not None):
        want = (listed[i].get("height"), listed[i].get("width"))
        if None not in want and tuple(want) != (h, w):
            raise SaicmError(
                f"{source}: frame {i} is annotated as {want[1]}x{want[0]}, the frames read are "
                f"{w}x{h} (give the --frame-size the annotations were drawn at)"
            )
    labels = match_categories(annotations, detector.categories, "detection", source, ids)
    if labels.renumbered:
        warnings.warn(f"{source}: {labels.note}", SaicmWarning, stacklevel=3)
    return labels, mine


def write_video_report(points: list[VideoPoint], out: str | Path, title: str) -> dict[str, Path]:
    """``results.json``, ``results.md`` (a table) and ``map.png`` (mAP against bpp)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "results.json", "md": out / "results.md"}
    with atomic_path(files["json"]) as tmp:
        tmp.write_text(
            json.dumps({"title": title, "points": [asdict(p) for p in points]}, indent=1)
        )
    lines = [
        f"### {title}",
        "",
        "| codec | setting | bpp | PSNR (dB) | mAP | mAP@.5 | decode fps |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in points:
        m = p.metrics
        lines.append(
            f"| {p.codec} | {p.setting} | {p.bpp:.4f} | {p.psnr:.2f} | "
            f"{m.get('map', math.nan):.3f} | {m.get('map50', math.nan):.3f} | {p.decode_fps:.1f} |"
        )
    if points and points[0].metrics:
        lines += ["", f"Objects in the ground truth: {points[0].metrics.get('objects', 0)}."]
    with atomic_path(files["md"]) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    if any(math.isfinite(p.metrics.get("map", math.nan)) for p in points):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
        for codec in dict.fromkeys(p.codec for p in points):
            pts = sorted((p.bpp, p.metrics["map"]) for p in points if p.codec == codec)
            ax.plot(*zip(*pts, strict=True), marker="o", label=codec)
        ax.set_xlabel("bits per pixel (from the files)")
        ax.set_ylabel("detection mAP")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # no curve (every point n/a): no legend
            ax.legend(fontsize=8)
        fig.tight_layout()
        files["png"] = out / "map.png"
        with atomic_path(files["png"]) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
    return files

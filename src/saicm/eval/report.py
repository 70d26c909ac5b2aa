"""Results files, rate-accuracy plots, BD-rate tables and the HTML report of ``saicm eval``."""

from __future__ import annotations

import csv
import html
import json
import math
import urllib.parse
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..utils.io import atomic_path
from .metrics import MIN_OVERLAP, bd_rate, bd_rate_interval, bd_rate_replicates, curve_overlap
from .runner import ORIGINAL, Point, _safe, cell_path, decoded_path

__all__ = ["bd_table", "console_table", "write_report"]

#: Curves drawn thin: the anchors, not the learned codecs under study.
_CONVENTIONAL = {"jpeg", "webp", "avif", "jpeg2000", "jxl", "hevc", "vvc", "png"}


def _href(path: Path) -> str:
    """A relative path as the value of an HTML ``src``/``href`` attribute: percent-encoded
    (``?``, ``#``, ``%``, ``:``, spaces, quotes, non-ASCII as UTF-8) and HTML-escaped, so that
    a browser finds the file whatever its name."""
    return html.escape(urllib.parse.quote(path.as_posix(), safe="/"), quote=True)


def _curves(
    points: list[Point], metric: str, replicates: bool = False
) -> dict[str, tuple[list, list]]:
    """Per codec: (bpp values, ``metric`` values), or with ``replicates`` (bpp values, bootstrap
    replicates of ``metric``) for the codecs whose every point has them."""
    curves: dict[str, tuple[list, list]] = {}
    for p in points:
        if p.codec == ORIGINAL or not math.isfinite(p.metrics.get(metric, math.nan)):
            continue
        r, a = curves.setdefault(p.codec, ([], []))
        r.append(p.bpp)
        a.append(p.replicates.get(metric) if replicates else p.metrics[metric])
    if replicates:
        return {c: v for c, v in curves.items() if all(x is not None for x in v[1])}
    return curves


def bd_table(
    points: list[Point], metric: str, anchor: str, min_overlap: float = MIN_OVERLAP
) -> list[dict[str, Any]]:
    """BD-rate (%) of every codec against ``anchor`` on ``metric``, with its 95% bootstrap
    interval (``interval``: [low, high], or None) where the points carry replicates, and the
    share of the accuracy range the two curves share (``overlap``); below ``min_overlap`` no
    BD-rate is given and ``note`` says why (:func:`saicm.eval.metrics.bd_rate`)."""
    curves = _curves(points, metric)
    reps = _curves(points, metric, replicates=True)
    rows = []
    for codec, curve in curves.items():
        if codec == anchor:
            continue
        if anchor not in curves:
            rows.append({"codec": codec, "bd_rate": None, "note": f"no {anchor} curve"})
            continue
        value, why = bd_rate(curves[anchor], curve, min_overlap=min_overlap)
        overlap = round(curve_overlap(curves[anchor], curve), 4)
        row = {"codec": codec, "bd_rate": value, "note": why, "overlap": overlap}
        if value is not None and anchor in reps and codec in reps:
            row["interval"] = bd_rate_interval(reps[anchor], reps[codec], min_overlap=min_overlap)
            if row["interval"] is None:  # the estimate stands, but most image draws refuse it
                given, n = bd_rate_replicates(reps[anchor], reps[codec], min_overlap=min_overlap)
                row["note"] = (
                    f"no interval: {len(given)} of {n} draws of the images give a BD-rate "
                    f"(the rest overlap on less than {min_overlap:.0%}); read it as unstable"
                )
        elif value is not None and reps:  # bootstrapped, but not every point of the two curves
            row["note"] = f"no interval: a point of {codec} or {anchor} has no bootstrap replicates"
        rows.append(row)
    return rows


def _plot(points: list[Point], metric: str, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for codec, (r, a) in sorted(_curves(points, metric).items()):
        order = sorted(range(len(r)), key=r.__getitem__)
        ax.plot(
            [r[i] for i in order],
            [a[i] for i in order],
            marker="o",
            lw=1.2 if codec in _CONVENTIONAL else 2.2,
            label=codec,
        )
    ref = [p for p in points if p.codec == ORIGINAL]
    if ref and math.isfinite(ref[0].metrics.get(metric, math.nan)):
        ax.axhline(ref[0].metrics[metric], color="grey", ls="--", lw=1, label="uncompressed")
    ax.set_xlabel("bits per pixel (from the files)")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no curve (every point n/a): no legend
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_report(
    result: dict[str, Any],
    out: str | Path,
    anchors: Sequence[str] = ("vvc",),
    min_overlap: float = MIN_OVERLAP,
) -> dict[str, Path]:
    """Write ``results.json``, ``results.csv``, ``<metric>.png`` plots and ``report.html``.

    Arguments:
        anchors: codecs every curve gets a BD-rate against (VVC intra, as MPEG VCM does, and for
            example the plain-MSE model of the same network).
        min_overlap: least share of their accuracy range two curves must share for a BD-rate
            (:data:`saicm.eval.metrics.MIN_OVERLAP`); recorded in ``results.json``.
    """
    out = Path(out)
    anchors = list(anchors)
    points: list[Point] = result["points"]
    metrics = sorted(
        {
            k
            for p in points
            for k in p.metrics
            if k.endswith(("map", "face_recall", "identity_kept"))
        }
    )
    # BD-rate for accuracies only: for face recall, lower is the goal (privacy).
    tables = {
        a: {m: bd_table(points, m, a, min_overlap) for m in metrics if m.endswith(("map", "pq"))}
        for a in anchors
    }
    files = {"json": out / "results.json", "csv": out / "results.csv", "html": out / "report.html"}
    with atomic_path(files["json"]) as tmp:
        tmp.write_text(
            json.dumps(
                {
                    **{k: v for k, v in result.items() if k != "points"},
                    "anchors": anchors,
                    "bd_min_overlap": min_overlap,
                    "points": [asdict(p) for p in points],
                    "bd_rate": tables,
                },
                indent=1,
                default=str,
            )
        )
    keys = sorted({k for p in points for k in p.metrics})
    with atomic_path(files["csv"]) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["codec", "setting", "images", "missing", "bpp", "psnr_db", "ms_ssim", "encode_s",
             "decode_s", *keys]
        )  # fmt: skip
        for p in points:
            w.writerow(
                [
                    p.codec,
                    p.setting,
                    p.images,
                    p.missing,
                    f"{p.bpp:.5f}",
                    f"{p.psnr:.4f}",
                    f"{p.ms_ssim:.5f}",
                    f"{p.encode_s:.4f}",
                    f"{p.decode_s:.4f}",
                    *(f"{p.metrics.get(k, math.nan):.5f}" for k in keys),
                ]
            )
    for m in metrics:
        files[m] = out / f"{m.replace('/', '_')}.png"
        pseudo = "pseudo" in result["ground_truth"] and not m.startswith("privacy")
        _plot(points, m, f"{m}" + (" (pseudo ground truth)" if pseudo else ""), files[m])
    _html(result, out, files, tables, metrics)
    return files


def _quality(value: float, digits: int) -> str:
    """PSNR or MS-SSIM for a table: ``n/a`` where undefined (no decoded image, or all too small
    for MS-SSIM), ``inf`` for a lossless codec."""
    if math.isnan(value):
        return "n/a"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def console_table(
    points: Sequence[Point], bd: dict[str, dict[str, list[dict[str, Any]]]]
) -> str:
    """The results as plain text for the console: one row per (codec, setting) with bpp, PSNR,
    MS-SSIM and every task's mAP, then each BD-rate table (``bd``: anchor -> metric -> rows of
    :func:`bd_table`, as ``results.json`` holds them) with its interval and overlap."""
    keys = sorted({k for p in points for k in p.metrics if k.endswith(("map", "map50", "pq"))})
    extra = sorted(
        {k for p in points for k in p.metrics if k.endswith(("face_recall", "identity_kept"))}
    )
    cols = [*keys, *extra]
    head = ["codec", "setting", "images", "bpp", "PSNR dB", "MS-SSIM", *cols]
    rows = []
    for p in points:
        if p.codec == ORIGINAL:
            label, setting = "uncompressed", ""
        else:
            label, setting = p.codec, p.setting
        rows.append(
            [
                label,
                setting,
                f"{p.images}" + (f" ({p.missing} missing)" if p.missing else ""),
                "" if p.codec == ORIGINAL else f"{p.bpp:.4f}",
                "" if p.codec == ORIGINAL else _quality(p.psnr, 2),
                "" if p.codec == ORIGINAL else _quality(p.ms_ssim, 4),
                *(_quality(p.metrics.get(k, math.nan), 4) for k in cols),
            ]
        )
    lines = _columns(head, rows)
    if not any(table for tables in bd.values() for table in tables.values()):
        lines += [
            "",
            "No BD-rate: no curve has an accuracy on two points (n/a above: here the ground "
            "truth holds no object, or the task gives no mAP)",
        ]
    for anchor, tables in bd.items():
        for metric, table in tables.items():
            if not table:
                continue
            lines += ["", f"BD-rate on {metric} against {anchor} (negative: fewer bits):"]
            bd_rows = []
            for r in table:
                if r["bd_rate"] is None:
                    value, why = "n/a", r.get("note") or ""
                else:
                    value, why = f"{r['bd_rate']:+.1f} %", r.get("note") or ""
                    if r.get("interval"):
                        value += " [{:+.1f}, {:+.1f}]".format(*r["interval"])
                overlap = r.get("overlap")
                share = "" if overlap is None else f"{100 * overlap:.0f} %"
                bd_rows.append([r["codec"], value, share, why])
            lines += _columns(["codec", "BD-rate [95% interval]", "overlap", "note"], bd_rows)
    return "\n".join(line.rstrip() for line in lines)


def _columns(head: list[str], rows: list[list[str]]) -> list[str]:
    """``head`` and ``rows`` as left-aligned text columns."""
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *rows]
    ]


def _examples(out: Path, result: dict[str, Any], points: list[Point]) -> str:
    """For each kept image: the original and each codec's decoded image nearest in rate to the
    learned codec's first setting, with the first task's detections drawn."""
    import numpy as np
    from PIL import Image

    from ..tasks import Detection, draw_detections

    dec_root = out / "decoded"
    if not dec_root.is_dir():
        return ""
    target = next(
        (p.bpp for p in points if p.codec not in _CONVENTIONAL and p.codec != ORIGINAL), None
    )
    chosen: dict[str, Point] = {}
    for codec in sorted({p.codec for p in points} - {ORIGINAL}):
        cands = [p for p in points if p.codec == codec and math.isfinite(p.bpp)]
        if cands:
            chosen[codec] = min(cands, key=lambda p: abs(p.bpp - target) if target else p.bpp)
    original = next(p for p in points if p.codec == ORIGINAL)
    parts = []
    tasks = result["tasks"]
    task = "detection" if "detection" in tasks else (tasks[0] if tasks else None)
    for stem in (Path(name).stem for name in result["images"]):  # this run's images only
        if not decoded_path(out, ORIGINAL, ORIGINAL, stem).exists():
            continue
        row = []
        for point in [original, *chosen.values()]:
            codec, setting = point.codec, point.setting
            coder = point.coder or codec  # the cells' folder (results of saicm before 0.1)
            img_path = decoded_path(out, coder, point.key, stem)
            cell = cell_path(out, coder, point.key, stem)
            if not img_path.exists() or not cell.exists():
                continue
            rec = json.loads(cell.read_text())
            dets = (
                [
                    Detection(r["category_id"], r["score"], tuple(r["bbox"]))
                    for r in rec["predictions"].get(task, [])
                ]
                if task
                else []
            )
            shown = draw_detections(np.asarray(Image.open(img_path).convert("RGB")), dets)
            view = out / "views" / f"{img_path.stem}__{_safe(codec)}__{_safe(point.key)}.jpg"
            with atomic_path(view) as tmp:  # replaces whatever is there, never writes through it
                shown.save(tmp, format="JPEG", quality=88)
            bpp = 8 * rec["bytes"] / rec["pixels"] if rec["bytes"] else 24.0
            label = "original" if codec == ORIGINAL else f"{codec} {setting}: {bpp:.3f} bpp"
            row.append(
                f'<figure><img src="{_href(view.relative_to(out))}" alt="{html.escape(label)}">'
                f"<figcaption>{html.escape(label)}</figcaption></figure>"
            )
        parts.append(f"<h3>{html.escape(stem)}</h3><div class=row>{''.join(row)}</div>")
    return "".join(parts)


def _html(
    result: dict[str, Any],
    out: Path,
    files: dict[str, Path],
    tables: dict[str, dict[str, list[dict[str, Any]]]],
    metrics: list[str],
) -> None:
    points: list[Point] = result["points"]
    keys = sorted({k for p in points for k in p.metrics})
    esc = html.escape
    head = "".join(
        f"<th>{esc(k)}</th>"
        for k in [
            *("codec", "setting", "images", "bpp", "PSNR dB", "MS-SSIM", "enc s", "dec s"),
            *keys,
            "problems",
        ]
    )
    rows = []
    for p in points:
        cells = [
            p.codec,
            p.setting,
            f"{p.images}" + (f" ({p.missing} missing)" if p.missing else ""),
            f"{p.bpp:.4f}",
            _quality(p.psnr, 2),
            _quality(p.ms_ssim, 4),
            f"{p.encode_s:.3f}",
            f"{p.decode_s:.3f}",
            *(f"{p.metrics.get(k, math.nan):.4f}" for k in keys),
            "; ".join(p.errors[:3]),
        ]
        cls = ' class="missing"' if p.errors or p.missing else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>")
    bd = []
    anchors = list(tables)
    for m in next(iter(tables.values()), {}):
        by_anchor = {a: {r["codec"]: r for r in tables[a][m]} for a in anchors}
        codecs = list(dict.fromkeys(c for a in anchors for c in by_anchor[a]))
        body = ""
        for c in codecs:
            body += f"<tr><td>{esc(c)}</td>"
            for a in anchors:
                r = by_anchor[a].get(c)
                value = (
                    "" if r is None else "n/a" if r["bd_rate"] is None else f"{r['bd_rate']:+.1f} %"
                )
                if r and r.get("interval"):
                    value += " [{:+.1f}, {:+.1f}]".format(*r["interval"])
                if r and r["bd_rate"] is not None and r.get("overlap") is not None:
                    value += f"<br><small>overlap {100 * r['overlap']:.0f}%</small>"
                note = f' title="{esc(r["note"])}"' if r and r["note"] else ""
                if r and r["note"]:  # a refusal, or an estimate without an interval
                    value += f"<br><small>{esc(r['note'])}</small>"
                body += f"<td{note}>{value}</td>"
            body += "</tr>"
        head_bd = "".join(f"<th>vs {esc(a)}</th>" for a in anchors)
        bd.append(f"<h3>{esc(m)}</h3><table><tr><th>codec</th>{head_bd}</tr>{body}</table>")
    plots = "".join(
        f'<img class=plot src="{_href(Path(files[m].name))}" alt="{esc(m)}">' for m in metrics
    )
    bad = "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in result["bad_images"].items())
    bad += "".join(f"<li>task {esc(t)} could not run</li>" for t in result.get("missing_tasks", []))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>saicm eval</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px}}tr.missing{{background:#fee}}
.row{{display:flex;flex-wrap:wrap;gap:8px}}figure{{margin:0}}figure img{{max-width:360px}}
img.plot{{max-width:640px}}</style></head><body>
<h1>Rate-accuracy report</h1>
<p>{len(result["images"])} images; ground truth: {esc(result["ground_truth"])}. Rate: bits of the
coded files / pixels. Accuracy: COCO mAP@[.5:.95] ("map") and mAP@.5 ("map50") with pycocotools.
Fidelity: mean PSNR and MS-SSIM (pytorch-msssim, data range 1) of the decoded images, as
CompressAI's eval_model reports them; MS-SSIM is n/a for images under 161 pixels a side.
</p>{f"<p>Left out:</p><ul>{bad}</ul>" if bad else ""}
<h2>Rate-accuracy curves</h2>{plots}
<h2>BD-rate against {esc(", ".join(anchors))}</h2>
<p>Negative: fewer bits for the same accuracy. n/a: no BD-rate, and why (curves that share
less than half of their accuracy range are not compared: docs/EVALUATION.md).</p>
{"".join(bd)}
<h2>All points</h2><table><tr>{head}</tr>{"".join(rows)}</table>
<h2>Examples</h2>{_examples(out, result, points)}
</body></html>"""
    with atomic_path(files["html"]) as tmp:
        tmp.write_text(page)

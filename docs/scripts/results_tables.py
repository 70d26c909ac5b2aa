"""Markdown tables and the main plot of docs/RESULTS.md from ``saicm eval`` reports.

.venv/bin/python docs/scripts/results_tables.py data/eval-study [--plot docs/images/x.png]
    [--only CODEC ...]

Prints: BD-rate of every curve against each anchor of the report, every point (bpp, mAP), and
the single-model points (edge-source study). The plot draws the learned families thick and the
conventional codecs thin, mAP against bpp.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

CONVENTIONAL = ("jpeg", "webp", "avif", "jxl", "hevc", "vvc")


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None or not math.isfinite(v) else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", help="a saicm eval output folder")
    ap.add_argument("--metric", default="detection/map")
    ap.add_argument("--plot", default=None, help="write the rate-accuracy plot here")
    ap.add_argument("--title", default="")
    ap.add_argument("--only", nargs="+", metavar="CODEC", help="these curves alone (default all)")
    args = ap.parse_args()
    res = json.loads((Path(args.report) / "results.json").read_text())
    shown = set(args.only) if args.only else {p["codec"] for p in res["points"]}
    points = [p for p in res["points"] if p["codec"] != "_original" and p["codec"] in shown]
    original = next(p for p in res["points"] if p["codec"] == "_original")
    m = args.metric
    print(
        f"Images: {len(res['images'])}; ground truth: {res['ground_truth']}; "
        f"objects: {original['metrics'].get(m.split('/')[0] + '/objects', 'n/a')}; "
        f"{m} of the uncompressed images: {_fmt(original['metrics'].get(m), '.3f')}\n"
    )
    anchors = list(res["bd_rate"])
    if anchors and m in res["bd_rate"][anchors[0]]:
        print("| codec | " + " | ".join(f"BD-rate vs {a}" for a in anchors) + " |")
        print("|---|" + "---|" * len(anchors))
        rows: dict[str, dict[str, str]] = {}
        for a in anchors:
            for r in res["bd_rate"][a][m]:
                if r["codec"] not in shown:
                    continue
                value = "n/a" if r["bd_rate"] is None else f"{r['bd_rate']:+.1f}%"
                if r.get("interval"):  # saicm eval --bootstrap: the 95% interval
                    value += " [{:+.0f}, {:+.0f}]".format(*r["interval"])
                elif r["bd_rate"] is not None and r.get("note"):  # most draws refuse it
                    value += " (no interval)"
                if r["bd_rate"] is not None and r.get("overlap") is not None:
                    value += f" ({100 * r['overlap']:.0f}%)"
                rows.setdefault(r["codec"], {})[a] = value
        for codec, by in rows.items():
            print(f"| {codec} | " + " | ".join(by.get(a, "(anchor)") for a in anchors) + " |")
        print()
    print(f"| codec | setting | bpp | {m} |")
    print("|---|---|---|---|")
    for p in sorted(points, key=lambda p: (p["codec"], p["bpp"])):
        print(
            f"| {p['codec']} | {p['setting']} | {p['bpp']:.3f} | "
            f"{_fmt(p['metrics'].get(m), '.3f')} |"
        )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.2, 4.8), dpi=120)
        curves: dict[str, list[tuple[float, float]]] = {}
        for p in points:
            if math.isfinite(p["metrics"].get(m, math.nan)):
                curves.setdefault(p["codec"], []).append((p["bpp"], p["metrics"][m]))
        for codec, pts in sorted(curves.items(), key=lambda kv: kv[0] in CONVENTIONAL):
            pts.sort()
            learned = codec not in CONVENTIONAL
            ax.plot(
                *zip(*pts, strict=True),
                marker="o" if learned else ".",
                lw=2.4 if learned else 1.1,
                ls="-" if learned else "--",
                ms=6 if learned else 4,
                label=codec,
            )
        if math.isfinite(original["metrics"].get(m, math.nan)):
            ax.axhline(original["metrics"][m], color="grey", lw=1, ls=":", label="uncompressed")
        ax.set_xlabel("bits per pixel (from the files)")
        ax.set_ylabel(m)
        ax.set_xlim(0, min(2.0, max(b for c in curves.values() for b, _ in c) * 1.05))
        ax.set_title(args.title or m, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()

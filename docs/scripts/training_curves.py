"""Plot the training and validation curves of run folders (train.csv, val.csv).

.venv/bin/python docs/scripts/training_curves.py runs/RUN [runs/RUN2 ...] -o curves.png
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _read(path: Path) -> dict[str, list[float]]:
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in rows[0]} if rows else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=100)
    for run in map(Path, args.runs):
        tr, va = _read(run / "train.csv"), _read(run / "val.csv")
        if tr:
            axes[0].plot(tr["step"], tr["loss"], label=run.name)
            axes[1].plot(tr["step"], tr["bpp"], label=f"{run.name} (train crops)")
            if not va:  # no validation: the loss's (masked) distortion term as a PSNR
                psnr = [-10 * math.log10(max(m, 1e-10)) for m in tr["mse"]]
                axes[2].plot(tr["step"], psnr, label=f"{run.name}: distortion term, train crops")
        if va:
            axes[1].plot(va["step"], va["bpp"], "o--", label=f"{run.name} (val, rounded)")
            axes[2].plot(va["step"], va["psnr"], "o-", label=f"{run.name}: whole image")
            if "psnr_mask" in va:
                axes[2].plot(va["step"], va["psnr_mask"], "s--", label=f"{run.name}: in mask")
    for ax, title in zip(axes, ["training loss", "bits per pixel", "PSNR (dB)"], strict=True):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_yscale("log")
    fig.tight_layout()
    fig.savefig(args.output)
    print(args.output)


if __name__ == "__main__":
    main()

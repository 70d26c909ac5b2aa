"""Milliseconds per mask file for the one mask reader (saicm.masks.io), per kind of file, and
for the check a training run makes of a whole mask folder at start.

    .venv/bin/python benchmarks/read_masks.py [--count 400]

The masks are 640x480 (a COCO-sized image) with 22% of pixels on, written as users write them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _kinds(mask: np.ndarray) -> dict[str, Image.Image]:
    rgb = np.zeros((*mask.shape, 3), np.uint8)
    rgb[mask] = (0, 128, 255)
    return {
        "1-bit (saicm masks)": Image.fromarray(mask),
        "grey 0/1": Image.fromarray(mask.astype(np.uint8)),
        "grey 0/255": Image.fromarray(mask.astype(np.uint8) * 255),
        "RGB label colour": Image.fromarray(rgb),
    }


def main() -> None:
    from saicm.masks.io import check_masks, read_mask

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=400, help="masks in the folder check")
    args = ap.parse_args()
    mask = np.zeros((480, 640), bool)
    mask[::7] = True
    mask[:, ::11] = True
    with tempfile.TemporaryDirectory() as tmp:
        print("| mask file | ms per file (median of 30) |")
        print("|---|---|")
        for name, img in _kinds(mask).items():
            path = Path(tmp) / "m.png"
            img.save(path)
            times = []
            for _ in range(30):
                t = time.perf_counter()
                read_mask(path)
                times.append(time.perf_counter() - t)
            print(f"| {name} | {statistics.median(times) * 1000:.2f} |")
        paths = []
        for i in range(args.count):
            paths.append(Path(tmp) / f"f{i}.png")
            Image.fromarray(mask.astype(np.uint8)).save(paths[-1])
        t = time.perf_counter()
        check_masks(paths)
        dt = time.perf_counter() - t
        each = dt / args.count * 1e3
        print(f"\ncheck_masks of {args.count} grey 0/1 masks: {dt:.2f} s, {each:.2f} ms each")


if __name__ == "__main__":
    main()

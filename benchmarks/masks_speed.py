"""Seconds per 512x512 image for each mask source on this machine.

    .venv/bin/python benchmarks/masks_speed.py [--repeats 3] [--sam-type vit_b]

SAM runs with randomly initialised weights of the real architecture (no weights ship here): the
network's cost is the same as with official weights, but how many masks survive the filters, and
so the post-processing time, differs. Pass --checkpoint for the real thing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _image() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # 512x512 RGB


def main() -> None:
    from saicm.masks.sources import SamEdges, create_source

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sam-type", default="vit_b", choices=("vit_b", "vit_l", "vit_h"))
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    img = _image()
    sources = {name: create_source(name) for name in ("hed", "felzenszwalb", "slic", "objects")}
    sam = SamEdges(checkpoint=args.checkpoint, sam_type=args.sam_type)
    if args.checkpoint:
        sam.load()
    else:
        from segment_anything import sam_model_registry

        torch.manual_seed(0)
        sam.load(sam_model_registry[args.sam_type]())
    sources[f"sam ({args.sam_type}, 32x32 points)"] = sam
    print(f"# 512x512, {args.threads} torch threads, median of {args.repeats} after a warm-up")
    print("| source | seconds per image | mask fraction |")
    print("|---|---|---|")
    for name, src in sources.items():
        src.load()
        res = src(img)  # warm-up (and lazy loading)
        repeats = 1 if name.startswith("sam") else args.repeats
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            res = src(img)
            times.append(time.perf_counter() - t)
        print(f"| {name} | {statistics.median(times):.2f} | {res.mask.mean():.3f} |", flush=True)


if __name__ == "__main__":
    main()

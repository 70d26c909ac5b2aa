"""SAM ViT-H on one GPU: segment-anything's automatic mask generator vs saicm's batched one.

    # on the GPU machine (random ViT-H weights, or --checkpoint sam_vit_h_4b8939.pth):
    PYTHONPATH=src python docs/scripts/masks_gpu.py --out "$OUT"
    # here, to test the script itself: CPU, a tiny random SAM, small photos (seconds)
    PYTHONPATH=src python docs/scripts/masks_gpu.py --out /tmp/masks_gpu --tiny

Steps, each written to ``OUT/masks_gpu.json`` as soon as it ends (a step that would start after
``--budget`` seconds is skipped, so the whole run stays under 10 minutes):

1. both generators, SAM's default thresholds, 32x32 points, ``--images`` photos: s/image, ratio,
   identical label maps (``benchmarks/masks_speed.py --compare``);
2. the same with every mask kept (thresholds 0, NMS 1.0), two photos: the post-processing's
   worst case;
3. the batched generator alone at larger batches (``points_per_batch`` 256, 4 images per
   encoder call) over ``--stream`` images: s/image, and how many label maps equal those of
   the default batches (a batched matmul may round differently; see docs/MASKS.md).

The goal for ViT-H on one H200 is <= 0.24 s per image (COCO train2017, 118,287 images, in
<= 8 hours).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("masks_speed", ROOT / "benchmarks/masks_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tiny_sam() -> torch.nn.Module:
    """A random Sam with a 64-pixel ViT (the tests' model), for a CPU dry run."""
    from saicm.masks.tiny import build_tiny_sam

    return build_tiny_sam(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for masks_gpu.json and masks_gpu.md")
    ap.add_argument("--checkpoint", default=None, help="official ViT-H weights (else random)")
    ap.add_argument("--images", type=int, default=4, help="photos for steps 1-2 (at most 5)")
    ap.add_argument("--stream", type=int, default=32, help="images for step 3")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds before no step starts")
    ap.add_argument("--tiny", action="store_true", help="CPU dry run with a tiny random SAM")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    bench = _bench()
    device = "cpu" if args.tiny else ("cuda" if torch.cuda.is_available() else "cpu")
    points = 8 if args.tiny else 32
    sam = tiny_sam() if args.tiny else bench._model("vit_h", args.checkpoint)
    photos = bench._photos(args.images)
    if args.tiny:
        photos = [p[::4, ::4] for p in photos]
    report: dict = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "model": "tiny random" if args.tiny else "vit_h",
        "weights": args.checkpoint or "random",
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "steps": {},
    }

    def save() -> None:
        report["seconds"] = round(time.perf_counter() - t0, 1)
        (out_dir / "masks_gpu.json").write_text(json.dumps(report, indent=1))

    def step(name: str, fn) -> None:
        if time.perf_counter() - t0 > args.budget:
            report["steps"][name] = "skipped: over the time budget"
        else:
            try:
                report["steps"][name] = fn()
            except torch.cuda.OutOfMemoryError as exc:
                report["steps"][name] = f"out of memory: {str(exc).splitlines()[0]}"
        save()
        print(name, json.dumps(report["steps"][name]), flush=True)

    def compare(keep_all: bool, n: int) -> dict:
        ns = argparse.Namespace(
            sam_type="tiny" if args.tiny else "vit_h",
            checkpoint=args.checkpoint,
            points_per_side=points,
            points_per_batch=64,
            keep_all=keep_all,
            device=device,
            warmup=1,
            json=None,
            images=n,
        )
        return bench.compare(ns, sam=sam, photos=photos[:n])

    step("1 default thresholds", lambda: compare(False, len(photos)))
    # 3,072 masks an image through segment-anything's RLE loops: two photos are enough
    step("2 every mask kept", lambda: compare(True, min(2, len(photos))))

    def stream() -> dict:
        from saicm.masks.amg import LabelMapGenerator

        model = sam.to(device)
        images = [photos[i % len(photos)] for i in range(args.stream)]
        ref_gen = LabelMapGenerator(model, points_per_side=points)
        big = LabelMapGenerator(
            model, points_per_side=points, points_per_batch=256, images_per_batch=4
        )
        prepared = [big.prepare(im) for im in images]
        big.label_maps(prepared[:4])  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        maps = []
        for i in range(0, len(prepared), 4):
            maps += [m.cpu() for m in big.label_maps(prepared[i : i + 4])]
        seconds = time.perf_counter() - t
        refs = {i: ref_gen.label_maps([photos[i]])[0].cpu() for i in range(len(photos))}
        same = sum(torch.equal(m, refs[i % len(photos)]) for i, m in enumerate(maps))
        return {
            "images": len(images),
            "points_per_batch": 256,
            "images_per_batch": 4,
            "s_per_image": round(seconds / len(images), 4),
            "identical_to_default_batches": f"{same}/{len(images)}",
            "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
            if device == "cuda"
            else None,
        }

    step("3 batched stream", stream)
    lines = [
        "| step | segment-anything s/image | batched s/image | ratio | identical |",
        "|---|---|---|---|---|",
    ]
    for name, r in report["steps"].items():
        if isinstance(r, dict) and "ratio" in r:
            lines.append(
                f"| {name} | {r['segment_anything_s_per_image']} | "
                f"{r['batched_s_per_image']} | {r['ratio']} | "
                f"{r['identical_label_maps']} |"
            )
        elif isinstance(r, dict):
            lines.append(
                f"| {name} | - | {r['s_per_image']} | - | {r['identical_to_default_batches']} |"
            )
        else:
            lines.append(f"| {name} | {r} | | | |")
    (out_dir / "masks_gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    save()


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()

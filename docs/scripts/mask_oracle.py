"""What does the detector need? Keep the pixels of a mask, blur the rest, and count the objects
the detector still finds (COCO mAP against its own detections on the originals).

No codec and no training: an oracle that tells whether a mask source marks the pixels a
detector relies on. If keeping the edge pixels finds no more objects than keeping the same
number of pixels along edges that belong to another place in the image (the mask flipped), the
edge loss has nothing special to protect for this detector, whatever the training budget.

Usage (masks made on the validation images with ``saicm masks``):
    python docs/scripts/mask_oracle.py data/offline/val --blur 4 --widen 0 2 5 \
        --masks hed=data/offline/val-masks-hed felzenszwalb=data/offline/val-masks-felzenszwalb \
                objects=data/offline/val-masks-objects \
        -o docs/results/mask_oracle.json --plot docs/images/mask_oracle.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from saicm.errors import SaicmError
from saicm.eval.metrics import coco_map, pseudo_ground_truth
from saicm.eval.tasks import DetectionTask
from saicm.image import list_images, load_image
from saicm.masks.edges import dilate
from saicm.masks.io import read_mask as read_binary_mask


def read_mask(folder: Path, image: Path, shape: tuple[int, int]) -> np.ndarray:
    """The mask of ``image`` read as training reads it (any binary PNG; grey ones refused)."""
    path = folder / f"{image.stem}.png"
    try:
        m = read_binary_mask(path, allow_empty=True)
    except SaicmError as exc:
        raise SystemExit(f"mask_oracle: {exc}") from None
    if m.shape != shape:
        raise SystemExit(f"mask_oracle: {path}: mask is {m.shape[::-1]}, image is {shape[::-1]}")
    return m


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("images")
    p.add_argument("--masks", nargs="+", required=True, metavar="NAME=FOLDER")
    p.add_argument("--blur", type=float, default=4.0, help="Gaussian sigma outside the mask")
    p.add_argument("--widen", type=int, nargs="+", default=[0], help="extra dilation radii")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--plot")
    args = p.parse_args()

    sources = dict(s.split("=", 1) for s in args.masks)
    images = list_images(args.images)
    det = DetectionTask()
    variants: dict[str, dict] = {"blurred everywhere": {"kept": [], "results": []}}
    for name in sources:
        for r in args.widen:
            for kind in ("", " flipped"):
                variants[f"{name} +{r}{kind}"] = {"kept": [], "results": []}
    originals, sizes = {}, {}
    for i, path in enumerate(tqdm(images, desc="images")):
        x = load_image(path)
        h, w = x.shape[:2]
        sizes[i] = (h, w)
        originals[i] = det.predict(x)
        soft = cv2.GaussianBlur(x, (0, 0), args.blur)

        def run(key: str, keep: np.ndarray, x=x, soft=soft, i=i) -> None:
            mixed = np.where(keep[..., None], x, soft)
            variants[key]["kept"].append(float(keep.mean()))
            variants[key]["results"] += [{**d, "image_id": i} for d in det.predict(mixed)]

        run("blurred everywhere", np.zeros((h, w), bool))
        for name, folder in sources.items():
            base = read_mask(Path(folder), path, (h, w))
            for r in args.widen:
                keep = dilate(base, r)
                run(f"{name} +{r}", keep)
                # same density and curve shapes, but not this image's content
                run(f"{name} +{r} flipped", keep[::-1, ::-1])
    gt = pseudo_ground_truth(originals, sizes)
    rows = []
    for key, v in variants.items():
        score = coco_map(gt, v["results"])
        kept = float(np.mean(v["kept"]))
        rows.append({"variant": key, "flipped": key.endswith("flipped"), "kept": kept, **score})
    report = {"images": len(images), "blur": args.blur, "rows": rows}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1))
    print(f"{len(images)} images, {rows[0]['objects']} objects, blur sigma {args.blur}")
    print("| pixels kept as they are | kept | mAP | mAP@.5 |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['kept']:.1%} | {r['map']:.3f} | {r['map50']:.3f} |")
    if args.plot:
        plot(rows, args.plot)


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    names = sorted({r["variant"].split(" +")[0] for r in rows if " +" in r["variant"]})
    for c, name in enumerate(names):
        for flipped in (False, True):
            mine = [r for r in rows if r["variant"].split(" +")[0] == name]
            pts = sorted((r["kept"], r["map"]) for r in mine if r["flipped"] == flipped)
            xs, ys = [k for k, _ in pts], [m for _, m in pts]
            label = f"{name} (flipped: other pixels, same density)" if flipped else name
            ax.plot(
                xs,
                ys,
                "o--" if flipped else "o-",
                color=f"C{c}",
                label=label,
                alpha=0.5 if flipped else 1.0,
            )
    base = rows[0]
    ax.axhline(base["map"], color="grey", lw=0.8, label="blurred everywhere")
    ax.set_xlabel("pixels kept as they are (the rest blurred)")
    ax.set_ylabel("detection mAP (pseudo ground truth)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()

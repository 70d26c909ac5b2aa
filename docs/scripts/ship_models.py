"""Copy finished study runs into the package's shipped models, with full model cards.

.venv/bin/python docs/scripts/ship_models.py runs/NAME [runs/NAME2 ...] [--val data/offline/val]

For each run: its ``model.pt`` (int8, rANS-coded weights) gets a card with the training data,
the mask source and the result on every ``--every``-th validation image, measured from real
files (``saicm.encode`` / ``saicm.decode``): bpp and PSNR. Written to ``src/saicm/weights/``.
Prints the Markdown table of docs/MODELS.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

WEIGHTS = Path(__file__).resolve().parents[2] / "src" / "saicm" / "weights"
MASKS = {
    "masks-hed": "HED edges (BSDS500 HED > 0.5, thinned, widened by 1 px): the offline stand-in "
    "for SAM edges",
    "masks-hed-0.3": "HED edges at threshold 0.3 (denser edges)",
    "masks-felzenszwalb": "boundaries of Felzenszwalb segments (classical)",
    "masks-objects": "boxes of the bundled SSD-MobileNet-v2 detector (score >= 0.5), filled",
}


def _weighting(card: dict) -> str:
    """The recipe's words for object-centred crops and a weight outside the mask, if used."""
    extra = []
    if card.get("object_crops"):
        extra.append(f"{card['object_crops']:.0%} of the crops placed around an object pixel")
    if card.get("outside_weight"):
        extra.append(f"squared errors outside the mask weighted {card['outside_weight']:g}")
    return "".join(f"; {e}" for e in extra)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--val", default="data/offline/val")
    ap.add_argument("--every", type=int, default=5, help="every n-th validation image")
    args = ap.parse_args()

    from saicm.codec.zoo import coded_tensor, load_model
    from saicm.eval.metrics import coded_rate_psnr
    from saicm.image import list_images, load_image
    from saicm.utils.io import atomic_path

    images = [load_image(p) for p in list_images(args.val)[:: args.every]]
    print("| name | loss | lambda | masks | bpp | PSNR dB | MB |")
    print("|---|---|---|---|---|---|---|")
    for run in map(Path, args.runs):
        model = load_model(run / "model.pt")
        bpp, psnr = coded_rate_psnr(images, model)
        blob = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
        if isinstance(blob.get("coded"), bytes):  # files of runs before coded_tensor()
            blob["coded"] = coded_tensor(blob["coded"])
        card = blob["card"]
        mask = Path(card["masks"]).name if card.get("masks") else None
        card.update(
            {
                "data": "saicm data offline-corpus: 59 training images (photos of mvtb-data and "
                "scikit-image, every 12th frame of mvtb-data's traffic_sequence)",
                "mask_source": MASKS.get(mask, mask) if mask else "none (plain MSE)",
                "recipe": "fine-tuned from base-mse-mbt (plain MSE, lambda 0.0067, 3,000 steps "
                "from random weights) for the steps given, Adam 2e-4 (x0.1 at 90% and 96%), aux "
                "Adam 1e-3, batch 8, 128x128 crops with flips, gradient clipping 1.0, seed 0"
                + _weighting(card),
                "val": {
                    "images": len(images),
                    "which": f"every {args.every}th image of {args.val}",
                    "bpp": round(bpp, 4),
                    "psnr": round(psnr, 2),
                },
            }
        )
        dest = WEIGHTS / f"{blob['name']}.pt"
        with atomic_path(dest) as tmp:
            torch.save(blob, tmp)
        size = dest.stat().st_size / 1e6
        print(
            f"| `{blob['name']}` | {card['loss']} | {card['lmbda']:g} | {mask or '-'} | "
            f"{bpp:.3f} | {psnr:.2f} | {size:.1f} |"
        )


if __name__ == "__main__":
    main()

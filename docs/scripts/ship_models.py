"""Copy finished study runs into the package's shipped models, with full model cards.

.venv/bin/python docs/scripts/ship_models.py runs/RUN[=NAME] ... [--val data/offline/val]
    [--where "one H100, eight runs side by side"]

For each run: its ``model.pt`` (int8, rANS-coded weights) gets a card with the training data,
the mask source, the recipe (from the run's ``config.yaml``) and the result on every
``--every``-th validation image, measured from real files (``saicm.encode`` / ``saicm.decode``):
bpp and PSNR. Written to ``src/saicm/weights/NAME.pt`` (NAME: the run's model name unless
given). Prints the Markdown table of docs/MODELS.md.
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


def _recipe(cfg: dict, where: str | None) -> str:
    """The run's training recipe in words, from its saved config."""
    start = f"fine-tuned from {cfg['init']}" if cfg.get("init") else "from random weights"
    at = " and ".join(f"{f:.0%}" for f in cfg["milestones"])
    text = (
        f"{start}, {cfg['steps']:,} steps, Adam {cfg['lr']:g} (x{cfg['gamma']:g} at {at}), aux "
        f"Adam {cfg['aux_lr']:g}, batch {cfg['batch_size']}, {cfg['crop']}x{cfg['crop']} crops "
        f"with flips, gradient clipping {cfg['clip']:g}, seed {cfg['seed']}"
    )
    return text + _weighting(cfg) + (f"; trained on {where}" if where else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--val", default="data/offline/val")
    ap.add_argument("--every", type=int, default=5, help="every n-th validation image")
    ap.add_argument("--where", default=None, help="the machine, for the recipe")
    args = ap.parse_args()
    import yaml

    from saicm.codec.zoo import coded_tensor, load_model
    from saicm.eval.metrics import coded_rate_psnr
    from saicm.image import list_images, load_image
    from saicm.utils.io import atomic_path

    images = [load_image(p) for p in list_images(args.val)[:: args.every]]
    print("| name | loss | lambda | masks | bpp | PSNR dB | MB |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.runs:
        run_dir, _, name = spec.partition("=")
        run = Path(run_dir)
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
                "recipe": _recipe(yaml.safe_load((run / "config.yaml").read_text()), args.where),
                "val": {
                    "images": len(images),
                    "which": f"every {args.every}th image of {args.val}",
                    "bpp": round(bpp, 4),
                    "psnr": round(psnr, 2),
                },
            }
        )
        blob["name"] = name or blob["name"]
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

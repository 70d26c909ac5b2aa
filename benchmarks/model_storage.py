"""What 8-bit rANS-coded weights cost against float16: file size, bpp and PSNR from real files.

    .venv/bin/python benchmarks/model_storage.py [MODEL] [--images data/offline/val --every 10]

The model (default: the shipped default) is exported both ways from the same float weights, and
both files code every ``--every``-th image of ``--images`` in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=None)
    ap.add_argument("--images", default="data/offline/val")
    ap.add_argument("--every", type=int, default=10)
    args = ap.parse_args()

    from saicm.codec.zoo import export_model, load_model
    from saicm.eval.metrics import coded_rate_psnr
    from saicm.image import list_images, load_image

    src = load_model(args.model)
    images = [load_image(p) for p in list_images(args.images)[:: args.every]]
    print(f"{src.name}, {len(images)} images of {args.images}")
    print("| storage | file MB | bpp | PSNR dB |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for storage in ("float16", "int8"):
            path = Path(tmp) / f"{storage}.pt"
            model = export_model(
                path, src.net, name=storage, arch=src.arch, config=src.config, storage=storage
            )
            bpp, psnr = coded_rate_psnr(images, model)
            print(f"| {storage} | {path.stat().st_size / 1e6:.1f} | {bpp:.4f} | {psnr:.3f} |")


if __name__ == "__main__":
    main()

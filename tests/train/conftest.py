"""Fixtures of the training tests."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture()
def corpus(tmp_path, photo):
    """Two 128x128 crops of a real photo and an edge mask of every 8th row: ``(images, masks)``
    folders (``test_loop.py`` has its own, larger)."""
    img_dir, mask_dir = tmp_path / "images", tmp_path / "masks"
    img_dir.mkdir()
    mask_dir.mkdir()
    for i, (y, x) in enumerate([(0, 0), (200, 240)]):
        crop = photo[y : y + 128, x : x + 128]
        Image.fromarray(crop).save(img_dir / f"p{i}.png")
        edges = np.zeros(crop.shape[:2], bool)
        edges[::8] = True
        Image.fromarray(edges).save(mask_dir / f"p{i}.png")
    return img_dir, mask_dir

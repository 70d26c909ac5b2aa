"""Training crops: object-centred crops for sparse masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from saicm.errors import SaicmError
from saicm.train.data import MaskedImageFolder


@pytest.fixture()
def sparse(tmp_path):
    """Two 240x320 images whose masks hold one 12x12 object each; a third with an empty mask."""
    img_dir, mask_dir = tmp_path / "images", tmp_path / "masks"
    img_dir.mkdir()
    mask_dir.mkdir()
    rng = np.random.default_rng(0)
    for i, (y, x) in enumerate([(10, 300), (220, 5), (0, 0)]):
        Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(
            img_dir / f"s{i}.png"
        )
        mask = np.zeros((240, 320), bool)
        if i < 2:
            mask[y : y + 12, x : x + 12] = True
        Image.fromarray(mask).save(mask_dir / f"s{i}.png")
    return img_dir, mask_dir


def _holding_objects(ds: MaskedImageFolder, n: int) -> list[bool]:
    return [bool(ds[k][1].sum() > 0) for k in range(n) if ds.image_index(k) < 2]


def test_object_crops_hold_the_object(sparse):
    uniform = MaskedImageFolder(*sparse, crop=64, object_crops=0.0, allow_empty=True)
    centred = MaskedImageFolder(*sparse, crop=64, object_crops=1.0, allow_empty=True)
    held = _holding_objects(centred, 60)
    assert held and all(held)  # every crop of an image with an object holds part of it
    assert sum(_holding_objects(uniform, 60)) < len(held) / 2  # uniform crops mostly miss it
    half = MaskedImageFolder(*sparse, crop=64, object_crops=0.5, allow_empty=True)
    half = _holding_objects(half, 60)
    assert 0 < sum(half) < len(half)


def test_object_crops_are_a_function_of_the_sample(sparse):
    a = MaskedImageFolder(*sparse, crop=64, object_crops=0.5, seed=3, allow_empty=True)
    b = MaskedImageFolder(*sparse, crop=64, object_crops=0.5, seed=3, allow_empty=True)
    for k in (0, 7, 5, 0):
        assert all(torch.equal(u, v) for u, v in zip(a[k], b[k], strict=True))
    # an empty mask falls back to a uniform crop of the right size
    empty = [k for k in range(12) if a.image_index(k) == 2]
    assert empty and all(a[k][0].shape == (3, 64, 64) for k in empty)


def test_object_crops_outside_0_1_are_refused(sparse):
    with pytest.raises(SaicmError, match="fraction"):
        MaskedImageFolder(*sparse, crop=64, object_crops=1.5, allow_empty=True)


def test_two_images_of_one_stem_never_share_a_mask(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    rgb = np.zeros((32, 32, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "img" / "a.png")
    Image.fromarray(rgb).save(tmp_path / "img" / "a.jpg")
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(tmp_path / "mask" / "a.png")
    with pytest.raises(SaicmError, match=r"would share the mask a\.png"):
        MaskedImageFolder(tmp_path / "img", tmp_path / "mask", crop=16)

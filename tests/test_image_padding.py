"""Padding, cropping and 8-bit conversion of saicm.image: the geometry of both padding rules
(saicm's: bottom/right, edge pixels; the LIC-TCM / SA-ICM authors': centred zeros), exact crop,
and the authors' truncation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saicm.image import crop, pad_amounts, pad_to_multiple, to_array, to_tensor


@pytest.mark.parametrize(
    ("size", "multiple", "placement", "expected"),
    [
        ((256, 256), 128, "centre", (0, 0, 0, 0)),  # already a multiple: nothing added
        ((512, 768), 128, "centre", (0, 0, 0, 0)),
        ((200, 300), 128, "centre", (28, 42, 28, 42)),  # 256x384
        ((201, 301), 128, "centre", (27, 41, 28, 42)),  # odd totals: the extra pixel bottom/right
        ((1, 1), 128, "centre", (63, 63, 64, 64)),
        ((129, 255), 128, "centre", (63, 0, 64, 1)),
        ((200, 300), 64, "bottom-right", (0, 0, 56, 20)),  # saicm's own models
        ((192, 256), 64, "bottom-right", (0, 0, 0, 0)),
        ((192, 256), 128, "centre", (32, 0, 32, 0)),  # a 64-multiple is padded for 128
    ],
)
def test_pad_amounts(size, multiple, placement, expected):
    assert pad_amounts(*size, multiple, placement) == expected


@pytest.mark.parametrize("size", [(200, 300), (256, 256), (131, 77), (1, 1)])
def test_centred_zero_padding_surrounds_the_image_and_crop_restores_it(photo, size):
    h, w = size
    x = to_tensor(photo[:h, :w])
    xp, (top, left, bottom, right) = pad_to_multiple(x, 128, placement="centre", mode="zeros")
    assert xp.shape[-2] % 128 == 0 and xp.shape[-1] % 128 == 0
    assert xp.shape[-2:] == (top + h + bottom, left + w + right)
    assert abs(top - bottom) <= 1 and abs(left - right) <= 1
    assert torch.equal(xp[..., top : top + h, left : left + w], x)
    border = torch.ones_like(xp, dtype=torch.bool)
    border[..., top : top + h, left : left + w] = False
    assert torch.count_nonzero(xp[border]) == 0  # zeros, not edge pixels
    assert torch.equal(crop(xp, h, w, top, left), x)


def test_replicate_padding_at_the_bottom_right_repeats_the_edge(photo):
    x = to_tensor(photo[:200, :300])
    xp, pad = pad_to_multiple(x, 64)
    assert pad == (0, 0, 56, 20) and xp.shape[-2:] == (256, 320)
    assert torch.equal(xp[..., 200:, :300], x[..., 199:200, :].expand(-1, -1, 56, -1))
    assert torch.equal(xp[..., :200, 300:], x[..., :, 299:300].expand(-1, -1, -1, 20))
    assert torch.equal(crop(xp, 200, 300), x)


def test_bad_padding_and_crop_arguments_fail_loudly():
    x = torch.zeros(1, 3, 10, 10)
    with pytest.raises(ValueError, match="placement"):
        pad_to_multiple(x, 8, placement="middle")
    with pytest.raises(ValueError, match="mode"):
        pad_to_multiple(x, 8, mode="reflect")
    with pytest.raises(ValueError, match="cannot crop"):
        crop(x, 8, 8, 3, 0)  # would run past the bottom: a silent short crop before


def test_floor_is_the_authors_truncation_and_nearest_rounds():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 40, 50) * 1.2 - 0.1  # values outside [0, 1] are clipped by both
    # the authors' conversion: clamp in decompress, then (x * 255).astype(np.uint8)
    theirs = (x.clamp(0, 1).numpy()[0] * 255).transpose(1, 2, 0).astype(np.uint8)
    assert np.array_equal(to_array(x, "floor"), theirs)
    nearest = to_array(x, "nearest")
    assert np.array_equal(nearest, np.round(x.clamp(0, 1).numpy()[0] * 255).transpose(1, 2, 0))
    diff = nearest.astype(int) - theirs.astype(int)
    assert set(np.unique(diff)) == {0, 1}  # floor is never above nearest, at most one below
    assert 0.4 < diff.mean() < 0.6  # about half of the pixels: the bias of truncation
    with pytest.raises(ValueError, match="rounding"):
        to_array(x, "ceil")

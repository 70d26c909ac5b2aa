"""HED with the real bundled BSDS500 weights, on a real photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saicm.masks.hed import HED, edge_mask_from_probability


@pytest.fixture(scope="module")
def hed():
    return HED.pretrained()


def test_hed_edges_lie_on_strong_boundaries(hed, photo):
    from skimage.color import rgb2gray
    from skimage.filters import sobel

    img = photo[:256, :256]
    with torch.inference_mode():
        prob = hed(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)[0, 0].numpy()
    assert prob.shape == img.shape[:2] and prob.min() >= 0 and prob.max() <= 1
    edges = edge_mask_from_probability(prob)
    assert 0.03 < edges.mean() < 0.25  # SA-ICM-like density: outlines, not texture
    grad = sobel(rgb2gray(img))
    thin = edge_mask_from_probability(prob, width=0)
    # Boundary pixels carry far more image gradient than the image does on average.
    assert grad[thin].mean() > 2.5 * grad.mean()
    assert thin.sum() < edges.sum()


def test_edge_mask_width_grows_the_curves():
    prob = np.zeros((32, 32), np.float32)
    prob[:, 15:17] = 0.9
    thin = edge_mask_from_probability(prob, width=0)
    assert thin[:, 14:18].any(axis=1)[2:-2].all() and thin.sum() <= 34
    assert edge_mask_from_probability(prob, width=2).sum() > 3 * thin.sum()

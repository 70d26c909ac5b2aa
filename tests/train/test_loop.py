"""The trainer: the masked loss, a short run, resume, bad mask folders."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from saicm.errors import SaicmError
from saicm.train import RateDistortionLoss, TrainConfig, train


@pytest.fixture()
def corpus(tmp_path, photo):
    img_dir, mask_dir = tmp_path / "images", tmp_path / "masks"
    img_dir.mkdir()
    mask_dir.mkdir()
    for i, (y, x) in enumerate([(0, 0), (200, 240)]):
        crop = photo[y : y + 160, x : x + 192]
        Image.fromarray(crop).save(img_dir / f"p{i}.png")
        edges = np.zeros(crop.shape[:2], bool)
        edges[::8] = True
        Image.fromarray(edges).save(mask_dir / f"p{i}.png")
    return img_dir, mask_dir


def test_edge_loss_ignores_pixels_outside_the_mask():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    x_hat = torch.rand(2, 3, 16, 16, requires_grad=True)
    mask = (torch.rand(2, 1, 16, 16) > 0.8).float()
    out = {"x_hat": x_hat, "likelihoods": {"y": torch.full((2, 4, 2, 2), 0.5)}}
    RateDistortionLoss(0.05)(out, x, mask)["loss"].backward()
    grad = x_hat.grad.abs().sum(1, keepdim=True)
    assert (grad[mask == 0] == 0).all() and (grad[mask == 1] > 0).all()
    # and so changing pixels outside the mask leaves the loss unchanged
    x2 = torch.where(mask.bool(), x, torch.rand_like(x))
    a = RateDistortionLoss(0.05)(out, x, mask)["loss"]
    b = RateDistortionLoss(0.05)(out, x2, mask)["loss"]
    assert torch.equal(a, b)


def _cfg(corpus, **kw) -> TrainConfig:
    images, masks = corpus
    base = dict(
        images=str(images),
        masks=str(masks),
        loss="edge",
        lmbda=0.05,
        arch="mbt2018-mean",
        arch_config={"N": 32, "M": 48},
        steps=40,
        batch_size=2,
        crop=64,
        lr=1e-3,
        checkpoint_every=10,
        log_every=5,
    )
    return TrainConfig(**{**base, **kw})


def _losses(run) -> list[float]:
    with open(run / "log.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("loss", ["edge", "mse"])
def test_short_run_reduces_the_loss_and_exports(tmp_path, corpus, loss):
    run = tmp_path / "run"
    model = train(_cfg(corpus, loss=loss), run, progress=False)
    losses = _losses(run)
    assert np.mean(losses[-2:]) < 0.5 * np.mean(losses[:2])
    assert model.path == run / "model.pt" and model.card["loss"] == loss


def test_resume_continues_from_the_checkpoint(tmp_path, corpus):
    run = tmp_path / "run"
    train(_cfg(corpus, steps=10), run, progress=False)
    with pytest.raises(SaicmError, match="--resume"):
        train(_cfg(corpus, steps=20), run, progress=False)
    train(_cfg(corpus, steps=20), run, resume=True, progress=False)
    steps = []
    with open(run / "log.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == [5, 10, 15, 20]
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 20


def test_bad_mask_folder_fails_at_start_naming_the_file(tmp_path, corpus):
    _images, masks = corpus
    (masks / "p1.png").unlink()
    with pytest.raises(SaicmError, match=r"p1\.png: mask missing"):
        train(_cfg(corpus), tmp_path / "run", progress=False)
    Image.fromarray(np.zeros((10, 10), bool)).save(masks / "p1.png")
    with pytest.raises(SaicmError, match=r"p1\.png: mask is 10x10 but image p1\.png is 192x160"):
        train(_cfg(corpus), tmp_path / "run2", progress=False)

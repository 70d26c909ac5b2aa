"""The trainer: the masked loss, a short run, resume, bad mask folders."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from saicm.errors import SaicmError
from saicm.train import RateDistortionLoss, TrainConfig, train


@pytest.fixture()
def corpus(make_corpus):
    return make_corpus({"p0": (0, 0, 160, 192), "p1": (200, 240, 160, 192)})


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


def _weights(run) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=False)["model"]


def _losses(run) -> list[float]:
    with open(run / "train.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("loss", ["edge", "mse"])
def test_short_run_reduces_the_loss_and_exports(tmp_path, corpus, loss):
    run = tmp_path / "run"
    model = train(_cfg(corpus, loss=loss), run, progress=False)
    losses = _losses(run)  # each row averages 5 steps
    assert np.mean(losses[len(losses) // 2 :]) < 0.6 * np.mean(losses[:2])
    assert model.path == run / "model.pt" and model.card["loss"] == loss


def test_resume_continues_from_the_checkpoint(tmp_path, corpus):
    run = tmp_path / "run"
    train(_cfg(corpus, steps=10), run, progress=False)
    with pytest.raises(SaicmError, match="--resume"):
        train(_cfg(corpus, steps=20), run, progress=False)
    train(_cfg(corpus, steps=20), run, resume=True, progress=False)
    steps = []
    with open(run / "train.csv") as f:
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


def test_failure_before_the_first_checkpoint_leaves_no_run_folder(tmp_path, corpus):
    images, _masks = corpus
    data = (images / "p1.png").read_bytes()
    (images / "p1.png").write_bytes(data[: len(data) // 2])  # readable header, truncated pixels
    run = tmp_path / "run"
    with pytest.raises(SaicmError, match=r"p1\.png"):
        train(_cfg(corpus), run, progress=False)
    assert not run.exists()
    # a folder that was there before the run stays
    run.mkdir()
    with pytest.raises(SaicmError, match=r"p1\.png"):
        train(_cfg(corpus), run, progress=False)
    assert run.is_dir()


def test_resume_repeats_an_uninterrupted_run_exactly(tmp_path, corpus):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(_cfg(corpus, steps=12, milestones=[]), straight, progress=False)
    train(_cfg(corpus, steps=6, milestones=[]), resumed, progress=False)  # "killed" at step 6
    train(_cfg(corpus, steps=12, milestones=[]), resumed, resume=True, progress=False)
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_init_starts_from_a_trained_model(tmp_path, corpus):
    first = train(_cfg(corpus, steps=4), tmp_path / "a", progress=False)
    # lr 0: the fine-tune's weights stay those of the model it starts from
    train(
        _cfg(corpus, steps=1, init=str(first.path), lr=0.0, aux_lr=0.0),
        tmp_path / "b",
        progress=False,
    )
    start = {k: v.float() for k, v in first.net.state_dict().items()}
    got = _weights(tmp_path / "b")
    params = [k for k in got if "_cdf" not in k and "offset" not in k and "length" not in k]
    assert params and all(torch.equal(got[k], start[k]) for k in params)
    fresh = train(_cfg(corpus, steps=1), tmp_path / "c", progress=False)
    assert not all(torch.equal(fresh.net.state_dict()[k].float(), start[k]) for k in params)
    with pytest.raises(SaicmError, match="not a model file"):
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"not a model")
        train(_cfg(corpus, init=str(bad)), tmp_path / "e", progress=False)
    assert not (tmp_path / "e").exists()  # failed before the run folder was made
    with pytest.raises(SaicmError, match="--init"):
        train(
            _cfg(corpus, init=str(first.path), arch_config={"N": 32, "M": 64}),
            tmp_path / "d",
            progress=False,
        )


def test_validation_and_config_are_written(tmp_path, corpus):
    images, masks = corpus
    run = tmp_path / "run"
    cfg = _cfg(corpus, steps=4, val_images=str(images), val_masks=str(masks), val_every=2)
    train(cfg, run, progress=False)
    with open(run / "val.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert all(float(r["bpp"]) > 0 and 0 < float(r["psnr"]) < 60 and "psnr_mask" in r for r in rows)
    assert TrainConfig.from_file(run / "config.yaml") == cfg
    assert (run / "tensorboard").is_dir()


def test_bf16_autocast_trains(tmp_path, corpus):
    run = tmp_path / "run"
    train(_cfg(corpus, amp="bf16", steps=30), run, progress=False)
    losses = _losses(run)
    assert np.isfinite(losses).all() and np.mean(losses[-2:]) < np.mean(losses[:2])


def _cli_config(tmp_path, corpus) -> Path:
    import yaml

    images, masks = corpus
    path = tmp_path / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "images": str(images),
                "masks": str(masks),
                "arch": "mbt2018-mean",
                "arch_config": {"N": 32, "M": 48},
                "crop": 64,
                "steps": 4,
                "batch_size": 4,
                "lr": 1e-3,
                "milestones": [],
                "checkpoint_every": 2,
                "log_every": 1,
            }
        )
    )
    return path


def test_two_process_ddp_agrees_with_one_process_accumulating(tmp_path, corpus, torchrun):
    config = _cli_config(tmp_path, corpus)
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    torchrun("saicm.train", "--config", str(config), "-o", str(ddp))
    from saicm.cli import main

    assert main(["train", "--config", str(config), "--accumulate", "2", "-o", str(single)]) == 0
    a, b = _weights(ddp), _weights(single)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)
    assert len(_losses(ddp)) == 4  # one log, written by rank 0


def test_cli_overrides_the_config_file(tmp_path, corpus, capsys):
    from saicm.cli import main

    config = _cli_config(tmp_path, corpus)
    run = tmp_path / "run"
    assert (
        main(["train", "--config", str(config), "--steps", "2", "--lmbda", "0.01", "-o", str(run)])
        == 0
    )
    saved = TrainConfig.from_file(run / "config.yaml")
    assert (saved.steps, saved.lmbda, saved.crop) == (2, 0.01, 64)
    assert "exported edge-mbt2018-mean-0.01" in capsys.readouterr().out
    assert main(["train", "--config", str(config), "-o", str(run)]) == 1  # exists: needs --resume
    bad = tmp_path / "bad.yaml"
    bad.write_text("stepz: 3\n")
    assert main(["train", "--config", str(bad), "-o", str(tmp_path / "r2")]) == 1
    assert "unknown settings stepz" in capsys.readouterr().err


def test_outside_weight_counts_errors_outside_the_mask():
    torch.manual_seed(0)
    x, x_hat = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    mask = (torch.rand(1, 1, 8, 8) > 0.5).float()
    out = {"x_hat": x_hat, "likelihoods": {"y": torch.full((1, 4, 2, 2), 0.5)}}
    err = (x_hat - x) ** 2
    inside, outside = (err * mask).mean(), (err * (1 - mask)).mean()
    for w in (0.0, 0.1, 1.0):
        got = RateDistortionLoss(0.05, outside=w)(out, x, mask)["mse"]
        assert torch.allclose(got, inside + w * outside)
    # weight 1 is plain MSE
    plain = RateDistortionLoss(0.05)(out, x)["mse"]
    assert torch.allclose(RateDistortionLoss(0.05, outside=1.0)(out, x, mask)["mse"], plain)


def _lrs(run) -> dict[int, float]:
    with open(run / "train.csv") as f:
        return {int(r["step"]): float(r["lr"]) for r in csv.DictReader(f)}


def _killed_after(monkeypatch, last: int):
    """Stop a run (as a kill does) when it logs step ``last + 1``."""
    from saicm.utils.runs import RunLogs

    row = RunLogs.row

    def dying(self, name, step, values):
        if step > last:
            raise KeyboardInterrupt
        row(self, name, step, values)

    monkeypatch.setattr(RunLogs, "row", dying)
    return lambda: monkeypatch.setattr(RunLogs, "row", row)


def test_resume_with_more_steps_runs_the_new_schedule_and_records_both(
    tmp_path, corpus, monkeypatch
):
    import yaml

    run = tmp_path / "run"
    cfg = _cfg(corpus, steps=10, checkpoint_every=2, log_every=1, milestones=[0.9, 0.96])
    revive = _killed_after(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, progress=False)
    revive()
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 4
    model = train(TrainConfig(**{**vars(cfg), "steps": 20}), run, resume=True, progress=False)
    lrs = _lrs(run)
    # the new schedule: milestones at 0.9 * 20 = 18 and 0.96 * 20 = 19 (not at 9 and 10)
    assert [lrs[s] for s in (1, 4, 5, 10, 11, 18)] == [1e-3] * 6
    assert lrs[19] == pytest.approx(1e-4) and lrs[20] == pytest.approx(1e-5)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["steps"] == 20
    segments = [(h["from_step"], h["to_step"], h["steps"]) for h in saved["history"]]
    assert segments == [(0, 4, 10), (4, 20, 20)]
    assert saved["history"][0]["milestone_steps"] == [9, 10]
    assert model.card["history"] == saved["history"] and model.card["steps"] == 20


def test_resume_with_another_lr_trains_at_it(tmp_path, corpus, monkeypatch, capsys):
    run = tmp_path / "run"
    cfg = _cfg(corpus, steps=10, checkpoint_every=2, log_every=1, lr=1e-6, milestones=[])
    revive = _killed_after(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, progress=False)
    revive()
    train(TrainConfig(**{**vars(cfg), "lr": 1e-3}), run, resume=True, progress=False)
    lrs = _lrs(run)
    assert [lrs[s] for s in range(1, 11)] == [1e-6] * 4 + [1e-3] * 6
    assert "resuming at step 4 with lr 1e-06 -> 0.001" in capsys.readouterr().out
    saved = TrainConfig.from_file(run / "config.yaml")
    assert saved.lr == 1e-3


def test_resume_refuses_a_setting_that_defines_the_run(tmp_path, corpus):
    run = tmp_path / "run"
    cfg = _cfg(corpus, steps=4, checkpoint_every=2)
    train(cfg, run, progress=False)
    for k, v in [("lmbda", 0.01), ("crop", 128), ("batch_size", 4), ("seed", 1)]:
        with pytest.raises(SaicmError, match=rf"--resume: {k} was .* now {v}; a resumed run"):
            train(TrainConfig(**{**vars(cfg), k: v, "steps": 8}), run, resume=True, progress=False)
    with pytest.raises(SaicmError, match="--steps 3 is below the 4 steps already run"):
        train(TrainConfig(**{**vars(cfg), "steps": 3}), run, resume=True, progress=False)


def test_resume_refuses_other_pictures_under_the_same_folder(tmp_path, corpus, photo):
    images, _masks = corpus
    run = tmp_path / "run"
    cfg = _cfg(corpus, steps=4, checkpoint_every=2)
    train(cfg, run, progress=False)
    # another picture of the same size under the same name, as a re-downloaded or regenerated
    # set would bring: the run's claim "trained on images/" would silently mix two sets
    Image.fromarray(photo[100:260, 50:242]).save(images / "p0.png")
    with pytest.raises(SaicmError, match=r"--resume: the files in .*images or .*masks are not"):
        train(TrainConfig(**{**vars(cfg), "steps": 8}), run, resume=True, progress=False)


def test_every_setting_has_a_resume_rule():
    import dataclasses

    from saicm.train.config import RESUME_APPLIED, RESUME_FIXED

    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"history"}
    assert set(RESUME_APPLIED) | set(RESUME_FIXED) == names
    assert not set(RESUME_APPLIED) & set(RESUME_FIXED)


def test_zero_one_masks_train_on_the_mask_and_the_fraction_is_recorded(tmp_path, corpus, capsys):
    _images, masks = corpus
    for m in masks.glob("*.png"):  # as 0/1 uint8, what fromarray(mask.astype(uint8)) writes
        on = np.asarray(Image.open(m)).astype(np.uint8)
        Image.fromarray(on).save(m)
    run = tmp_path / "run"
    model = train(_cfg(corpus, steps=2), run, progress=False)
    assert model.card["mask_fraction"] == pytest.approx(20 / 160)  # every 8th row of 160
    assert "mean mask fraction 0.1250 over 2 masks" in capsys.readouterr().out
    with open(run / "train.csv") as f:
        assert all(float(r["mse"]) > 0 for r in csv.DictReader(f))


def test_empty_or_grey_masks_are_refused_by_name(tmp_path, corpus):
    _images, masks = corpus
    Image.fromarray(np.zeros((160, 192), np.uint8)).save(masks / "p0.png")
    Image.fromarray(np.zeros((160, 192), np.uint8)).save(masks / "p1.png")
    with pytest.raises(SaicmError, match=r"every mask is empty.*p0\.png.*p1\.png"):
        train(_cfg(corpus), tmp_path / "run", progress=False)
    grey = np.arange(160 * 192).reshape(160, 192) % 7
    Image.fromarray(grey.astype(np.uint8)).save(masks / "p1.png")
    with pytest.raises(SaicmError, match=r"p1\.png: not a binary mask: 7 different"):
        train(_cfg(corpus), tmp_path / "run", progress=False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lmbda": float("nan")}, r"lmbda nan: expected a finite number > 0"),
        ({"lr": float("inf")}, r"lr inf: expected a finite number >= 0"),
        ({"lr": 1e9}, r"lr 1000000000.0: expected a finite number >= 0 and <= 1"),
    ],
)
def test_non_finite_or_absurd_settings_are_refused_before_training(
    tmp_path, corpus, change, message
):
    with pytest.raises(SaicmError, match=message):
        train(_cfg(corpus, steps=6, clip=0.0, **change), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_non_finite_loss_names_its_cause(corpus):
    """Settings that pass validation can still diverge: the hint then checks the inputs first
    (a config built in code, unvalidated, can carry a NaN lambda), then names the optimiser."""
    import torch

    from saicm.train.loop import _nan_hint

    finite = {"bpp": float("nan"), "mse": 0.1}
    batch = torch.zeros(1, 3, 8, 8)
    bad_lmbda = dataclasses.replace(_cfg(corpus), lmbda=float("nan"))
    assert _nan_hint(bad_lmbda, finite, batch, 1e-4) == (
        "--lmbda is nan: it must be a finite number above 0"
    )
    bad_lr = dataclasses.replace(_cfg(corpus), lr=float("inf"))
    assert _nan_hint(bad_lr, finite, batch, 1e-4).startswith("--lr is inf")
    nan_batch = torch.full((1, 3, 8, 8), float("nan"))
    assert "non-finite values" in _nan_hint(_cfg(corpus), finite, nan_batch, 1e-4)
    hint = _nan_hint(_cfg(corpus, amp="off"), finite, batch, 0.5)
    assert hint == "settings and data are finite, the training diverged (bpp not finite): " + (
        "lower --lr (now 0.5)"
    )


def test_cli_resume_with_a_config_file_applies_it_or_refuses_it(tmp_path, corpus, capsys):
    import yaml

    from saicm.cli import main

    config = _cli_config(tmp_path, corpus)
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "-o", str(run)]) == 0
    more = tmp_path / "more.yaml"
    more.write_text(yaml.safe_dump({"steps": 6, "lr": 5e-4}))
    assert main(["train", "--config", str(more), "-o", str(run), "--resume"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["steps"], saved["lr"]) == (6, 5e-4)
    assert [(h["from_step"], h["to_step"], h["lr"]) for h in saved["history"]] == [
        (0, 4, 1e-3),
        (4, 6, 5e-4),
    ]
    assert [v for s, v in _lrs(run).items() if s > 4] == [5e-4, 5e-4]
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"steps": 8, "crop": 128}))
    capsys.readouterr()
    assert main(["train", "--config", str(other), "-o", str(run), "--resume"]) == 1
    assert "--resume: crop was 64 in this run, now 128" in capsys.readouterr().err

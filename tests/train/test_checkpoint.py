"""Checkpoints hold only tensors, numbers, strings and containers; one that needs unpickling
(a run folder someone hands over) is refused without running anything."""

from __future__ import annotations

import pytest
import torch
from conftest import CodeRunningPickle

from saicm.errors import SaicmError
from saicm.train import TrainConfig, train


@pytest.fixture()
def corpus(make_corpus):
    return make_corpus({"p": (0, 0, 64, 64)})


def _cfg(corpus, **kw) -> TrainConfig:
    images, masks = corpus
    base = dict(
        images=str(images),
        masks=str(masks),
        arch_config={"N": 32, "M": 48},
        steps=2,
        batch_size=1,
        crop=64,
        checkpoint_every=1,
        log_every=1,
    )
    return TrainConfig(**{**base, **kw})


def test_checkpoint_loads_weights_only_and_resumes(tmp_path, corpus):
    run = tmp_path / "run"
    train(_cfg(corpus, steps=1), run, progress=False)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)  # no unpickling needed
    assert ckpt["step"] == 1
    assert "sched" not in ckpt  # the LR of every step follows from the recorded settings
    assert [seg["from_step"] for seg in ckpt["history"]] == [0]
    model = train(_cfg(corpus, steps=2), run, resume=True, progress=False)
    assert model is not None
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 2


def test_pickled_checkpoint_is_refused_without_running(tmp_path, corpus):
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "MARKER"
    torch.save({"model": CodeRunningPickle(marker), "step": 1}, run / "checkpoint.pt")
    with pytest.raises(SaicmError) as info:
        train(_cfg(corpus), run, resume=True, progress=False)
    assert not marker.exists()
    assert "never unpickles" in str(info.value)
    assert "\n" not in str(info.value)
    assert not (run / "config.yaml").exists()  # refused before anything was written


def test_cli_resume_of_a_handed_run_folder(tmp_path, corpus, capsys):
    from saicm.cli import main

    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "MARKER"
    torch.save({"model": CodeRunningPickle(marker), "step": 1}, run / "checkpoint.pt")
    images, masks = corpus
    args = ["--images", str(images), "--masks", str(masks), "--crop", "64", "--batch-size", "1"]
    assert main(["train", "-o", str(run), "--resume", *args]) == 1
    assert not marker.exists()
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("saicm: error:")]
    assert len(errors) == 1 and "checkpoint.pt" in errors[0] and "never unpickles" in errors[0]
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt"]


@pytest.mark.parametrize(
    ("setting", "value", "reason"),
    [
        ("lmbda", -0.05, "lmbda -0.05"),
        ("lmbda", float("nan"), "lmbda nan"),
        ("lr", float("inf"), "lr inf"),
        ("checkpoint_every", 0, "checkpoint_every 0"),
        ("steps", 0, "steps 0"),
        ("workers", -1, "workers -1"),
        ("clip", -1.0, "clip -1.0"),
        ("name", "a/b", "name 'a/b'"),
        ("object_crops", 2.0, "object_crops 2.0"),
        ("milestones", [0.5, 1.5], "milestone 1.5"),
        ("steps", "ten", "steps 'ten'"),
        ("lr", True, "lr True"),
        ("arch_config", {"N": -1, "M": 48}, "arch_config.N -1"),
        ("arch_config", {"Q": 3}, "has no setting Q"),
    ],
)
def test_config_values_are_checked_before_work(tmp_path, corpus, setting, value, reason):
    run = tmp_path / "run"
    with pytest.raises(SaicmError, match=reason.replace("(", r"\(")):
        train(_cfg(corpus, **{setting: value}), run, progress=False)
    assert not run.exists()

"""Long steps say what they do: plain log lines off a terminal, validation on the console, and
what survives Ctrl-C."""

from __future__ import annotations

import csv
import re
import sys

import pytest

from saicm.cli import main
from saicm.train import TrainConfig, train
from saicm.utils.progress import PlainProgress, progress


def test_off_a_terminal_progress_is_plain_lines_at_each_tenth(capsys):
    bar = progress(40, "run", "step")  # pytest's stderr is not a terminal
    assert isinstance(bar, PlainProgress)
    for _ in range(40):
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert "\r" not in "".join(lines)
    assert [int(re.match(r"run: (\d+)/40 step", ln).group(1)) for ln in lines] == list(
        range(4, 41, 4)
    )
    assert lines[-1].startswith("run: 40/40 step (100%), ") and "left" not in lines[-1]
    assert "left" in lines[0]
    silent = progress(10, "x", disable=True)
    silent.update(10)
    assert capsys.readouterr().err == ""


@pytest.fixture()
def corpus(make_corpus):
    return make_corpus({"p0": (0, 0, 160, 192), "p1": (200, 240, 160, 192)})


def test_training_prints_its_validation_and_export(tmp_path, corpus, capsys):
    images, masks = corpus
    cfg = TrainConfig(
        images=str(images), masks=str(masks), loss="edge", lmbda=0.05, arch="mbt2018-mean",
        arch_config={"N": 32, "M": 48}, steps=4, batch_size=2, crop=64, checkpoint_every=2,
        log_every=2, val_images=str(images), val_masks=str(masks), val_every=2,
    )  # fmt: skip
    train(cfg, tmp_path / "run")
    err = capsys.readouterr().err
    assert "\r" not in err
    with open(tmp_path / "run" / "val.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:  # the same numbers as the log, on the console
        shown = ", ".join(f"{k} {float(v):.4g}" for k, v in row.items() if k != "step")
        assert f"saicm: step {row['step']}: validation {shown}" in err
    assert f"saicm: exporting {tmp_path / 'run' / 'model.pt'}" in err
    assert re.search(r"4/4 step \(100%\)", err)


def test_ctrl_c_says_what_survives_and_how_to_continue(tmp_path, corpus, monkeypatch, capsys):
    import saicm.train.cli as cli  # the train command lives there (issue 23)

    images, masks = corpus
    run = tmp_path / "run"
    argv = ["train", "--images", str(images), "--masks", str(masks), "--steps", "4", "-o", str(run)]

    def interrupted(cfg, out, args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_train_locked", interrupted)
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert err == (
        f"saicm: error: interrupted: no checkpoint was written yet, so {run} is not kept; run "
        "the command again"
    )

    def after_a_checkpoint(cfg, out, args):
        out.mkdir()
        (out / "checkpoint.pt").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_train_locked", after_a_checkpoint)
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert err == (
        f"saicm: error: interrupted: {run / 'checkpoint.pt'} keeps the run as of its last "
        f"checkpoint (every 500 steps); `saicm train -o {run} --resume` continues it"
    )

    def eval_interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("saicm.eval.runner.evaluate", eval_interrupted)
    out = tmp_path / "rep"
    assert main(["eval", "--images", str(images), "--codec", "png", "-o", str(out)]) == 130
    assert capsys.readouterr().err.strip().endswith(
        f"interrupted: the finished cells are kept in {out / 'cells'}; the same command "
        "continues from them"
    )
    assert sys.modules["saicm.cli"]._ON_INTERRUPT  # cleared by the next command's main

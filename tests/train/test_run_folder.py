"""The run folder (issue 21): a new run replaces no file, a resumed run removes only its own
stale temporaries, a full disk leaves the run resumable, config values are typed as strictly
as their flags."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from saicm.cli import main
from saicm.errors import SaicmError
from saicm.train import TrainConfig


@pytest.fixture()
def corpus(make_corpus):
    return make_corpus({"p": (0, 0, 64, 64)})


def _argv(corpus, run, steps: int) -> list[str]:
    images, masks = corpus
    small = images.parent / "small.yaml"  # a small network: a checkpoint of about 1 MB
    small.write_text("arch_config: {N: 32, M: 48}\n")
    return [
        "train", "--config", str(small), "--images", str(images), "--masks", str(masks),
        "--steps", str(steps),
        "--crop", "64", "--batch-size", "1", "--checkpoint-every", "1", "--log-every", "1",
        "-o", str(run),
    ]  # fmt: skip


def _config(tmp_path, corpus, text: str):
    images, masks = corpus
    path = tmp_path / "c.yaml"
    path.write_text(f"images: {images}\nmasks: {masks}\ncrop: 64\nsteps: 1\n{text}")
    return path


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("batch_size: '1'", "batch_size '1': expected an integer, written without quotes"),
        ('lr: "1e-4"', "lr '1e-4': expected a number, written without quotes"),
        ("seed: '0'", "seed '0': expected an integer"),
        ("milestones: ['0.5']", "milestone '0.5': expected a number"),
        ("arch_config: {N: '32'}", "arch_config.N '32': expected an integer"),
    ],
)
def test_a_config_string_is_not_a_number(tmp_path, corpus, capsys, line, reason):
    config = _config(tmp_path, corpus, line + "\n")
    assert main(["train", "--config", str(config), "-o", str(tmp_path / "run")]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("saicm:")]
    assert err == [f"saicm: error: {reason} (a string is not a number)"] or reason in err[0], err
    assert not (tmp_path / "run").exists()


def test_config_numbers_in_exponent_form_are_numbers(tmp_path, corpus):
    # PyYAML reads 1e-4 as a string (YAML 1.1); saicm's configs read it as YAML 1.2 does
    cfg = TrainConfig.from_file(_config(tmp_path, corpus, "lr: 1e-4\naux_lr: 1.0e-3\n"))
    cfg.validate()
    assert (cfg.lr, cfg.aux_lr) == (1e-4, 1e-3)
    with pytest.raises(SaicmError, match="batch_size '8': expected an integer"):
        TrainConfig(images="x", masks="y", batch_size="8").validate()  # the Python API too


def test_video_config_values_are_typed(tmp_path):
    from saicm.video.train import VideoTrainConfig

    with pytest.raises(SaicmError, match="batch_size '1': expected an integer"):
        VideoTrainConfig(video="clip.mp4", batch_size="1").validate()
    with pytest.raises(SaicmError, match="lr '5e-4': expected a number"):
        VideoTrainConfig(video="clip.mp4", lr="5e-4").validate()


def test_a_new_run_replaces_no_file(tmp_path, corpus, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("the user's notes")
    assert main(_argv(corpus, target, 1)) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"saicm: error: {target}: not a folder (a run writes a folder of files)"
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("the user's own config")
    assert main(_argv(corpus, run, 1)) == 1
    assert "already holds config.yaml, and a new run replaces no existing file" in (
        capsys.readouterr().err
    )
    assert (run / "config.yaml").read_text() == "the user's own config"
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


KILLED_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    from saicm.utils.io import atomic_path
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_resumed_run_removes_its_own_stale_temporaries(tmp_path, corpus):
    run = tmp_path / "run"
    assert main(_argv(corpus, run, 1)) == 0
    # SIGKILL while the checkpoint is written: its hidden temporary file stays behind
    r = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(run / "checkpoint.pt")])
    assert r.returncode == -9
    stale = [p for p in run.iterdir() if p.name.startswith(".checkpoint.pt.")]
    assert len(stale) == 1 and stale[0].name.endswith(".part.pt")
    (run / ".checkpoint.pt.mine").write_text("the user's")  # not a name atomic_path gives
    assert main([*_argv(corpus, run, 2), "--resume"]) == 0
    assert not stale[0].exists()
    assert (run / ".checkpoint.pt.mine").read_text() == "the user's"
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 2


def test_a_full_disk_leaves_the_run_resumable(tmp_path, corpus, small_disk, capsys):
    disk = small_disk(32 << 20)
    run = disk.path / "run"
    assert main(_argv(corpus, run, 1)) == 0
    size = (run / "checkpoint.pt").stat().st_size
    used = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
    disk.resize(used + size // 2 + (64 << 10))  # room for what is there, not a second checkpoint
    capsys.readouterr()
    assert main([*_argv(corpus, run, 3), "--resume"]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("saicm:")]
    assert err == [
        f"saicm: error: {run / 'checkpoint.pt'}: no space left on device (No space left on "
        "device); once there is space, continue with --resume"
    ]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 1  # intact
    assert not [p for p in run.iterdir() if ".part" in p.name]  # nothing half written
    disk.resize(32 << 20)
    assert main([*_argv(corpus, run, 3), "--resume"]) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 3
    assert (run / "model.pt").is_file()


FILE_SIZE_LIMIT = textwrap.dedent(
    """
    import resource, sys
    from saicm.cli import main
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))  # files past 64 KiB fail
    sys.exit(main(sys.argv[1:]))
    """
)


def test_a_file_size_limit_is_one_line_and_no_run_folder(tmp_path, corpus):
    # where no tmpfs can be mounted, ulimit -f fails writes as a full disk does (EFBIG)
    run = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMIT, *_argv(corpus, run, 1)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("saicm:")]
    assert err == [
        f"saicm: error: {run / 'checkpoint.pt'}: no space left under this process's file-size "
        "limit (ulimit -f) (File too large)"
    ], r.stderr
    assert not run.exists()  # a run that failed before its first checkpoint leaves no folder

"""``saicm video train``: checkpoints that run nothing, resumes that keep their schedule, a
frames cache trusted only when complete, bounded frame sizes."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch
import yaml
from conftest import CodeRunningPickle
from PIL import Image

from saicm.cli import main
from saicm.errors import SaicmError
from saicm.video import VideoTrainConfig, load_nerv, train_video


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """4 frames of 64x64 from a real photo, panning."""
    from skimage import data

    photo = data.astronaut()
    d = tmp_path_factory.mktemp("clip")
    for i in range(4):
        Image.fromarray(photo[100:164, 150 + 8 * i : 214 + 8 * i]).save(d / f"f{i:02d}.png")
    return d


def _cfg(clip_dir, **kw) -> VideoTrainConfig:
    base = {"epochs": 3, "checkpoint_every": 1, "size": "saicm-S"}
    return VideoTrainConfig(video=str(clip_dir), **{**base, **kw})


def test_a_crafted_checkpoint_runs_nothing(clip_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_video(_cfg(clip_dir), run, progress=False, stop_after=1) is None
    marker = tmp_path / "pwned"
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    torch.save({**state, "model": CodeRunningPickle(marker)}, run / "checkpoint.pt")
    with pytest.raises(SaicmError, match="refused without running it"):
        train_video(_cfg(clip_dir), run, resume=True, progress=False)
    argv = ["video", "train", str(clip_dir), "-o", str(run), "--resume", "--size", "saicm-S"]
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    err = [ln for ln in lines if ln.startswith("saicm: error:")]
    assert len(err) == 1 and lines[-1] == err[0]  # after the progress lines, one error line
    assert not marker.exists()


def test_a_checkpoint_that_records_no_settings_is_refused(clip_dir, tmp_path):
    run = tmp_path / "run"
    train_video(_cfg(clip_dir), run, progress=False, stop_after=1)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    torch.save({k: state[k] for k in ("model", "opt", "epoch", "keep")}, run / "checkpoint.pt")
    with pytest.raises(SaicmError, match="did not record its settings"):
        train_video(_cfg(clip_dir), run, resume=True, progress=False)


@pytest.mark.parametrize(
    ("change", "flag"),
    [({"lr": 1e-3}, "--lr"), ({"epochs": 6}, "--epochs"), ({"size": "saicm-M"}, "--size"),
     ({"warmup_start": 0.0}, "--warmup-start"), ({"seed": 3}, "--seed")],
)  # fmt: skip
def test_resume_refuses_a_changed_schedule(clip_dir, tmp_path, change, flag):
    run = tmp_path / "run"
    train_video(_cfg(clip_dir), run, progress=False, stop_after=1)
    before = (run / "config.yaml").read_text()
    with pytest.raises(SaicmError, match=f"--resume: {flag} .* differs from this run's"):
        train_video(_cfg(clip_dir, **change), run, resume=True, progress=False)
    assert (run / "config.yaml").read_text() == before  # config.yaml never claims it


def test_resume_applies_prune_settings_before_pruning_and_records_them(clip_dir, tmp_path):
    straight = _cfg(clip_dir, prune=0.3, prune_epochs=2, checkpoint_every=5)
    train_video(straight, tmp_path / "a", progress=False)
    train_video(_cfg(clip_dir), tmp_path / "b", progress=False, stop_after=2)
    train_video(straight, tmp_path / "b", resume=True, progress=False)
    a, b = load_nerv(tmp_path / "a"), load_nerv(tmp_path / "b")
    assert all(torch.equal(a[0].state_dict()[k], v) for k, v in b[0].state_dict().items())
    config = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    changed = config["history"][0]
    assert changed["epoch"] == 2
    assert changed["changed"]["prune"] == {"from": 0.0, "to": 0.3}
    assert changed["changed"]["checkpoint_every"] == {"from": 1, "to": 5}
    card = b[1]["card"]
    assert card["history"] == config["history"] and card["prune_epochs"] == 2
    assert (card["epochs"], card["lr"], card["warmup_start"]) == (3, 5e-4, 0.1)
    with open(tmp_path / "b" / "train.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5]
    # once pruning has run, its settings are fixed
    with pytest.raises(SaicmError, match=r"--prune 0.5 .*\(pruning has started\)"):
        train_video(_cfg(clip_dir, prune=0.5, prune_epochs=2), tmp_path / "b", resume=True)


def test_a_frame_copy_killed_half_way_is_made_again(clip_dir, tmp_path):
    run = tmp_path / "run"
    train_video(_cfg(clip_dir), run, progress=False, stop_after=1)
    # what a kill during the copy leaves: some frames, a hidden temp file, no clip.yaml and no
    # checkpoint yet (frames are copied before training starts)
    for f in ("clip.yaml", "checkpoint.pt"):
        (run / f).unlink()
    for i in (2, 3):
        (run / "frames" / f"frame_{i:05d}.png").unlink()
    (run / "frames" / ".frame_00002.png.x1y2.part.png").write_bytes(b"\x89PNG half")
    assert train_video(_cfg(clip_dir), run, resume=True, progress=False) == run / "model.pt"
    assert yaml.safe_load((run / "clip.yaml").read_text())["frames"] == 4
    assert load_nerv(run)[1]["frames"] == 4  # not 2
    assert sorted(p.name for p in (run / "frames").iterdir()) == [
        f"frame_{i:05d}.png" for i in range(4)
    ]


def test_a_cache_or_source_that_changed_is_refused(clip_dir, tmp_path):
    run = tmp_path / "run"
    train_video(_cfg(clip_dir), run, progress=False, stop_after=1)
    os.utime(clip_dir / "f01.png")  # touched, same pixels: still the run's frames
    train_video(_cfg(clip_dir), run, resume=True, progress=False, stop_after=2)
    src = tmp_path / "src"
    src.mkdir()
    for f in clip_dir.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    run2 = tmp_path / "run2"
    train_video(_cfg(src), run2, progress=False, stop_after=1)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(src / "f01.png")
    with pytest.raises(SaicmError, match="not the frames this run learns"):
        train_video(_cfg(src), run2, resume=True, progress=False)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(run / "frames" / "frame_00001.png")
    with pytest.raises(SaicmError, match="changed since they were made"):
        train_video(_cfg(clip_dir), run, resume=True, progress=False)


def test_frame_sizes_are_bounded_before_anything_is_read(clip_dir, tmp_path):
    for size in ("100000x100000", "4097x16", "3841x2161", "0x10", "axb", "10x10x10"):
        with pytest.raises(SaicmError, match="--frame-size"):
            train_video(_cfg(clip_dir, frame_size=size), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
    big = tmp_path / "big"
    big.mkdir()
    Image.fromarray(np.zeros((8, 4100, 3), np.uint8)).save(big / "f.png")
    with pytest.raises(SaicmError, match="give --frame-size"):
        train_video(_cfg(big), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_a_run_folder_inside_the_clip_is_refused(clip_dir, tmp_path):
    with pytest.raises(SaicmError, match="would mix with the clip"):
        train_video(_cfg(clip_dir), clip_dir / "run", progress=False)
    with pytest.raises(SaicmError, match="would mix with the clip"):
        train_video(_cfg(clip_dir), clip_dir, progress=False)
    assert not (clip_dir / "run").exists() and not (clip_dir / "frames").exists()


def test_config_values_read_back_on_resume_are_checked(clip_dir, tmp_path, capsys):
    run = tmp_path / "run"
    train_video(_cfg(clip_dir), run, progress=False, stop_after=1)
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "lr": float("nan")}))
    assert main(["video", "train", str(clip_dir), "-o", str(run), "--resume"]) == 1
    assert "saicm: error: lr nan: expected a finite number" in capsys.readouterr().err


def test_a_frames_cache_whose_clip_yaml_is_crafted_is_not_trusted(tmp_path):
    """A `clip.yaml` nested deeper than the YAML parser goes (RecursionError) or holding a
    number too long for int() (ValueError) vouches for nothing: the frames are read again."""
    from saicm.video.run_frames import CLIP, _read_cache

    for text in ("[" * 100_000, "frames: " + "9" * 5000):
        (tmp_path / CLIP).write_text(text)
        assert _read_cache(tmp_path) is None

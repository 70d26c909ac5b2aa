"""``saicm video`` command lines: every numeric option range-checked before any work, hints
that name the real option, outputs that would overwrite an input refused, ffmpeg failures
(a full disk) reported with nothing left behind."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from saicm.cli import main
from saicm.video import NeRV, encode_nerv, nerv_config


@pytest.fixture(scope="module")
def snv(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("snv") / "clip.snv"
    net = NeRV(nerv_config(64, 64, "saicm-S"))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(4)  # busy frames: PNGs and an mp4 of several kB
    encode_nerv(net, 6, fps=25.0, path=path)
    return path


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    d = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (75, 100, 3), np.uint8)).save(d / f"f{i}.png")
    return d


BAD_TRAIN = [
    ("--epochs", "0"), ("--epochs", "-3"), ("--epochs", "1.5"), ("--lr", "-1"),
    ("--lr", "nan"), ("--lr", "0"), ("--lr", "inf"), ("--beta", "2"), ("--prune", "1"),
    ("--prune", "-0.1"), ("--prune-epochs", "-1"), ("--frame-size", "100000x100000"),
    ("--frame-size", "416"), ("--max-frames", "0"), ("--frame-step", "0"),
    ("--batch-size", "0"), ("--checkpoint-every", "0"), ("--seed", "-1"), ("--size", "XL"),
    ("--loss", "l2"), ("--warmup", "1"), ("--warmup-start", "2"), ("--stop-after", "0"),
]  # fmt: skip


@pytest.mark.parametrize(("option", "value"), BAD_TRAIN)
def test_train_options_are_range_checked_before_any_work(frames, tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_:
        main(["video", "train", str(frames), "-o", str(tmp_path / "run"), option, value])
    assert exit_.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "argv",
    [["encode", "RUN", "--bits", "1"], ["encode", "RUN", "--bits", "17"],
     ["eval", "--video", "V", "--max-frames", "0"], ["eval", "--video", "V", "--frame-step", "0"],
     ["eval", "--video", "V", "--frame-size", "0x0"]],
)  # fmt: skip
def test_other_numeric_options_are_range_checked(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(["video", *argv, "-o", str(tmp_path / "out.snv")])
    assert exit_.value.code == 2 and "argument --" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("anchor", "why"),
    [("hevc:99", "QPs 0-51"), ("vvc:-1", "QPs 0-63"), ("hevc:x", "QPs 0-51"),
     ("av1:30", "unknown codec 'av1'")],
)  # fmt: skip
def test_unknown_anchor_or_qp_is_one_clear_line(frames, tmp_path, capsys, anchor, why):
    argv = ["video", "eval", "--video", str(frames), "--anchor", anchor, "--no-detect"]
    assert main([*argv, "-o", str(tmp_path / "rep")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("saicm: error: --anchor") and why in err[0]
    assert not (tmp_path / "rep").exists()


def test_too_small_frames_name_the_real_option(frames, tmp_path, capsys):
    argv = ["video", "train", str(frames), "--epochs", "1", "--size", "saicm-S"]
    assert main([*argv, "-o", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "resize with --frame-size WxH" in err and "--size WxH" not in err
    assert main([*argv, "-o", str(tmp_path / "b"), "--frame-size", "96x64"]) == 0  # the hint works
    err = capsys.readouterr().err  # long steps say what they do, in plain lines off a terminal
    assert f"saicm: reading the frames of {frames}\n" in err
    assert f"saicm: caching 3 frames in {tmp_path / 'b' / 'frames'}\n" in err
    assert "nerv saicm-S: 1/1 epoch (100%)" in err and "\r" not in err


def test_outputs_that_resolve_to_an_input_are_refused(snv, frames, tmp_path, capsys):
    before = snv.read_bytes()
    assert main(["video", "decode", str(snv), "-o", str(snv)]) == 1
    assert snv.read_bytes() == before
    argv = ["video", "eval", "--video", str(frames), "--no-detect", "-o", str(frames)]
    assert main(argv) == 1
    argv = ["video", "eval", "--video", str(frames), "--snv", str(snv), "-o", str(snv)]
    assert main(argv) == 1
    assert main(["video", "train", str(frames), "-o", str(frames), "--frame-size", "96x64"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(e.startswith("saicm: error:") for e in err)
    assert sorted(p.name for p in frames.iterdir()) == ["f0.png", "f1.png", "f2.png"]


FULL_DISK = textwrap.dedent(
    """
    import resource, sys
    from saicm.cli import main
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))  # files past 2 kB: a full disk
    snv, *outs = sys.argv[1:]
    print(*[main(["video", "decode", snv, "-o", out]) for out in outs])
    """
)


def test_a_full_disk_is_an_error_and_leaves_nothing(snv, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    outs = [full / "x.mp4", full / "frames"]
    r = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(snv), *map(str, outs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and r.stdout.split() == ["1", "1"], r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("saicm: error:") for line in lines)
    assert "x.mp4: ffmpeg could not write the video" in lines[0]
    assert lines[1].endswith("frames: cannot write frame 0 (File too large)")
    left = [p for p in full.rglob("*") if p.is_file()]
    assert left == []  # no 0-byte mp4, no half set of frames, no temp file


def test_decode_writes_a_whole_video_and_frames(snv, tmp_path):
    from saicm.video import read_clip

    assert main(["video", "decode", str(snv), "-o", str(tmp_path / "x.mp4")]) == 0
    assert read_clip(tmp_path / "x.mp4").frames.shape == (6, 64, 64, 3)
    assert main(["video", "decode", str(snv), "-o", str(tmp_path / "f")]) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == [
        f"frame_{i:05d}.png" for i in range(6)
    ]
    # another decode into the same folder would mix two clips' frames: refused
    assert main(["video", "decode", str(snv), "-o", str(tmp_path / "f")]) == 1

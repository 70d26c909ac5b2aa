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
    limit = "no space left under this process's file-size limit (ulimit -f) (File too large)"
    assert lines[0].endswith(f"x.mp4: {limit}")  # found by a probe write: ffmpeg only failed
    assert lines[1].endswith(f"frames: cannot write frame 0: {limit}")
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


def _run_with_model(snv, tmp_path):
    """A run folder whose model.pt is the blob ``video train`` writes, for ``snv``'s network."""
    from saicm.video import read_snv
    from saicm.video.train import FORMAT

    stream = read_snv(snv)
    run = tmp_path / "run"
    run.mkdir()
    blob = {
        "format": FORMAT,
        "config": stream.net.config.to_dict(),
        "frames": stream.frames,
        "fps": stream.fps,
        "state_dict": stream.net.state_dict(),
    }
    torch.save(blob, run / "model.pt")
    return run


def test_hard_links_to_an_input_are_refused_as_encode_and_decode_do(snv, tmp_path, capsys):
    own = tmp_path / "v.snv"
    own.write_bytes(snv.read_bytes())
    (tmp_path / "hard.mp4").hardlink_to(own)
    assert main(["video", "decode", str(own), "-o", str(tmp_path / "hard.mp4")]) == 1
    assert "would overwrite the input" in capsys.readouterr().err
    assert own.read_bytes() == snv.read_bytes()
    run = _run_with_model(snv, tmp_path)
    model = (run / "model.pt").read_bytes()
    (run / "x.snv").hardlink_to(run / "model.pt")
    assert main(["video", "encode", str(run), "-o", str(run / "x.snv")]) == 1
    assert "would overwrite the input" in capsys.readouterr().err
    assert (run / "model.pt").read_bytes() == model


def test_video_outputs_that_exist_are_replaced_only_with_overwrite(snv, tmp_path, capsys):
    mp4 = tmp_path / "holiday.mp4"
    mp4.write_bytes(b"the user's video")
    assert main(["video", "decode", str(snv), "-o", str(mp4)]) == 1
    assert "holiday.mp4: already exists" in capsys.readouterr().err
    assert mp4.read_bytes() == b"the user's video"
    assert main(["video", "decode", str(snv), "-o", str(mp4), "--overwrite"]) == 0
    assert mp4.read_bytes() != b"the user's video"
    run = _run_with_model(snv, tmp_path)
    out = tmp_path / "old.snv"
    out.write_bytes(b"older")
    assert main(["video", "encode", str(run), "-o", str(out)]) == 1
    assert "old.snv: already exists" in capsys.readouterr().err
    assert main(["video", "encode", str(run), "-o", str(out), "--overwrite"]) == 0
    assert out.read_bytes()[:4] == b"SANV"


VIDEO_TRAIN_LIMIT = textwrap.dedent(
    """
    import resource, sys
    from saicm.cli import main
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 17, 1 << 17))  # files past 128 KiB fail
    sys.exit(main(sys.argv[1:]))
    """
)


def test_video_train_on_a_full_disk_leaves_no_run_folder(frames, tmp_path):
    run = tmp_path / "run"
    argv = ["video", "train", str(frames), "-o", str(run), "--epochs", "1",
            "--frame-size", "64x64", "--size", "saicm-S"]  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-c", VIDEO_TRAIN_LIMIT, *argv], capture_output=True, text=True
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    # progress lines ("saicm: reading the frames ...") come first; the error is one line
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("saicm: error:")]
    assert len(err) == 1 and "no space left under this process's file-size limit" in err[0]
    assert r.stderr.strip().splitlines()[-1] == err[0]
    assert str(run / "checkpoint.pt") in err[0], err
    assert not run.exists()  # no run folder without a checkpoint


def test_video_train_resume_refuses_a_string_in_its_config(frames, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["video", "train", str(frames), "-o", str(run), "--epochs", "1",
            "--frame-size", "64x64", "--size", "saicm-S"]  # fmt: skip
    assert main(argv) == 0
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("batch_size: 1", "batch_size: '1'"))
    capsys.readouterr()
    assert main([*argv[:-4], "--epochs", "2", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "batch_size '1': expected an integer, written without quotes" in err


def test_decode_into_a_folder_of_frames_refuses_or_replaces_them(snv, tmp_path, capsys):
    out = tmp_path / "frames"
    out.mkdir()
    for i in range(9):  # an older, longer clip's frames, and a file that is not a frame
        Image.new("RGB", (8, 8), (i, 0, 0)).save(out / f"frame_{i:05d}.png")
    (out / "notes.txt").write_text("mine")
    before = sorted(p.name for p in out.iterdir())
    assert main(["video", "decode", str(snv), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds frames" in err[0] and "--overwrite" in err[0]
    assert sorted(p.name for p in out.iterdir()) == before  # nothing touched
    assert main(["video", "decode", str(snv), "-o", str(out), "--overwrite"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"frame_{i:05d}.png" for i in range(6)] + ["notes.txt"]  # 6, not 9
    assert Image.open(out / "frame_00000.png").size == (64, 64)
    assert (out / "notes.txt").read_text() == "mine"


def test_a_frames_folder_with_a_dot_in_its_name_is_a_folder(snv, tmp_path):
    out = tmp_path / "clip.v1"
    assert main(["video", "decode", str(snv), "-o", str(out)]) == 0
    assert main(["video", "decode", str(snv), "-o", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:05d}.png" for i in range(6)]

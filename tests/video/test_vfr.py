"""Variable frame rate: every video command sees the clip's real frames (none repeated to reach a
constant rate), bpp is over those frames, and the decoded clip lasts as long as the source."""

from __future__ import annotations

import json
import subprocess
import warnings

import numpy as np
import pytest
from PIL import Image

from saicm.cli import main
from saicm.errors import SaicmWarning
from saicm.eval.codecs import ffmpeg_exe
from saicm.video.bitstream import read_snv
from saicm.video.frames import packet_times, read_clip

#: Each frame's time on screen (s): 7 frames over 1.64 s, 0.04 to 0.52 s apart (multiples of
#: 0.04 s, the concat demuxer's grid for still images).
DURATIONS = [0.04, 0.52, 0.04, 0.4, 0.04, 0.28, 0.32]


@pytest.fixture(scope="module")
def vfr(tmp_path_factory):
    """A real variable-rate H.264 mp4 (ffmpeg's concat demuxer with per-frame durations,
    ``-fps_mode vfr``): 7 frames of 64x48 from a photo, panning."""
    from skimage import data

    d = tmp_path_factory.mktemp("vfr")
    photo = data.astronaut()
    lines = []
    for i, seconds in enumerate(DURATIONS):
        Image.fromarray(photo[100:148, 150 + 6 * i : 214 + 6 * i]).save(d / f"f{i}.png")
        lines += [f"file 'f{i}.png'", f"duration {seconds}"]
    (d / "list.txt").write_text("\n".join(lines) + "\n")
    clip = d / "vfr.mp4"
    cmd = [ffmpeg_exe(), "-v", "error", "-f", "concat", "-i", str(d / "list.txt"), "-fps_mode",
           "vfr", "-c:v", "libx264", "-crf", "10", "-pix_fmt", "yuv444p", str(clip)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return clip


def _seconds(video) -> tuple[int, float]:
    """Frames and duration of a video file as ffmpeg decodes it (the frames it shows)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.count_frames_and_secs(str(video))


def test_the_real_frames_are_read_at_their_average_rate(vfr):
    times, last = packet_times(vfr)
    assert len(times) == 7
    # the clip's gaps are those it was made with; the concat demuxer gives the last frame 0.04 s
    assert np.diff(times) == pytest.approx(DURATIONS[:-1], abs=1e-3)
    seconds = times[-1] + last
    assert seconds == pytest.approx(_seconds(vfr)[1], abs=1e-3)
    with pytest.warns(SaicmWarning, match="variable frame rate .* keeps the 7 real frames"):
        clip = read_clip(vfr)
    assert clip.frames.shape == (7, 48, 64, 3)  # was 55: ffmpeg repeated frames to a fixed rate
    assert clip.fps == pytest.approx(7 / seconds)
    with pytest.warns(SaicmWarning):
        half = read_clip(vfr, step=2)
    # frames 0, 2, 4, 6 of the file, over the same span
    assert half.frames.shape[0] == 4 and half.fps == pytest.approx(4 / seconds)
    assert np.array_equal(half.frames, clip.frames[::2])


def test_a_constant_rate_clip_keeps_its_rate_and_says_nothing(tmp_path):
    from saicm.video.frames import write_clip

    rng = np.random.default_rng(0)
    out = write_clip(rng.integers(0, 256, (6, 32, 48, 3), np.uint8), tmp_path / "c.mp4", 25.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SaicmWarning)  # no warning at a constant rate
        clip = read_clip(out)
        two = read_clip(out, step=2)
    assert clip.frames.shape[0] == 6 and clip.fps == pytest.approx(25.0)
    # every 2nd frame keeps the clip's duration: 3 frames at 12.5 fps (was 25: half as long)
    assert two.frames.shape[0] == 3 and two.fps == pytest.approx(12.5)


def test_train_encode_decode_eval_agree_on_the_real_frames(vfr, tmp_path, capsys):
    run, snv = tmp_path / "run", tmp_path / "clip.snv"
    argv = ["video", "train", str(vfr), "-o", str(run), "--size", "saicm-S", "--epochs", "1"]
    assert main(argv) == 0
    assert "variable frame rate" in capsys.readouterr().err
    assert main(["video", "encode", str(run), "-o", str(snv)]) == 0
    stream = read_snv(snv)
    assert stream.frames == 7
    assert stream.bpp == pytest.approx(8 * snv.stat().st_size / (7 * 48 * 64))  # not / 55
    source_seconds = _seconds(vfr)[1]
    assert main(["video", "decode", str(snv), "-o", str(tmp_path / "out.mp4")]) == 0
    frames, seconds = _seconds(tmp_path / "out.mp4")
    assert frames == 7 and seconds == pytest.approx(source_seconds, abs=0.02)  # was 12 s
    rep = tmp_path / "rep"
    assert main(["video", "eval", "--video", str(vfr), "--snv", str(snv), "--no-detect", "-o",
                 str(rep)]) == 0  # fmt: skip
    point = json.loads((rep / "results.json").read_text())["points"][0]
    assert point["bpp"] == pytest.approx(stream.bpp)


def test_video_annotations_pair_by_source_frame_number_size_and_category_name():
    """``saicm video eval --annotations``: image ids are the source's frame numbers (with
    ``--frame-step 2`` the frames read are 1, 3, 5), categories are matched by name, and a file
    of none of the frames or of frames at another size is refused."""
    from types import SimpleNamespace

    from saicm.errors import SaicmError
    from saicm.tasks.detection import COCO_NAMES
    from saicm.video.evaluate import _check_annotations

    judge = SimpleNamespace(categories=COCO_NAMES)
    gt = {
        "images": [{"id": i, "file_name": f"{i}.png", "height": 48, "width": 64} for i in (1, 3)],
        "annotations": [{"id": 1, "image_id": 3, "category_id": 0, "bbox": [1, 1, 9, 9]}],
        "categories": [{"id": 0, "name": "person"}],
    }
    with pytest.warns(SaicmWarning, match="matched by name"):
        labels, ids = _check_annotations(gt, [1, 3, 5], (48, 64), judge, "a.json")
    assert ids == [1, 3, None]  # frame 5 is not in the file: left out, not counted as missed
    assert labels.apply([{"category_id": 1, "image_id": 3}]) == [{"category_id": 0, "image_id": 3}]
    with pytest.raises(SaicmError, match="lists none of the 2 frames read"):
        _check_annotations(gt, [7, 9], (48, 64), judge, "a.json")
    with pytest.raises(SaicmError, match="frame 1 is annotated as 64x48, the frames read are 32x"):
        _check_annotations(gt, [1, 3], (24, 32), judge, "a.json")

"""SA-NeRV: a tiny NeRV learns a clip, .snv files code it exactly, bad input fails cleanly."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from saicm.cli import main
from saicm.codec.weight_coding import dequantize, quantize
from saicm.errors import BitstreamError, SaicmError
from saicm.eval.metrics import psnr
from saicm.video import (
    NeRV,
    VideoLoss,
    VideoTrainConfig,
    decode_frames,
    encode_nerv,
    load_nerv,
    nerv_config,
    read_clip,
    read_snv,
    train_video,
    write_clip,
)
from saicm.video.evaluate import code_video, evaluate_video
from saicm.video.nerv import choose_strides
from saicm.video.train import prune_masks


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """8 frames of 64x64: a window panning across a real photo."""
    from skimage import data

    photo = data.astronaut()
    d = tmp_path_factory.mktemp("clip")
    for i in range(8):
        Image.fromarray(photo[100:164, 150 + 6 * i : 214 + 6 * i]).save(d / f"f{i:02d}.png")
    return d


def _cfg(clip_dir, **kw) -> VideoTrainConfig:
    return VideoTrainConfig(
        video=str(clip_dir), **{"epochs": 30, "checkpoint_every": 5, "size": "saicm-S", **kw}
    )


@pytest.fixture(scope="module")
def trained(clip_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    train_video(_cfg(clip_dir, epochs=60), run, progress=False)
    return run


def test_strides_follow_the_frame_size():
    assert choose_strides(720, 1280) == (5, 2, 2, 2, 2)  # NeRV's 720p design: a 9x16 map
    assert choose_strides(240, 416) == (2, 2, 2, 2)
    with pytest.raises(SaicmError, match="--frame-size WxH"):
        choose_strides(241, 417)


def test_tiny_nerv_overfits_eight_frames(trained):
    with open(trained / "train.csv") as f:
        psnrs = [float(r["psnr"]) for r in csv.DictReader(f)]
    assert len(psnrs) == 60
    assert max(psnrs[-5:]) > psnrs[0] + 6  # dB: it learns the clip


def test_encode_decode_gives_the_dequantised_models_frames_exactly(trained, tmp_path):
    net, blob = load_nerv(trained)
    data = encode_nerv(net, blob["frames"], path=tmp_path / "c.snv")
    assert (tmp_path / "c.snv").read_bytes() == data
    stream = read_snv(tmp_path / "c.snv")
    assert stream.bpp == pytest.approx(8 * len(data) / (8 * 64 * 64))
    reference = NeRV(net.config)
    state = {}
    for k, v in net.state_dict().items():
        state[k] = dequantize(*quantize(v, 8)) if v.numel() >= 64 and v.dim() > 0 else v
    reference.load_state_dict(state)
    frames = decode_frames(stream.net, stream.frames)
    assert np.array_equal(frames, decode_frames(reference.eval(), 8))
    original = read_clip(trained / "frames").frames
    assert psnr(original, frames) > psnr(original, decode_frames(net, 8)) - 1.0


def test_pruning_and_quantisation_shrink_the_file(trained):
    net, _ = load_nerv(trained)
    params = sum(p.numel() for p in net.parameters())
    eight = len(encode_nerv(net, 8, bits=8))
    assert eight < 1.05 * params  # about a byte a weight (float32: 4 bytes)
    assert len(encode_nerv(net, 8, bits=4)) < 0.65 * eight
    keep = prune_masks(net, 0.6)
    kept = sum(int(m.sum()) for m in keep.values())
    assert kept == pytest.approx(0.4 * sum(m.numel() for m in keep.values()), rel=0.01)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if n in keep:
                p.mul_(keep[n])
    assert len(encode_nerv(net, 8, bits=8)) < 0.7 * eight


def test_sa_nerv_edge_term_is_zero_where_the_mask_is_empty():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    x_hat = torch.rand(2, 3, 32, 32, requires_grad=True)
    empty = torch.zeros(2, 1, 32, 32)
    res = VideoLoss("sa-nerv", beta=0.5)(x_hat, x, empty)
    assert res["edge"].item() == pytest.approx(0.0, abs=1e-7)
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    VideoLoss("sa-nerv")(x_hat, x, mask)["edge"].backward()
    grad = x_hat.grad.abs().sum(1)
    assert (grad[mask[:, 0] == 0] == 0).all() and grad[mask[:, 0] == 1].sum() > 0
    plain = VideoLoss("nerv")(x_hat, x)["loss"]
    assert VideoLoss("sa-nerv")(x_hat, x, empty)["loss"].item() == pytest.approx(plain.item())


def test_sa_nerv_trains_with_cached_edge_masks_and_resumes_exactly(clip_dir, tmp_path):
    cfg = _cfg(
        clip_dir, loss="sa-nerv", mask_source="felzenszwalb", epochs=6, prune=0.3, prune_epochs=2
    )
    train_video(cfg, tmp_path / "a", progress=False)
    assert len(list((tmp_path / "a" / "masks").glob("*.png"))) == 8
    half = _cfg(
        clip_dir,
        loss="sa-nerv",
        mask_source="felzenszwalb",
        epochs=6,
        prune=0.3,
        prune_epochs=2,
        checkpoint_every=1,
    )
    assert train_video(half, tmp_path / "b", progress=False, stop_after=3) is None  # "killed"
    with pytest.raises(SaicmError, match="--resume"):
        train_video(half, tmp_path / "b", progress=False)
    train_video(half, tmp_path / "b", resume=True, progress=False)
    a, b = load_nerv(tmp_path / "a")[0].state_dict(), load_nerv(tmp_path / "b")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    w = a["blocks.0.conv.weight"]
    assert 0.1 < float((w == 0).float().mean()) < 0.6  # pruned, and kept pruned by fine-tuning


def test_torchrun_two_processes_agree_with_one(clip_dir, tmp_path, torchrun):
    cfg = dict(epochs=3, batch_size=2, checkpoint_every=1)
    train_video(_cfg(clip_dir, **cfg), tmp_path / "one", progress=False)
    torchrun(
        "saicm",
        "video",
        "train",
        str(clip_dir),
        "-o",
        str(tmp_path / "two"),
        "--epochs",
        "3",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "1",
        "--size",
        "saicm-S",
    )
    a = load_nerv(tmp_path / "one")[0].state_dict()
    b = load_nerv(tmp_path / "two")[0].state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_cli_encode_decode_and_eval_against_hevc(trained, tmp_path, capsys):
    snv = tmp_path / "clip.snv"
    assert main(["video", "encode", str(trained), "-o", str(snv)]) == 0
    assert main(["video", "decode", str(snv), "-o", str(tmp_path / "dec.mp4")]) == 0
    assert main(["video", "decode", str(snv), "-o", str(tmp_path / "frames")]) == 0
    assert len(list((tmp_path / "frames").glob("*.png"))) == 8
    assert len(read_clip(tmp_path / "dec.mp4").frames) == 8
    out = tmp_path / "report"
    args = [
        "video",
        "eval",
        "--video",
        str(trained / "frames"),
        "--snv",
        f"nerv={snv}",
        "--anchor",
        "hevc:22,40",
        "--no-detect",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    points = {
        (p["codec"], p["setting"]): p
        for p in json.loads((out / "results.json").read_text())["points"]
    }
    assert points[("hevc", "22")]["psnr"] > points[("hevc", "40")]["psnr"]
    assert points[("hevc", "22")]["bpp"] > points[("hevc", "40")]["bpp"]
    assert points[("nerv", "clip.snv")]["bpp"] == pytest.approx(read_snv(snv).bpp)
    assert "| nerv |" in (out / "results.md").read_text()


def test_video_anchor_codes_every_frame(clip_dir):
    frames = read_clip(clip_dir).frames[:, :63, :61]  # odd sizes: 4:2:0 padding
    decoded, nbytes, _ = code_video(frames, "vvc", 37)
    assert decoded.shape == frames.shape and 0 < nbytes < frames.nbytes / 10
    assert psnr(frames, decoded) > 25


def test_detection_map_on_decoded_frames(clip_dir, tmp_path):
    frames = read_clip(clip_dir).frames
    points = evaluate_video(frames, {}, [("hevc", 20), ("hevc", 51)], progress=False)
    assert points[0].metrics.keys() >= {"map", "objects"}


def test_bad_inputs_fail_cleanly(clip_dir, trained, tmp_path, capsys):
    data = encode_nerv(load_nerv(trained)[0], 8)
    for bad in (data[:-7], data[:30], b"SANV" + bytes(40), data[:100] + b"x" + data[101:]):
        with pytest.raises(BitstreamError):
            read_snv(bad)
    (tmp_path / "bad.snv").write_bytes(data[:-7])
    assert main(["video", "decode", str(tmp_path / "bad.snv"), "-o", str(tmp_path / "o.mp4")]) == 1
    assert "saicm: error:" in capsys.readouterr().err and not (tmp_path / "o.mp4").exists()
    (tmp_path / "not.mp4").write_text("no video here")
    with pytest.raises(SaicmError, match="not a readable video"):
        read_clip(tmp_path / "not.mp4")
    with pytest.raises(SaicmError, match="not a readable video"):
        train_video(VideoTrainConfig(video=str(tmp_path / "not.mp4")), tmp_path / "r0")
    assert not (tmp_path / "r0").exists()  # no run folder left behind
    (tmp_path / "empty").mkdir()
    with pytest.raises(SaicmError, match="no frames"):
        read_clip(tmp_path / "empty")
    with pytest.raises(SaicmError, match="no such video"):
        read_clip(tmp_path / "missing.mp4")
    # a sa-nerv run's mask cache: a lost mask is made again, a wrong one is named
    cfg = _cfg(clip_dir, loss="sa-nerv", mask_source="felzenszwalb", epochs=3)
    assert train_video(cfg, tmp_path / "r", progress=False, stop_after=1) is None
    masks = tmp_path / "r" / "masks"
    (masks / "frame_00003.png").unlink()
    assert train_video(cfg, tmp_path / "r", resume=True, progress=False, stop_after=2) is None
    assert (masks / "frame_00003.png").exists()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / "frame_00005.png")
    with pytest.raises(SaicmError, match=r"frame_00005\.png: mask is 10x10"):
        train_video(cfg, tmp_path / "r", resume=True, progress=False)
    with pytest.raises(SaicmError, match="frames"):
        write_clip(np.zeros((0, 4, 4, 3), np.uint8), tmp_path / "x.mp4")


def test_nerv_config_sizes_grow():
    sizes = [sum(p.numel() for p in NeRV(nerv_config(240, 416, s)).parameters()) for s in "SML"]
    assert sizes[0] < sizes[1] < sizes[2]

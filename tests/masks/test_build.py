"""The dataset builder: 1-bit masks, manifest, resume after a kill, shards, bad files, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
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
    summary = build_masks([folder], out, FelzenszwalbEdges(), progress=False)
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

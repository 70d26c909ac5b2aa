"""The command line: outputs, batches with bad members, one-line errors, exit status."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from saicm.cli import main


@pytest.fixture()
def images(tmp_path, photo):
    paths = []
    for i, (h, w) in enumerate([(96, 128), (130, 70)]):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(photo[:h, :w]).save(p)
        paths.append(p)
    return paths


def test_encode_decode_one_file(tmp_path, images, tiny_model, capsys):
    sic = tmp_path / "one.sic"
    assert main(["encode", str(images[0]), "-o", str(sic), "--model", str(tiny_model.path)]) == 0
    line = capsys.readouterr().out
    bpp = 8 * sic.stat().st_size / (96 * 128)
    assert f"{bpp:.4f} bpp" in line
    png = tmp_path / "one.png"
    assert main(["decode", str(sic), "-o", str(png), "--model", str(tiny_model.path)]) == 0
    assert np.asarray(Image.open(png)).shape == (96, 128, 3)


def test_decode_finds_installed_model_by_name(tmp_path, images, tiny_model, monkeypatch):
    monkeypatch.setenv("SAICM_MODELS", str(tiny_model.path.parent))
    sic = tmp_path / "a.sic"
    assert main(["encode", str(images[0]), "-o", str(sic), "-m", "tiny"]) == 0
    assert main(["decode", str(sic), "-o", str(tmp_path / "a.png")]) == 0
    assert main(["models"]) == 0


def test_batch_with_bad_members_processes_the_rest(tmp_path, images, tiny_model, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    missing = tmp_path / "missing.png"
    out = tmp_path / "out"
    code = main(
        [
            "encode",
            str(images[0]),
            str(bad),
            str(missing),
            str(images[1]),
            "-o",
            str(out),
            "-m",
            str(tiny_model.path),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["img0.sic", "img1.sic"]
    assert any("bad.png" in e and "not an image" in e for e in err)
    assert any("missing.png" in e and "no such file" in e for e in err)
    assert err[-1] == "saicm: error: 2 of 4 input(s) failed"

    cut = out / "cut.sic"
    cut.write_bytes((out / "img0.sic").read_bytes()[:-7])
    code = main(
        [
            "decode",
            str(out / "img0.sic"),
            str(cut),
            "-o",
            str(tmp_path / "dec"),
            "-m",
            str(tiny_model.path),
        ]
    )
    assert code == 1
    assert [p.name for p in (tmp_path / "dec").iterdir()] == ["img0.png"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["decode", "{png}", "-o", "{tmp}/x.png"], "not a saicm .sic file"),
        (["encode", "{png}", "-o", "{tmp}/x.sic", "-m", "no-such-model"], "no installed model"),
        (["encode", "{png}", "-o", "{tmp}/x.sic", "-m", "{png}"], "not a model file"),
        (["data", "offline-corpus", "-o", "{png}/corpus"], "Not a directory"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path, images, args, message):
    args = [a.format(png=images[0], tmp=tmp_path) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "saicm", *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("saicm: error:")]
    assert lines and message in lines[0]
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.sic").exists()

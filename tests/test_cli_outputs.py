"""What the commands may write (issue 21): an existing file is replaced only with
``--overwrite``; an output's extension names its format; a full disk, a folder given as a file
and a memory limit are one line each, naming the user's path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from saicm.cli import main


def _errors(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("saicm: error:")]


@pytest.fixture()
def d(tmp_path, photo):
    """A user's folder with a photo (``d/photo.png``)."""
    folder = tmp_path / "d"
    folder.mkdir()
    Image.fromarray(photo[:96, :128]).save(folder / "photo.png")
    return folder


def test_decode_never_replaces_the_users_photo(d, tiny_model, capsys):
    # the case: encode d/photo.png -o d/photo.sic, then decode d/photo.sic -o d/
    original = (d / "photo.png").read_bytes()
    m = ["-m", str(tiny_model.path)]
    assert main(["encode", str(d / "photo.png"), "-o", str(d / "photo.sic"), *m]) == 0
    capsys.readouterr()
    assert main(["decode", str(d / "photo.sic"), "-o", f"{d}/", *m]) == 1
    err = _errors(capsys.readouterr().err)
    assert err == [
        f"saicm: error: {d / 'photo.png'}: already exists, and saicm replaces no existing file "
        "unless told: pass --overwrite to replace it, or choose another output"
    ]
    assert (d / "photo.png").read_bytes() == original
    assert main(["decode", str(d / "photo.sic"), "-o", f"{d}/", *m, "--overwrite"]) == 0
    assert (d / "photo.png").read_bytes() != original  # the user asked for it


def test_encode_refuses_an_existing_file_and_a_name_of_another_format(d, tiny_model, capsys):
    m = ["-m", str(tiny_model.path)]
    sic = d / "photo.sic"
    sic.write_bytes(b"an older file of the user's")
    assert main(["encode", str(d / "photo.png"), "-o", str(sic), *m]) == 1
    assert "photo.sic: already exists" in capsys.readouterr().err
    assert sic.read_bytes() == b"an older file of the user's"
    assert main(["encode", str(d / "photo.png"), "-o", str(sic), *m, "--overwrite"]) == 0
    assert sic.read_bytes()[:3] != b"an "
    capsys.readouterr()
    # .sic bytes under a .png name (the e17.png), and PNG pixels under a .sic name
    assert main(["encode", str(d / "photo.png"), "-o", str(d / "e17.png"), *m]) == 1
    assert _errors(capsys.readouterr().err) == [
        f"saicm: error: {d / 'e17.png'}: the output is a .sic file; its name should end in "
        ".sic, not .png"
    ]
    assert main(["decode", str(sic), "-o", str(d / "x.sic"), *m]) == 1
    assert "x.sic: the output is an image; its name should end in .png, not .sic" in (
        capsys.readouterr().err
    )
    assert sorted(p.name for p in d.iterdir()) == ["photo.png", "photo.sic"]


def test_decode_of_a_folder_says_it_is_a_folder(tmp_path, capsys):
    (tmp_path / "folder.sic").mkdir()
    assert main(["decode", str(tmp_path / "folder.sic"), "-o", str(tmp_path / "x.png")]) == 1
    err = _errors(capsys.readouterr().err)
    assert err[0] == f"saicm: error: {tmp_path / 'folder.sic'}: a folder, not a .sic file"


def test_demo_and_masks_preview_refuse_existing_files(tmp_path, d, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "detections.png").write_bytes(b"the user's picture")
    assert main(["demo", str(d / "photo.png"), "-o", str(out)]) == 1
    assert "detections.png: already exists" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["detections.png"]
    preview = tmp_path / "p.png"
    preview.write_bytes(b"the user's picture")
    argv = ["masks", "--preview", str(d / "photo.png"), "-o", str(preview)]
    assert main([*argv, "--source", "felzenszwalb"]) == 1
    assert "p.png: already exists" in capsys.readouterr().err
    assert preview.read_bytes() == b"the user's picture"


def test_eval_output_that_is_a_file_or_a_foreign_report(tmp_path, d, capsys):
    base = ["eval", "--images", str(d), "--codec", "png"]
    (tmp_path / "rep").write_text("a file")
    assert main([*base, "-o", str(tmp_path / "rep")]) == 1
    assert _errors(capsys.readouterr().err) == [
        f"saicm: error: {tmp_path / 'rep'}: not a folder (a report is a folder of files)"
    ]
    other = tmp_path / "other"
    other.mkdir()
    (other / "report.html").write_text("<p>the user's page</p>")
    assert main([*base, "-o", str(other)]) == 1
    assert "report.html: already exists" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["report.html"]


def test_hidden_files_in_an_image_folder_are_not_images(tmp_path, d):
    from saicm.image import list_images
    from saicm.masks.build import find_images

    (d / ".photo.png.k2j4h1zq.part.png").write_bytes(b"half a write")  # another job's
    (d / "._photo.png").write_bytes(b"macOS metadata")
    assert find_images([d]) == [d / "photo.png"]
    assert list_images(d) == [d / "photo.png"]


def test_masks_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, d, small_disk):
    disk = small_disk(8192).path  # the lock and one mask fit, not the manifest's line
    for i in range(2):
        (d / f"more{i}.png").write_bytes((d / "photo.png").read_bytes())
    r = subprocess.run(
        [sys.executable, "-m", "saicm", "masks", str(d), "-o", str(disk / "m"), "--source",
         "felzenszwalb"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr
    err = _errors(r.stderr)
    assert len(err) == 1 and "no space left on device" in err[0], r.stderr
    assert str(disk / "m") in err[0]
    assert list(disk.iterdir()) == []  # no mask without its manifest line, no empty manifest


DECODE_UNDER_AS_LIMIT = textwrap.dedent(
    """
    import resource, sys
    from saicm.cli import build_parser, main
    from saicm.codec import load_model
    build_parser(), load_model(None)  # loaded first: the limit leaves 384 MiB beside them
    with open("/proc/self/status") as f:
        size = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + (384 << 20), resource.RLIM_INFINITY))
    sys.exit(main(["decode", sys.argv[1], "-o", sys.argv[2]]))
    """
)


def test_the_memory_budget_reads_the_address_space_limit(tmp_path, photo, monkeypatch):
    # ulimit -v / prlimit --as: the budget is what the process may still map, so a large
    # image is refused with the budget's line, not torch's allocator error
    from saicm.codec import encode, load_model

    big = np.tile(photo, (2, 2, 1))  # 1024x1024: about 0.5 GiB to decode
    (tmp_path / "big.sic").write_bytes(encode(big, load_model(None)))
    monkeypatch.delenv("SAICM_MEMORY_GB", raising=False)
    r = subprocess.run(
        [sys.executable, "-c", DECODE_UNDER_AS_LIMIT, str(tmp_path / "big.sic"),
         str(tmp_path / "big.png")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr
    err = _errors(r.stderr)
    assert len(err) == 2 and re.search(r"needs about 0\.5 GiB, more than the 0\.[1-3] GiB", err[0])
    assert not (tmp_path / "big.png").exists()


def test_offline_corpus_refuses_a_folder_of_the_users_images(tmp_path, photo, capsys):
    out = tmp_path / "corpus"
    (out / "train").mkdir(parents=True)
    Image.fromarray(photo[:32, :32]).save(out / "train" / "holiday.png")
    assert main(["data", "offline-corpus", "-o", str(out)]) == 1
    assert "train/holiday.png is not an image of saicm's corpus" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == ["holiday.png", "train"]
    (tmp_path / "c2").mkdir()
    (tmp_path / "c2" / "sources.json").write_text(json.dumps(["not", "saicm's"]))
    assert main(["data", "offline-corpus", "-o", str(tmp_path / "c2")]) == 1
    assert "sources.json: already exists" in capsys.readouterr().err

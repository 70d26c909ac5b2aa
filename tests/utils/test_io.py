"""Writers that check what they wrote, outputs that never overwrite inputs, folder locks and
weights files that are never unpickled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import CodeRunningPickle

from saicm.errors import ModelError, SaicmError
from saicm.utils.io import (
    atomic_path,
    atomic_write_bytes,
    folder_lock,
    read_weights_file,
    refuse_overwrite,
    same_path,
)


def test_atomic_write_roundtrip_and_empty_refused(tmp_path):
    target = tmp_path / "sub" / "a.bin"
    atomic_write_bytes(target, b"abc")
    assert target.read_bytes() == b"abc"
    with pytest.raises(SaicmError, match="nothing was written"), atomic_path(tmp_path / "b.png"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]  # no temp file left


def test_full_disk_names_the_users_path_and_leaves_nothing(tmp_path):
    # RLIMIT_FSIZE makes writes past 4 KiB fail with EFBIG, as a full disk fails with ENOSPC
    from PIL import Image

    rng = __import__("numpy").random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype="uint8")).save(tmp_path / "in.png")
    script = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from saicm.cli import main
        sys.exit(main(["decode", {str(tmp_path / "a.sic")!r}, "-o", {str(tmp_path / "o.png")!r}]))
        """
    )
    from saicm.codec import encode, load_model

    atomic_write_bytes(
        tmp_path / "a.sic", encode(np.asarray(Image.open(tmp_path / "in.png")), load_model(None))
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert lines[-2:] == [
        f"saicm: error: {tmp_path / 'a.sic'}: {tmp_path / 'o.png'}: no space left under this "
        "process's file-size limit (ulimit -f) (File too large)",
        "saicm: error: 1 of 1 input(s) failed",
    ]
    assert not (tmp_path / "o.png").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_same_path_through_links_dots_and_parents(tmp_path):
    a = tmp_path / "d" / "a.png"
    a.parent.mkdir()
    a.write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(a)
    assert same_path(a, tmp_path / "link.png")
    assert same_path(a, tmp_path / "d" / ".." / "d" / "." / "a.png")
    assert not same_path(a, tmp_path / "d" / "b.png")


@pytest.mark.parametrize(
    ("inputs", "outputs", "folders"),
    [
        (["d/a.png"], ["d/a.png"], []),
        (["d/a.png"], ["d/../d/a.png"], []),
        (["d/a.png"], ["link.png"], []),
        (["d"], ["d/a.png"], []),  # a mask named like its photo, in the photo folder
        (["d"], ["d/new.png"], []),  # into the input folder: the next run takes it as input
        (["d/a.png"], [], ["."]),  # an output folder that holds the input
    ],
)
def test_refuse_overwrite(tmp_path, monkeypatch, inputs, outputs, folders):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.png").write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(tmp_path / "d" / "a.png")
    with pytest.raises(SaicmError, match=r"overwrite|holds the input"):
        refuse_overwrite(inputs, outputs, folders)


def test_refuse_overwrite_allows_other_places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.png").write_bytes(b"x")
    refuse_overwrite(["d/a.png", "d", "missing.png"], ["out/a.sic", "d2/a.png"], ["rep"])


def test_folder_lock_refuses_a_second_run_and_takes_over_a_stale_lock(tmp_path):
    (tmp_path / "rep").mkdir()  # there before the lock: it stays when the lock goes
    with folder_lock(tmp_path / "rep") as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with (
            pytest.raises(SaicmError, match="in use by another saicm run"),
            folder_lock(tmp_path / "rep"),
        ):
            pass
    assert not lock.exists()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    import socket

    lock.write_text(json.dumps({"pid": int(dead), "host": socket.gethostname()}))
    with folder_lock(tmp_path / "rep"):  # the process that held it is gone
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    lock.write_text("{cut by a kill")
    with folder_lock(tmp_path / "rep"):
        pass


def test_weights_file_that_needs_unpickling_is_refused_without_running(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    torch.save({"model": CodeRunningPickle(marker)}, path)
    with pytest.raises(ModelError) as info:
        read_weights_file(path, "model file", ModelError)
    assert not marker.exists()
    assert "never unpickles" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ModelError, match="no such model file"):
        read_weights_file(tmp_path / "none.pt", "model file", ModelError)
    with pytest.raises(ModelError, match="a folder"):
        read_weights_file(tmp_path, "model file", ModelError)
    # a cut PNG is not a pickle at all: said as such, not as a file of dangerous objects
    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(ModelError, match=r"photo\.png: not a model file \(not a file torch"):
        read_weights_file(png, "model file", ModelError)


def test_a_folder_the_lock_made_is_removed_when_left_empty(tmp_path):
    with pytest.raises(RuntimeError), folder_lock(tmp_path / "new"):
        raise RuntimeError("the job failed before writing anything")
    assert not (tmp_path / "new").exists()
    with folder_lock(tmp_path / "kept"):
        (tmp_path / "kept" / "results.json").write_text("{}")
    assert (tmp_path / "kept" / "results.json").exists()
    (tmp_path / "old").mkdir()  # a folder that was there before stays, empty or not
    with folder_lock(tmp_path / "old"):
        pass
    assert (tmp_path / "old").is_dir()

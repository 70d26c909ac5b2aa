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
    refuse_existing,
    refuse_foreign_report,
    refuse_overwrite,
    remove_stale_parts,
    remove_stale_parts_of,
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
    deep = "[" * 100_000  # crafted: nested past the parser's depth (a RecursionError)
    lock.write_text(deep)
    with folder_lock(tmp_path / "rep") as mine:
        mine.write_text(deep)  # replaced while held: left, not a traceback at the release
    assert lock.read_text() == deep


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


def test_an_existing_file_is_replaced_only_with_overwrite(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"the user's photo")
    with pytest.raises(SaicmError, match=r"photo.png: already exists.*pass --overwrite"):
        refuse_existing([tmp_path / "new.png", tmp_path / "photo.png"])
    refuse_existing([tmp_path / "photo.png"], overwrite=True)  # the user said so
    refuse_existing([tmp_path / "new.png"])
    (tmp_path / "d").mkdir()
    with pytest.raises(SaicmError, match="a folder, where a file is to be written"):
        refuse_existing([tmp_path / "d"], overwrite=True)


def test_a_report_folder_is_continued_only_when_saicm_wrote_it(tmp_path):
    names = ("results.json", "report.html")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "results.json").write_text(json.dumps({"points": []}))
    refuse_foreign_report(tmp_path / "mine", names)  # saicm's report: rewritten by the next run
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "report.html").write_text("<p>the user's page</p>")
    with pytest.raises(SaicmError, match=r"report\.html: already exists"):
        refuse_foreign_report(tmp_path / "other", names)
    refuse_foreign_report(tmp_path / "other", names, overwrite=True)
    (tmp_path / "other" / "results.json").write_text("[" * 100_000)  # crafted: not saicm's
    with pytest.raises(SaicmError, match=r"already exists"):
        refuse_foreign_report(tmp_path / "other", names)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SaicmError, match="file: not a folder"):
        refuse_foreign_report(tmp_path / "file", names)


KILLED_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    from saicm.utils.io import atomic_path
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_resumed_job_removes_its_own_stale_temporaries_only(tmp_path):
    target = tmp_path / "checkpoint.pt"
    for path in (target, tmp_path / "model.pt"):  # two writes killed half-way (SIGKILL)
        r = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(path)], capture_output=True)
        assert r.returncode == -9
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 2 and all(n.startswith(".") and ".part" in n for n in left), left
    others = [
        ".checkpoint.pt.notes",  # the user's hidden files that merely look alike
        ".checkpoint.pt.abc.part.pt",
        ".checkpoint.pt.abcdefgh.part.pt.bak",
        "checkpoint.pt.abcdefgh.part.pt",
    ]
    for name in others:
        (tmp_path / name).write_text("keep me")
    removed = remove_stale_parts(target)
    assert [p.name for p in removed] == [n for n in left if n.startswith(".checkpoint.pt.")]
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert remaining == sorted([*others, *(n for n in left if n.startswith(".model.pt."))])
    # the one-scan form: the same rule for many targets; a target not named keeps its own
    (tmp_path / ".checkpoint.pt.k2b4c6d8.part.pt").write_text("stale")
    (tmp_path / ".other.png.a1b2c3d4.part.png").write_text("another shard's, in flight")
    removed = remove_stale_parts_of(tmp_path, ["checkpoint.pt", "model.pt"])
    assert sorted(p.name for p in removed) == sorted(
        [".checkpoint.pt.k2b4c6d8.part.pt", *(n for n in left if n.startswith(".model.pt."))]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*others, ".other.png.a1b2c3d4.part.png"]
    )


def test_a_read_only_folder_names_the_users_path(tmp_path, small_disk):
    if os.geteuid() == 0:  # root writes into a chmod 555 folder: a read-only file system then
        folder = small_disk(1 << 20).path
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(folder / "a.sic", b"abc")
    assert info.value.filename == str(folder / "a.sic")  # not the hidden .a.sic.XXXX.part.sic
    assert list(folder.iterdir()) == []


def test_a_full_disk_is_one_line_naming_the_path_for_every_writer(small_disk):
    disk = small_disk(64 * 1024).path
    with pytest.raises(SaicmError) as info:
        atomic_write_bytes(disk / "a.sic", os.urandom(200_000))
    assert str(info.value) == f"{disk / 'a.sic'}: no space left on device (No space left on device)"
    # torch.save fails with a RuntimeError of its own ("unexpected pos", "file write failed"):
    # a probe write finds the full disk
    with (
        pytest.raises(SaicmError, match=r"checkpoint\.pt: no space left on device"),
        atomic_path(disk / "checkpoint.pt") as tmp,
    ):
        torch.save({"w": torch.randn(100_000)}, tmp)
    assert list(disk.iterdir()) == []  # nothing half written
    with pytest.raises(OSError), open(disk / "ballast", "wb", buffering=0) as f:
        while True:  # fill the disk to its last byte
            f.write(b"\0" * 1024)
    lock = folder_lock(disk / "rep")
    with pytest.raises(SaicmError, match=r"rep: no space left on device"), lock:
        pass
    assert sorted(p.name for p in disk.iterdir()) == ["ballast"]

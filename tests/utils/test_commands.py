"""The run-folder lock that every training command shares (``saicm train``, ``video train``)."""

from __future__ import annotations

import contextlib

import pytest

from saicm.errors import SaicmError
from saicm.utils.commands import run_locked


def _fails(out, write_checkpoint: bool, exc: BaseException):
    def run():
        (out / "config.yaml").write_text("x: 1\n")
        if write_checkpoint:
            (out / "checkpoint.pt").write_bytes(b"ck")
        raise exc

    return run


def test_a_new_folder_without_a_checkpoint_is_removed_after_a_failure(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_locked(out, _fails(out, False, KeyboardInterrupt()), "checkpoint.pt")
    assert not out.exists()
    with pytest.raises(SaicmError, match="boom"):
        run_locked(out, _fails(out, True, SaicmError("boom")), "checkpoint.pt")
    assert (out / "checkpoint.pt").exists()  # something to resume: kept
    assert run_locked(tmp_path / "ok", lambda: 7, "checkpoint.pt") == 7


def test_a_folder_that_existed_is_never_removed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(KeyboardInterrupt):
        run_locked(out, _fails(out, False, KeyboardInterrupt()), "checkpoint.pt")
    assert (out / "notes.txt").read_text() == "mine"


def test_the_loser_of_a_race_for_a_new_folder_removes_nothing(tmp_path, monkeypatch):
    out = tmp_path / "run"

    @contextlib.contextmanager
    def taken(folder, *args, **kwargs):  # the other run made the folder and holds its lock
        folder.mkdir()
        (folder / "config.yaml").write_text("theirs")
        raise SaicmError(f"{folder}: in use by another saicm process")
        yield

    monkeypatch.setattr("saicm.utils.io.folder_lock", taken)
    with pytest.raises(SaicmError, match="in use"):
        run_locked(out, lambda: None, "checkpoint.pt")
    assert (out / "config.yaml").read_text() == "theirs"


def test_a_full_disk_says_how_to_continue(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(SaicmError, match="no space left; once there is space, continue with"):
        run_locked(out, _fails(out, True, SaicmError("x: no space left")), "checkpoint.pt")

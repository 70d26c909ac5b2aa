"""File helpers shared by every command that writes outputs: atomic writes that check what they
wrote, the refusal of an output that would overwrite an input, folder locks, and the loading of
weights files without unpickling."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import SaicmError

__all__ = [
    "NO_SPACE",
    "atomic_path",
    "atomic_write_bytes",
    "folder_lock",
    "no_space_error",
    "read_weights_file",
    "refuse_existing",
    "refuse_foreign_report",
    "refuse_overwrite",
    "remove_stale_parts",
    "remove_stale_parts_of",
    "same_path",
    "space_message",
]

#: errno values that mean "no space left for this write": a full device (ENOSPC), a full disk
#: quota (EDQUOT) and the process's file-size limit (EFBIG, ``ulimit -f`` / RLIMIT_FSIZE).
NO_SPACE = frozenset(
    e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if e is not None
)


def space_message(path: str | os.PathLike[str], exc: OSError) -> str:
    """One line for a write of ``path`` that failed for space (``exc.errno`` in
    :data:`NO_SPACE`), e.g. ``run/checkpoint.pt: no space left on device (No space left on
    device): free some space and run the command again``."""
    where = {
        errno.ENOSPC: "on device",
        errno.EFBIG: "under this process's file-size limit (ulimit -f)",
    }.get(exc.errno, "in the disk quota")  # type: ignore[arg-type]
    return f"{path}: no space left {where} ({exc.strerror or os.strerror(exc.errno or 0)})"


def _part_pattern(path: Path) -> re.Pattern[str]:
    """The names :func:`atomic_path` gives its temporary files for ``path``: ``.<name>.`` then
    ``tempfile.mkstemp``'s 8 random characters, then ``.part<suffix>``."""
    return re.compile(
        rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.part{re.escape(path.suffix)}"
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], allow_empty: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``.

    A crash or an exception leaves no partial file behind, and readers never see half a file
    (a ``SIGKILL`` can leave the hidden temporary file, named ``.<name>.XXXXXXXX.part<suffix>``:
    a job that resumes removes its own with :func:`remove_stale_parts`). What was written is
    flushed to the disk (``fsync``) before the rename, and an empty result is refused unless
    ``allow_empty``.

    Raises:
        OSError: the write failed (no permission, a read-only folder): the error names ``path``,
            not the hidden temporary file.
        SaicmError: no space left (a full disk or quota, the file-size limit), naming ``path``
            (:func:`space_message`); the writer produced an empty file; or a write failed inside
            a library that reports it as a ``RuntimeError`` (``torch.save``): the temporary
            file is then probed with a write of its own, so that a full disk is reported as
            such, not as the library's text.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent
        )
    except OSError as exc:  # a read-only or full folder: the user's path, not the hidden one
        raise _named_error(exc, path) from None
    os.close(fd)
    try:
        try:
            yield Path(tmp)
            if not allow_empty and os.path.getsize(tmp) == 0:
                raise SaicmError(f"{path}: nothing was written (an empty file)")
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)  # a full disk or a failing device shows here, not after the rename
            finally:
                os.close(fd)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
            os.replace(tmp, path)
        except OSError as exc:
            if exc.errno and exc.filename in (None, tmp):
                raise _named_error(exc, path) from None
            raise
        except RuntimeError as exc:  # torch.save's "file write failed", "unexpected pos" and kin
            probe = _probe_write(tmp)
            if probe is not None:  # the disk, not the library: say what the disk said
                raise _named_error(probe, path) from None
            text = str(exc)
            if "write" not in text.lower():
                raise
            first = next((ln for ln in text.splitlines() if ln.strip()), type(exc).__name__)
            raise SaicmError(f"{path}: could not be written ({first.strip()[:200]})") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _named_error(exc: OSError, path: Path) -> Exception:
    """``exc`` naming ``path``: a :class:`SaicmError` for no space, else an ``OSError``."""
    if exc.errno in NO_SPACE:
        return SaicmError(space_message(path, exc))
    return type(exc)(exc.errno, os.strerror(exc.errno) if exc.errno else str(exc), str(path))


def _probe_write(tmp: str, size: int = 1 << 16) -> OSError | None:
    """Whether ``size`` more bytes can be written to ``tmp`` (then fsynced): the OSError of a
    write that fails (a full disk, the file-size limit), else None. ``SIGXFSZ`` is ignored
    meanwhile, so that a file-size limit gives ``EFBIG`` rather than killing the process."""
    previous = None
    with contextlib.suppress(ValueError, AttributeError):  # not the main thread; Windows
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        with open(tmp, "ab") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return exc
    finally:
        if previous is not None:
            signal.signal(signal.SIGXFSZ, previous)
    return None


def no_space_error(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> SaicmError | None:
    """After a write of ``tmp`` (the temporary file of ``path``) failed in another process or
    a library that does not say why (ffmpeg, torch): the :class:`SaicmError` naming ``path`` if
    the cause is a lack of space (:data:`NO_SPACE`, found by a probe write), else None."""
    probe = _probe_write(str(tmp))
    if probe is not None and probe.errno in NO_SPACE:
        return SaicmError(space_message(path, probe))
    return None


def remove_stale_parts(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that :func:`atomic_path` left beside ``path`` when a job was
    killed (``SIGKILL``) while it wrote ``path``; only names of that exact pattern for this
    ``path`` (``.<name>.XXXXXXXX.part<suffix>``), nothing else. Call it only while the folder is
    this job's (under :func:`folder_lock`): another job's write in flight has the same pattern.

    Returns:
        the files removed.
    """
    path = Path(path)
    pattern = _part_pattern(path)
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


_ANY_PART = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.part(?P<suffix>.*)")


def remove_stale_parts_of(folder: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """:func:`remove_stale_parts` for many files of one folder at once: one scan of ``folder``
    (a job writing N files calls this once, not N times: N scans of a folder of N files would
    cost N^2). Removes the temporary files :func:`atomic_path` left for the files of ``folder``
    named in ``names`` (e.g. this shard's targets), nothing else.

    Returns:
        the files removed.
    """
    wanted = set(names)
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            m = _ANY_PART.fullmatch(entry.name)
            if (
                m is not None
                and m["name"] in wanted
                and Path(m["name"]).suffix == m["suffix"]
                and entry.is_file(follow_symlinks=False)
            ):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, checking that all of it reached the file.

    Raises:
        OSError: the write failed (naming ``path``).
        SaicmError: the file holds another number of bytes than ``data``.
    """
    with atomic_path(path, allow_empty=not data) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
        size = os.path.getsize(tmp)
        if size != len(data):
            raise SaicmError(f"{path}: wrote {size} of {len(data)} bytes")


def read_weights_file(path: str | os.PathLike[str], what: str, error: type[Exception]) -> object:
    """``torch.load`` a weights file (``weights_only``, onto the CPU), failing with ``error`` and
    a one-line message naming ``path`` and ``what`` it should have been.

    ``weights_only`` rebuilds tensors, numbers, strings and containers only: a file whose pickle
    names any other object (which could run code while it is rebuilt) is refused, never run.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: a folder, not a {what}") from None
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):  # not a pickle at all (an image, a truncated file)
            raise error(f"{path}: not a {what} (not a file torch.save wrote)") from None
        raise error(
            f"{path}: not a {what}: it holds Python objects other than tensors, numbers and "
            "strings, which saicm never unpickles (that could run code)"
        ) from None
    except MemoryError:
        raise error(f"{path}: too large to load as a {what}") from None
    except Exception as exc:  # zip and torch errors all mean "not that kind of file"
        raise error(f"{path}: not a {what} (torch.load: {type(exc).__name__})") from None


def same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name the same file or folder: through symlinks, ``./`` and
    ``..``, hard links and a case-insensitive file system (where both exist), else by their
    resolved paths."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        pass
    ra, rb = os.path.realpath(a), os.path.realpath(b)
    return os.path.normcase(ra) == os.path.normcase(rb)


def _inside(child: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    c, f = Path(os.path.realpath(child)), Path(os.path.realpath(folder))
    return c == f or f in c.parents


def refuse_overwrite(
    inputs: Iterable[str | os.PathLike[str]],
    outputs: Iterable[str | os.PathLike[str]] = (),
    folders: Iterable[str | os.PathLike[str]] = (),
) -> None:
    """Refuse (before any work) outputs that would overwrite an input.

    Arguments:
        inputs: files and folders the command reads.
        outputs: files the command will write; each must not be an input file, nor lie in a
            folder that is an input (where the next run would take it for an input).
        folders: output folders; each must not be an input folder or an input file, nor hold an
            input (its files could be replaced by outputs of the same name).

    Raises:
        SaicmError: naming the output and the input it would overwrite.
    """
    ins = [Path(p) for p in inputs if p is not None]
    for out in outputs:
        for src in ins:
            if not os.path.lexists(src):
                continue
            if same_path(out, src):
                raise SaicmError(
                    f"output {out} would overwrite the input {src}: choose another output"
                )
            if src.is_dir() and same_path(Path(out).parent, src):
                raise SaicmError(
                    f"output {out} is in the input folder {src}: it could overwrite the input "
                    "or be taken for one; choose another output"
                )
    for folder in folders:
        for src in ins:
            if os.path.lexists(src) and (same_path(folder, src) or _inside(src, folder)):
                raise SaicmError(
                    f"output folder {folder} holds the input {src}: its files could be "
                    "overwritten; choose another output folder"
                )


def refuse_existing(
    outputs: Iterable[str | os.PathLike[str]], overwrite: bool = False, flag: str = "--overwrite"
) -> None:
    """Refuse (before any work) output files that exist already, unless ``overwrite``: saicm
    never replaces an existing file unless the user says so (docs/SECURITY.md). A folder where
    a file is to be written is refused even with ``overwrite``.

    Arguments:
        outputs: the files the command will write.
        overwrite: the user's ``flag`` (``--overwrite``) was given.
        flag: the option that allows replacing, named in the message.

    Raises:
        SaicmError: naming the first output that exists.
    """
    for out in outputs:
        if os.path.isdir(out):
            raise SaicmError(f"{out}: a folder, where a file is to be written; choose a file name")
        if os.path.lexists(out) and not overwrite:
            raise SaicmError(
                f"{out}: already exists, and saicm replaces no existing file unless told: "
                f"pass {flag} to replace it, or choose another output"
            )


def refuse_foreign_report(
    folder: str | os.PathLike[str], names: Iterable[str], overwrite: bool = False
) -> None:
    """Refuse (before any work) a report folder whose report files (``names``) exist but were
    not written by saicm, unless ``overwrite``. A report folder is saicm's when its
    ``results.json`` is a saicm report (a JSON object with a ``points`` list): the next
    evaluation into it rewrites its report, as ``train --resume`` continues a run.

    Raises:
        SaicmError: ``folder`` is a file, or holds such a file (named).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SaicmError(f"{folder}: not a folder (a report is a folder of files)")
    try:
        with open(folder / "results.json", "rb") as f:
            ours = isinstance(json.loads(f.read(1 << 26)).get("points"), list)
    except (OSError, ValueError, AttributeError, RecursionError):  # nested past the parser
        ours = False
    if not ours:
        refuse_existing([folder / n for n in names], overwrite)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], name: str = ".saicm.lock") -> Iterator[Path]:
    """Hold ``folder/name`` (pid and host, written with ``O_EXCL``) while a job writes into
    ``folder``; a second job is refused. A lock left by a process that no longer runs (same host)
    is stale and taken over. A folder the lock made is removed again if it is empty at the end.

    Raises:
        SaicmError: the folder is in use by a running process.
    """
    folder = Path(folder)
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / name
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                held = json.loads(lock.read_text())
                pid, host = int(held["pid"]), str(held["host"])
            except FileNotFoundError:
                continue  # released meanwhile: try again
            except (OSError, ValueError, KeyError, TypeError, RecursionError):
                pid, host = -1, me["host"]  # unreadable (cut by a kill): stale
            if host != me["host"] or (pid > 0 and _alive(pid)):
                raise SaicmError(
                    f"{folder} is in use by another saicm run (pid {pid} on {host}); wait for it "
                    f"to finish, or remove {lock} if that process is gone"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # stale
            continue
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
        except OSError as exc:  # a full disk: the user's folder, not the hidden lock
            with contextlib.suppress(OSError):
                lock.unlink()
            if made:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise _named_error(exc, folder) from None
        break
    else:
        raise SaicmError(f"{folder}: could not take the lock {lock}")
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError, RecursionError):
            held = json.loads(lock.read_text())  # replaced meanwhile by anything: not ours
            if held.get("pid") == me["pid"]:
                lock.unlink()
        if made:  # a job that failed before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()

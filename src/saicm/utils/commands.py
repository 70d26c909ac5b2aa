"""What every ``saicm`` command shares: one-line errors, the interrupt hint, the batch runner
and the output naming of one-input-one-output commands.

Used by the per-stage command modules (``saicm.<stage>.cli``) and by :mod:`saicm.cli`, which
turns exceptions into these one-line errors and exit statuses. Imports nothing heavy (no torch,
numpy): building the parser must stay fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from ..errors import SaicmError

T = TypeVar("T")

__all__ = [
    "EXIT_FAILED",
    "EXIT_USAGE",
    "describe",
    "each",
    "interrupted",
    "on_interrupt",
    "one_line",
    "outputs",
    "overwrite_flag",
    "refuse_suffix",
    "run_locked",
    "say_error",
]

EXIT_FAILED = 1
EXIT_USAGE = 2


def one_line(msg: str, exc: BaseException | None = None) -> str:
    """``msg`` as one line: its first non-empty line (libraries raise multi-line texts), or the
    exception's kind when it has no text (MemoryError, a bare AssertionError)."""
    lines = [ln.strip() for ln in str(msg).splitlines() if ln.strip()]
    if lines:
        return lines[0] + (" (...)" if len(lines) > 1 else "")
    return type(exc).__name__ if exc is not None else "failed"


def close_bars() -> None:
    """Close open progress bars so that an error starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    instances = getattr(getattr(tqdm, "tqdm", None), "_instances", None) if tqdm else None
    for bar in list(instances or ()):
        try:
            bar.leave = False
            bar.close()
        except Exception:  # a half-built bar: nothing to clean
            pass


def say_error(msg: str, exc: BaseException | None = None) -> None:
    close_bars()
    print(f"saicm: error: {one_line(msg, exc)}", file=sys.stderr)


def describe(exc: BaseException) -> str:
    """One line for an exception that is not a SaicmError."""
    from .io import NO_SPACE, space_message

    if isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
    ):  # Python's, or torch's CPU allocator's (an address-space or cgroup limit)
        return (
            f"out of memory ({type(exc).__name__}): the input is too large for the memory "
            "this process may use"
        )
    if isinstance(exc, OSError) and exc.errno in NO_SPACE:
        return space_message(exc.filename or "a file being written", exc)
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    text = one_line(str(exc), exc)
    return f"unexpected {type(exc).__name__}: {text} (SAICM_DEBUG=1 shows the traceback)"


#: What an interrupted command keeps and how to continue it (set by a command before its long
#: work; :func:`main` prints it after Ctrl-C or SIGTERM).
_ON_INTERRUPT: list[Callable[[], str]] = []


def on_interrupt(hint: Callable[[], str]) -> None:
    """Say ``hint()`` (what survives, how to continue) if the command is interrupted."""
    _ON_INTERRUPT[:] = [hint]


def interrupted(what: str) -> str:
    """``what`` (interrupted, terminated) with the command's hint, if it gave one."""
    try:
        hint = _ON_INTERRUPT[0]() if _ON_INTERRUPT else ""
    except Exception:  # the hint must never hide the interruption itself
        hint = ""
    return f"{what}: {hint}" if hint else what


def outputs(inputs: Sequence[str], out: str, suffix: str) -> list[Path]:
    """One output per input: ``out`` itself for one input unless it is a folder, else
    ``out/<stem><suffix>``."""
    target = Path(out)
    if len(inputs) == 1 and not target.is_dir() and not out.endswith(("/", "\\")):
        return [target]
    stems = [Path(p).stem for p in inputs]
    if len(set(stems)) != len(stems):  # before the folder is made: a refusal leaves nothing
        raise SaicmError("inputs share a file name; give them separate output folders")
    target.mkdir(parents=True, exist_ok=True)
    return [target / f"{s}{suffix}" for s in stems]


def refuse_suffix(out: Path, suffixes: Sequence[str], what: str) -> None:
    """Refuse an output file whose extension names another format than the one written (``-o
    a.png`` for the bytes of a ``.sic`` file): ``suffixes``, lower case, the first the usual."""
    if out.suffix.lower() not in suffixes:
        raise SaicmError(
            f"{out}: the output is {what}; its name should end in {suffixes[0]}"
            + (f", not {out.suffix}" if out.suffix else "")
        )


def each(items: Iterable[tuple[str, Path]], job: Callable[[str, Path], str], total: int) -> int:
    """Run ``job`` on every (input, output); report failures and carry on."""
    from .progress import progress

    failed = 0  # a bar on a terminal, plain lines elsewhere
    bar = progress(total, "", "image", iterable=items, disable=total < 2, leave=False)
    for src, dst in bar:
        try:
            line = job(src, dst)
        except Exception as exc:  # a bad input, or a bug, must not cost the rest of the batch
            failed += 1
            msg = one_line(str(exc), exc) if isinstance(exc, SaicmError) else describe(exc)
            bar.write(
                f"saicm: error: {msg if msg.startswith(src) else f'{src}: {msg}'}", file=sys.stderr
            )
            continue
        bar.write(line, file=sys.stdout)
    bar.close()
    if failed:
        say_error(f"{failed} of {total} input(s) failed")
    return EXIT_FAILED if failed else 0


def overwrite_flag(
    parser: argparse.ArgumentParser,
    text: str = "replace output files that exist (without it, an existing file is an error)",
) -> None:
    """Add ``--overwrite`` (the rule of docs/SECURITY.md: an existing file is never replaced
    without it), with ``text`` saying what it replaces for this command."""
    parser.add_argument("--overwrite", action="store_true", help=text)


def run_locked(out: Path, run: Callable[[], T], checkpoint: str, rank: int = 0) -> T:
    """Run a training job ``run`` with its run folder ``out`` locked (``folder_lock``; rank 0
    only: other ranks of a torchrun share the folder).

    When ``run`` fails: a folder that this call made and that holds no ``checkpoint`` is removed
    (nothing in it to resume), but only when this call held the lock: a second run started at
    the same moment on the same new folder fails at the lock and removes nothing of the first.
    A full disk's error gets "once there is space, continue with --resume".
    """
    import shutil

    from .io import folder_lock

    if rank != 0:
        return run()
    fresh = not out.exists()
    locked = False
    try:
        with folder_lock(out):
            locked = True
            return run()
    except BaseException as exc:
        if fresh and locked and not (out / checkpoint).exists():
            shutil.rmtree(out, ignore_errors=True)
        elif isinstance(exc, SaicmError) and "no space left" in str(exc):
            raise SaicmError(f"{exc}; once there is space, continue with --resume") from None
        raise

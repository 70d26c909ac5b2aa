"""Range and type checks of numeric options and settings, shared by every command.

Each checker is a callable that takes a command-line string (or a value read from a config
file) and returns the converted value, or raises :class:`OptionError` with a one-line reason.
The same checker is an ``argparse`` ``type=`` (``OptionError`` is an ``ArgumentTypeError``, so
argparse prints its text) and a check of a config value::

    parser.add_argument("--lr", type=positive_float)
    parser.add_argument("--threshold", type=finite_float(0, 1, lo_open=True, hi_open=True))
    lr = check("lr", cfg.lr, positive_float)   # config.yaml: SaicmError "lr -1.0: must be > 0"

Floats must be finite (NaN and infinities are refused everywhere); booleans are not numbers;
integers must be written as integers (``"8"``, not ``"8.0"`` or ``"1e3"``). A config value is
checked as strictly as its flag, and more: a number in a config file must be a number of the
file's own syntax, not a string (``batch_size: '8'`` is refused by :func:`check`, where the
command line's ``--batch-size 8`` is text by nature).
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import SaicmError

__all__ = [
    "OptionError",
    "check",
    "choice",
    "finite_float",
    "fraction",
    "int_range",
    "nonnegative_float",
    "nonnegative_int",
    "positive_float",
    "positive_int",
    "safe_name",
]

T = TypeVar("T")


class OptionError(SaicmError, argparse.ArgumentTypeError):
    """A value out of range or of the wrong type (the message is one line, without the name)."""


def _named(fn: Callable[[Any], T], name: str) -> Callable[[Any], T]:
    fn.__name__ = name  # argparse names the type in some messages
    fn.__qualname__ = name
    return fn


def _show(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _expected(
    kind: str, lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False
) -> str:
    """What a checker asks for, e.g. ``a finite number > 0 and <= 1`` (integer bounds of an
    integer checker written out in full, others as ``%g``)."""
    show = str if kind == "an integer" else (lambda v: f"{v:g}")
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {show(lo)}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {show(hi)}")
    return kind + (f" {' and '.join(parts)}" if parts else "")


def finite_float(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Callable[[Any], float]:
    """A checker of a finite float in ``[lo, hi]`` (``(lo, ...`` with ``lo_open``, ``..., hi)``
    with ``hi_open``; ``None``: unbounded on that side).

    Raises:
        OptionError: not a number, NaN, infinite, or out of range.
    """
    want = _expected("a finite number", lo, hi, lo_open, hi_open)

    def convert(value: Any) -> float:
        if isinstance(value, bool):
            raise OptionError(f"{value!r}: expected {want}")
        try:  # ASCII only: float() also reads other scripts' digits ("٠.٥")
            if isinstance(value, str) and not value.isascii():
                raise ValueError(value)
            x = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise OptionError(f"{_show(value)!r}: expected {want}") from None
        if not math.isfinite(x):
            raise OptionError(f"{_show(value)}: expected {want}")
        if lo is not None and (x <= lo if lo_open else x < lo):
            raise OptionError(f"{_show(value)}: expected {want}")
        if hi is not None and (x >= hi if hi_open else x > hi):
            raise OptionError(f"{_show(value)}: expected {want}")
        return x

    convert.numeric = "a number"  # type: ignore[attr-defined]
    return _named(convert, "finite_float")


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[Any], int]:
    """A checker of an integer in ``[lo, hi]`` (``None``: unbounded on that side).

    Raises:
        OptionError: not an integer (``"2.5"``, ``"1e3"``, ``True``) or out of range.
    """
    want = _expected("an integer", lo, hi)

    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise OptionError(f"{value!r}: expected {want}")
        if isinstance(value, int):
            n = value
        elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]{1,18}\s*", value):
            n = int(value)
        else:
            raise OptionError(f"{_show(value)!r}: expected {want}")
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise OptionError(f"{n}: expected {want}")
        return n

    convert.numeric = "an integer"  # type: ignore[attr-defined]
    return _named(convert, "int_range")


positive_int = _named(int_range(1), "positive_int")
nonnegative_int = _named(int_range(0), "nonnegative_int")
positive_float = _named(finite_float(0, lo_open=True), "positive_float")
nonnegative_float = _named(finite_float(0), "nonnegative_float")
fraction = _named(finite_float(0, 1), "fraction")


def choice(*names: str) -> Callable[[Any], str]:
    """A checker of one of ``names`` (exact spelling)."""

    def convert(value: Any) -> str:
        if not isinstance(value, str) or value not in names:
            raise OptionError(f"{_show(value)!r}: choose from {', '.join(names)}")
        return value

    return _named(convert, "choice")


def safe_name(value: Any) -> str:
    """A name that becomes one file name (a model name, a run name): 1-100 characters, no path
    separator, not ``.``/``..``, no control characters, not starting with ``-`` or ``.``.

    Raises:
        OptionError: otherwise.
    """
    if not isinstance(value, str):
        raise OptionError(f"{_show(value)!r}: expected a name")
    bad = (
        not value
        or len(value) > 100
        or any(c in value for c in "/\\:")
        or any(ord(c) < 32 or ord(c) == 127 for c in value)
        or value.startswith(("-", "."))
        or value != value.strip()
    )
    if bad:
        raise OptionError(
            f"{value!r}: expected a name of 1-100 characters without '/', '\\', ':', control "
            "characters or a leading '.' or '-'"
        )
    return value


def check(name: str, value: Any, checker: Callable[[Any], T]) -> T:
    """``checker(value)`` for a config value (a file's or the Python API's, not the command
    line's text), with ``name`` in front of the error message. A string is refused where the
    checker wants a number (``batch_size: '1'``): a config file writes numbers as numbers.

    Raises:
        OptionError: ``"<name> <value>: expected ..."``.
    """
    kind = getattr(checker, "numeric", None)
    if kind is not None and isinstance(value, str):
        raise OptionError(
            f"{name} {value!r}: expected {kind}, written without quotes (a string is not a number)"
        )
    try:
        return checker(value)
    except OptionError as exc:
        raise OptionError(f"{name} {exc}") from None

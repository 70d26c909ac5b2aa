"""Progress of long steps: a tqdm bar on a terminal, plain log lines otherwise.

A bar redrawn with carriage returns fills a log file (``saicm train ... > log``, a job
scheduler, CI) with thousands of half lines. :func:`progress` gives the bar when stderr is a
terminal, else a :class:`PlainProgress` that writes one ordinary line at every tenth of the
work and at least every ``interval`` seconds, with the rate and the time left.
"""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["PlainProgress", "interactive", "progress", "say"]


def interactive() -> bool:
    """Whether stderr is a terminal (progress bars redraw there; elsewhere, plain lines)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


def say(message: str) -> None:
    """``saicm: MESSAGE`` on stderr, above any open progress bar: what a long step is doing."""
    text = f"saicm: {message}"
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None and getattr(tqdm.tqdm, "_instances", None):
        tqdm.tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)


class PlainProgress:
    """The part of tqdm's interface saicm uses, written as plain lines on stderr.

    Arguments:
        total: units of work (steps, cells, images).
        desc: what is counted (the start of every line).
        unit: the unit's name.
        initial: units done before (a resumed run).
        interval: the most seconds between two lines (besides one a tenth of the work).
        disable: write nothing.
        iterable: what iterating over it yields (each item counts one unit), as tqdm's.
    """

    def __init__(
        self,
        total: int,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        interval: float = 60.0,
        disable: bool = False,
        iterable: Any = None,
        **_: Any,
    ) -> None:
        self.iterable = iterable
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.interval, self.disable = interval, disable
        self.start_n, self.t0 = initial, time.monotonic()
        self.last_t, self.last_tenth = self.t0, self._tenth(initial)
        self.postfix = ""

    def _tenth(self, n: int) -> int:
        return 10 * n // self.total if self.total else 0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        tenth = self._tenth(self.n)
        if tenth > self.last_tenth or now - self.last_t >= self.interval or self.n == self.total:
            self.last_tenth, self.last_t = tenth, now
            self._line(now)

    def _line(self, now: float) -> None:
        if self.disable:
            return
        done = self.n - self.start_n
        rate = done / (now - self.t0) if now > self.t0 else 0.0
        left = (self.total - self.n) / rate if rate > 0 else float("nan")
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        eta = f", {_duration(left)} left" if left == left and self.n < self.total else ""
        slow = 0 < rate < 0.1
        speed = f"{1 / rate:.3g} s/{self.unit}" if slow else f"{rate:.3g} {self.unit}/s"
        extra = f"  {self.postfix}" if self.postfix else ""
        print(
            f"{self.desc + ': ' if self.desc else ''}{self.n}/{self.total} {self.unit}{pct}, "
            f"{speed}{eta}{extra}",
            file=sys.stderr,
            flush=True,
        )

    def set_postfix(self, **values: Any) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def write(self, text: str, file: Any = None) -> None:
        print(text, file=file or sys.stdout, flush=True)

    def close(self) -> None:
        pass

    def __iter__(self):
        if self.iterable is None:
            raise TypeError("this PlainProgress wraps no iterable: count with update()")
        for item in self.iterable:
            yield item
            self.update(1)


def _duration(seconds: float) -> str:
    """``3 h 05 min``, ``4 min 10 s`` or ``12 s``."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def progress(total: int, desc: str = "", unit: str = "it", **options: Any) -> Any:
    """A tqdm bar on a terminal, else a :class:`PlainProgress` (same ``total``, ``desc``,
    ``unit``, ``initial``, ``disable``, ``iterable``); ``options`` go to tqdm."""
    if interactive():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, **options)
    keep = {k: options[k] for k in ("initial", "disable", "iterable") if k in options}
    return PlainProgress(total, desc, unit, **keep)

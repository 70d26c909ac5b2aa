"""The ``saicm`` command line, one sub-command per job of the pipeline:
``masks`` -> ``train`` -> ``encode`` / ``decode`` -> ``eval``, plus ``models``, ``data`` and
``demo``.

Each stage owns its sub-commands (``saicm/<stage>/cli.py``: ``codec`` encode, decode, models;
``masks``; ``train``; ``eval``; ``video``; ``data``); this module assembles them, adds ``demo``
(the whole pipeline on one image), and turns every error into one line and an exit status.

Errors in the user's input print one line (``saicm: error: ...``) and set a non-zero exit status;
in a batch the other inputs are still processed. ``SAICM_DEBUG=1`` shows the traceback of an
unexpected error.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import SaicmError
from .eval.cli import EVAL_TASKS  # noqa: F401  (re-exported: the tests check it against the tasks)
from .utils.commands import _ON_INTERRUPT, EXIT_FAILED, EXIT_USAGE, on_interrupt, overwrite_flag
from .utils.commands import describe as _describe
from .utils.commands import interrupted as _interrupted
from .utils.commands import one_line as _one_line
from .utils.commands import say_error as _say_error

__all__ = ["build_parser", "main", "on_interrupt"]


class _Parser(argparse.ArgumentParser):
    """argparse with saicm's one-line errors (exit status 2, as argparse)."""

    def error(self, message: str):  # type: ignore[override]
        _say_error(f"{self.prog}: {message} (see {self.prog} --help)")
        sys.exit(EXIT_USAGE)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # warnings.showwarning's signature; saicm's warnings are one line for a user
    text = f"saicm: warning: {_one_line(str(message))}"
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None and getattr(tqdm.tqdm, "_instances", None):
        tqdm.tqdm.write(text, file=sys.stderr)  # above the bars, which go on
    else:
        print(text, file=sys.stderr)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import OUTPUT_FILES, run_demo
    from .utils.io import refuse_existing, refuse_overwrite

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise SaicmError(f"{out}: not a folder (the demo writes {len(OUTPUT_FILES)} files)")
    stem = Path(args.image).stem if args.image else "astronaut"
    written = [out / name.format(stem=stem) for name in OUTPUT_FILES]
    refuse_overwrite([p for p in (args.image, args.model) if p], written)
    refuse_existing(written, args.overwrite)
    run_demo(args.image, args.output, model=args.model)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``saicm`` parser: each stage adds its own sub-commands (``saicm.<stage>.cli``); they
    import their heavy modules only when a command runs."""
    from .codec.cli import add_codec_parsers
    from .data.cli import add_data_parser
    from .eval.cli import add_eval_parser
    from .masks.cli import add_masks_parser
    from .train.cli import add_train_parser
    from .video.cli import add_video_parser

    p = _Parser(
        prog="saicm",
        description="Image and video coding for machines (SA-ICM): masks -> train -> "
        "encode / decode -> eval, plus models, data, demo and video.",
    )
    p.add_argument("--version", action="version", version=f"saicm {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_codec_parsers(sub)  # encode, decode, models
    g = sub.add_parser("demo", help="compress, decode and detect objects on one image")
    g.add_argument(
        "image",
        nargs="?",
        default=None,
        help="image to use (default: scikit-image's astronaut photo)",
    )
    g.add_argument("-o", "--output", default="demo", help="output folder (default: demo)")
    g.add_argument("-m", "--model", default=None, help="model (default: the shipped model)")
    overwrite_flag(g)
    g.set_defaults(func=cmd_demo)
    add_masks_parser(sub)
    add_train_parser(sub)
    add_eval_parser(sub)
    add_video_parser(sub)
    add_data_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # Before the parser: building it imports sub-commands, some of which import torch and
    # CompressAI, whose deprecation notices are not the user's business.
    warnings.showwarning = _show_warning
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    if isinstance(getattr(args, "output", None), str) and not args.output.strip():
        parser.error("argument -o/--output: an empty path (it would write into the current folder)")
    _ON_INTERRUPT.clear()
    previous = _terminate_as_interrupt()
    try:
        return args.func(args)
    except SaicmError as exc:
        _say_error(str(exc), exc)
        return EXIT_FAILED
    except _Terminated:
        _say_error(_interrupted("terminated"))
        return 143
    except KeyboardInterrupt:
        _say_error(_interrupted("interrupted"))
        return 130
    except Exception as exc:  # OSError: a path that cannot be read or written, named
        import os

        if os.environ.get("SAICM_DEBUG") and not isinstance(exc, OSError):
            raise
        _say_error(_describe(exc), exc)
        return EXIT_FAILED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``kill``, a job scheduler), raised where the process is, so that the
    atomic writes' clean-up runs and no hidden ``.part`` file is left, as after Ctrl-C."""


def _raise_terminated(signum, frame):
    raise _Terminated


def _terminate_as_interrupt():
    """Install the SIGTERM handler (main thread only); the previous handler, or ``None``.
    ``SIGXFSZ`` (a write past ``ulimit -f``) is ignored, so that such a write fails with
    ``EFBIG`` and is reported like a full disk, instead of killing the process mid-write."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return signal.signal(signal.SIGTERM, _raise_terminated)


if __name__ == "__main__":
    sys.exit(main())

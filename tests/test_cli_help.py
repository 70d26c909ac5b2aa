"""``--help`` of every command and sub-command, compared with a golden file recorded before the
CLI was split into per-stage modules (issue 23): the split must not change one character.

Regenerate on purpose (a help text was changed) with ``SAICM_UPDATE_GOLDEN=1 pytest
tests/test_cli_help.py``; the diff then shows the change for review.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from saicm.cli import build_parser

GOLDEN = Path(__file__).parent / "data" / "cli_help.txt"


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) for ``parser`` and every sub-command under it, in order."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def _all_help() -> str:
    parts = []
    for path, parser in _walk(build_parser()):
        parts.append(f"=== {' '.join(('saicm', *path))} --help\n" + parser.format_help())
    return "\n".join(parts)


def test_every_help_text_is_unchanged(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps to the terminal width
    text = _all_help()
    if os.environ.get("SAICM_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "a --help changed; see SAICM_UPDATE_GOLDEN in the docstring"


def test_every_command_is_in_the_golden_file():
    recorded = {
        line.removeprefix("=== ").removesuffix(" --help")
        for line in GOLDEN.read_text().splitlines()
        if line.startswith("=== saicm")
    }
    walked = {" ".join(("saicm", *p)) for p, _ in _walk(build_parser())}
    assert walked == recorded

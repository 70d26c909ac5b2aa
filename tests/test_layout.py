"""The shape of the source tree (issue 23): no module grows into a second job unnoticed."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "saicm"

#: Longest module (lines); saicm/cli.py only assembles the stages' commands.
MAX_LINES = 550
MAX_CLI_LINES = 200


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_is_over_the_limit():
    long = {str(p.relative_to(SRC)): _lines(p) for p in SRC.rglob("*.py") if _lines(p) > MAX_LINES}
    assert not long, f"split these by their jobs (docs/ARCHITECTURE.md): {long}"
    assert _lines(SRC / "cli.py") < MAX_CLI_LINES


def test_every_stage_owns_its_commands():
    for stage in ("codec", "masks", "train", "eval", "data", "video"):
        assert (SRC / stage / "cli.py").is_file(), stage

"""README.md runs as written: its command blocks are executed here, top to bottom, on a fresh
folder, so that the README and the behaviour cannot drift apart.

Only numbers that the README's own commands show are made smaller (:data:`TINY`: the corpus's
image side, the training steps and crop, the images evaluated); each must be found in the
README, or the test fails. A command that cannot run on a machine without the user's own files
is listed in :data:`NOT_RUN` with the reason; every other ``saicm`` line of every ``bash`` block
runs, and a line that is neither run nor listed fails the test.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"

#: flag -> the value used here instead of the README's (each must occur in the README)
TINY = {"--max-side": "160", "--steps": "2", "--crop": "64", "--max-images": "2"}

#: README lines not run here, and why (matched on the start of the command).
NOT_RUN = {
    "saicm models import icm_78.pth.tar": "needs the SA-ICM authors' checkpoint, which the "
    "user downloads (tests/codec/test_zoo.py imports one made of random weights)",
    "saicm encode x.png -o x.sic --model sa-icm-tcm-alpha0.78": "needs that checkpoint",
    "saicm video train": "trains for minutes even at its smallest (tests/video/test_video_cli.py "
    "runs every video command on a tiny clip)",
    "saicm video encode": "needs the trained clip above",
    "saicm video decode": "needs the coded clip above",
    "saicm video eval": "needs the coded clip above",
}


def _blocks(lang: str) -> list[tuple[str, str]]:
    """``(heading, text)`` of every fenced block of ``lang`` in the README, in order."""
    out: list[tuple[str, str]] = []
    heading, fence, lines = "", None, []  # fence: the open block's language, None outside
    for line in README.read_text().splitlines():
        if fence is None and line.startswith("```"):
            fence, lines = line[3:].strip(), []
        elif fence is not None and line.startswith("```"):
            if fence == lang:
                out.append((heading, "\n".join(lines) + "\n"))
            fence = None
        elif fence is not None:
            lines.append(line)
        elif line.startswith("#"):
            heading = line
    return out


def _commands(block: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [" ".join(shlex.split(ln, comments=True)) for ln in joined.splitlines() if ln.strip()]


def _tiny(argv: list[str], used: set[str]) -> list[str]:
    out = list(argv)
    for i, a in enumerate(out[:-1]):
        if a in TINY:
            out[i + 1] = TINY[a]
            used.add(a)
    return out


@pytest.fixture()
def fresh(tmp_path, monkeypatch):
    """A fresh working folder with a home and model folder of its own (nothing installed)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "SAICM_MODELS": "", "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1] / "src"), env.get("PYTHONPATH", "")]
    )
    work = tmp_path / "work"
    work.mkdir()
    return work, env


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    assert argv[0] == "saicm", argv
    proc = subprocess.run(
        [sys.executable, "-m", "saicm", *argv[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{' '.join(argv)}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_every_readme_command_runs_or_says_why_not(fresh, photo):
    work, env = fresh
    bash = _blocks("bash")
    assert [h for h, _ in bash[:2]] == ["## Set-up and the two commands", "## Using it"]
    # make demo / make test are the Makefile's (this suite is `make test`); the rest runs here
    assert _commands(bash[0][1]) == ["make demo", "make test"]
    used: set[str] = set()
    outputs: dict[str, str] = {}
    ran, skipped = [], []
    for i, (_, block) in enumerate(bash[1:], start=1):
        cwd = work / f"block{i}"
        cwd.mkdir()
        # the user's own photos, which the blocks after "Using it" name
        for name, (h, w) in {"photo.jpg": (200, 232), "a.jpg": (96, 128), "b.png": (130, 70),
                             "x.png": (64, 64)}.items():  # fmt: skip
            Image.fromarray(np.ascontiguousarray(photo[:h, :w])).save(cwd / name)
        for cmd in _commands(block):
            why = next((r for start, r in NOT_RUN.items() if cmd.startswith(start)), None)
            if why is not None:
                skipped.append(cmd)
                continue
            proc = _run(_tiny(shlex.split(cmd), used), cwd, env)
            outputs[cmd] = proc.stdout
            ran.append(cmd)
    assert used == set(TINY), f"README no longer shows {set(TINY) - used}"
    assert len(skipped) == len(NOT_RUN)  # each reason still names a README line
    using = _commands(bash[1][1])
    assert all(c in ran for c in using)  # the "Using it" block runs whole
    assert any(c.startswith("saicm train") for c in using)
    evaluation = next(outputs[c] for c in using if c.startswith("saicm eval"))
    for word in ("bpp", "PSNR dB", "MS-SSIM", "detection/map", "BD-rate", "report/report.html"):
        assert word in evaluation, evaluation
    rows = {ln.split()[1]: ln for ln in evaluation.splitlines() if ln.split()[:1] == ["mse-mbt"]}
    assert list(rows) == [f"mse-mbt-{v}" for v in ("0.0018", "0.0035", "0.0067", "0.013")]
    assert any(ln.startswith("mine ") for ln in evaluation.splitlines())
    decoded = work / "block1" / "photo.png"
    with Image.open(decoded) as img, Image.open(
        work / "block1" / "data" / "offline" / "val" / "skimage_astronaut.png"
    ) as src:
        assert img.size == src.size


def test_readme_python_block_runs(fresh, photo, monkeypatch):
    work, env = fresh
    (python,) = [b for h, b in _blocks("python")]
    Image.fromarray(photo[:200, :232]).save(work / "photo.jpg")
    proc = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", python + "\nprint(image.shape)"],
        cwd=work,
        env={**env, "PYTHONWARNINGS": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "(200, 232, 3)"

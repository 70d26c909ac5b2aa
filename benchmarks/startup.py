"""Start-up time of the ``saicm`` command: ``--help``, an argument error, and ``encode``.

Each command runs ``--repeat`` times in a fresh interpreter (wall seconds, median), then once
under ``python -X importtime`` (seconds spent importing, the sum of the top-level imports)::

    .venv/bin/python benchmarks/startup.py                   # this checkout's src/
    .venv/bin/python benchmarks/startup.py --src /tmp/old/src   # another tree (git archive)

Prints a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _env(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src)}


def _wall(argv: list[str], src: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "saicm", *argv], env=_env(src), capture_output=True)
    return time.perf_counter() - t


def _import_seconds(argv: list[str], src: Path) -> float:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "saicm", *argv],
        env=_env(src),
        capture_output=True,
        text=True,
    )
    total = 0
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|", 2)
            if cumulative.strip().isdigit() and not name.startswith("  "):  # top level: once
                total += int(cumulative)
    return total / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    from PIL import Image
    from skimage import data

    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "astronaut.png"
        Image.fromarray(data.astronaut()[:256, :256]).save(image)
        out = Path(tmp) / "a.sic"
        commands = {
            "saicm --help": ["--help"],
            "saicm eval ... --bootstrap -1 (argument error)": [
                *("eval", "--images", "x", "--codec", "jpeg", "--bootstrap", "-1", "-o", "r"),
            ],
            "saicm encode (256x256, default model)": ["encode", str(image), "-o", str(out)],
        }
        print(f"| command | wall s (median of {args.repeat}) | import s (-X importtime) |")
        print("|---|---|---|")
        for label, argv in commands.items():
            walls = []
            for _ in range(args.repeat):
                out.unlink(missing_ok=True)
                walls.append(_wall(argv, args.src))
            out.unlink(missing_ok=True)
            imported = _import_seconds(argv, args.src)
            print(f"| `{label}` | {statistics.median(walls):.2f} | {imported:.2f} |")


if __name__ == "__main__":
    main()

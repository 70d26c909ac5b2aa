"""Crafted and mutated .sic files and coded weight streams (issue 14): decoded in a child
process (tests/codec/crafted.py) so that a segfault or a hang fails this test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).with_name("crafted.py")


def test_crafted_and_mutated_files_fail_cleanly(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, str(HARNESS), str(tmp_path), "--mutants", "30", "--every", "8"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    counts = json.loads(r.stdout.strip().splitlines()[-1])
    for kind in ("sic", "weights", "vbr"):
        c = counts[kind]
        assert c["tried"] > (30 if kind == "vbr" else 60)
        assert c["crashes"] == 0 and c["hangs"] == 0 and c["unexpected"] == 0, c
        assert c["ok"] >= 1 and c["clean"] > c["tried"] // 2  # the valid file still decodes

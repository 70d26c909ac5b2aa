"""Run settings as dataclasses that a file and the command line override."""

from __future__ import annotations

import dataclasses
from typing import Any, Self

from ..errors import SaicmError

__all__ = ["Settings"]


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

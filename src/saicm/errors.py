"""Errors that saicm reports to a user as one line (the CLI prints them without a traceback)."""

from __future__ import annotations

__all__ = ["BitstreamError", "ImageError", "ModelError", "SaicmError", "SaicmWarning"]


class SaicmError(Exception):
    """Base class: the user's input or set-up is wrong, and the message says what."""


class ImageError(SaicmError):
    """An image that cannot be read, is empty, or is larger than the documented limit."""


class BitstreamError(SaicmError):
    """A ``.sic`` file that is truncated, corrupted, of another format or of an unknown model."""


class ModelError(SaicmError):
    """A model name, checkpoint or configuration that cannot be used."""


class SaicmWarning(UserWarning):
    """Something was converted or assumed on the user's behalf (the CLI prints it on stderr)."""

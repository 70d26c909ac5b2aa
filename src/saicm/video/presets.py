"""NeRV's presets and the limits of a frame and of a clip: plain data without torch, so that
the command line checks ``--size``, ``--frame-size`` and ``--max-frames`` without importing it
(``saicm video ... --help`` and a bad option answer in a fraction of a second). Used by
:mod:`saicm.video.nerv`, :mod:`saicm.video.frames` and :mod:`saicm.video.bitstream`.
"""

from __future__ import annotations

from ..errors import SaicmError

__all__ = ["MAX_FRAMES", "MAX_PIXELS", "MAX_SIDE", "SIZES", "parse_size"]

#: Limits of a NeRV config (a ``.snv`` header, a ``--frame-size``): sides, pixels of a frame.
MAX_SIDE = 4096
MAX_PIXELS = 3840 * 2160
#: Frames a clip may have (the ``.snv`` limit, saicm.video.bitstream.MAX_FRAMES).
MAX_FRAMES = 100_000

#: Presets: stem hidden width, stem channels, first block width, width floor, PE levels,
#: activation, head kernel, PE layout (every preset: the official PE order).
SIZES: dict[str, tuple[int, int, int, int, int, str, int, str]] = {
    "S": (512, 26, 26, 96, 40, "swish", 1, "interleave"),  # NeRV-S (README: fc_hw_dim 9_16_26)
    "M": (512, 58, 58, 96, 40, "swish", 1, "interleave"),  # NeRV-M (9_16_58)
    "L": (512, 112, 112, 96, 40, "swish", 1, "interleave"),  # NeRV-L (9_16_112)
    "saicm-S": (256, 16, 96, 24, 80, "gelu", 3, "concat"),  # saicm's earlier S (result tables)
    "saicm-M": (384, 24, 160, 32, 80, "gelu", 3, "concat"),
    "saicm-L": (512, 32, 256, 48, 80, "gelu", 3, "concat"),
}


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"WxH"`` -> ``(W, H)``; None stays None.

    Raises :class:`SaicmError` unless both are integers in ``[1, MAX_SIDE]`` (4096) with at most
    ``MAX_PIXELS`` (3840x2160) pixels: the limits of a NeRV frame (:mod:`saicm.video.nerv`),
    checked before any frame is read or scaled.
    """
    if text is None:
        return None
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and len(p.strip()) < 9 for p in parts):
        raise SaicmError(f"--frame-size {text!r}: expected WIDTHxHEIGHT, e.g. 416x240")
    w, h = (int(p) for p in parts)
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE) or w * h > MAX_PIXELS:
        raise SaicmError(
            f"--frame-size {text!r}: sides 1 to {MAX_SIDE} and at most {MAX_PIXELS} pixels "
            "(3840x2160)"
        )
    return w, h

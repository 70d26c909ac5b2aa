"""Side-by-side pictures (image | segments | mask) so a person can see what the codec will learn."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .sources import MaskResult

__all__ = ["colorize", "preview"]


def colorize(segments: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """A label map in random but stable colours (0 black); a float map as grey; None as black."""
    if segments is None:
        return np.zeros((*shape, 3), np.uint8)
    if segments.dtype.kind == "f":
        grey = (np.clip(segments, 0, 1) * 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    rng = np.random.default_rng(0)
    palette = rng.integers(40, 256, size=(int(segments.max()) + 1, 3), dtype=np.uint8)
    palette[0] = 0
    return palette[segments]


def preview(image: np.ndarray, result: MaskResult, title: str = "") -> Image.Image:
    """``image | segments | mask`` with captions, as one RGB picture."""
    h, w = image.shape[:2]
    mask = np.repeat((result.mask.astype(np.uint8) * 255)[..., None], 3, axis=2)
    panels = [image, colorize(result.segments, (h, w)), mask]
    gap = 6
    canvas = Image.new("RGB", (3 * w + 2 * gap, h + 18), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    middle = (
        "boundary probability"
        if result.segments is not None and result.segments.dtype.kind == "f"
        else "segments"
    )
    captions = [
        "image",
        f"{middle} ({result.count})" if result.count else middle,
        f"mask ({result.mask.mean() * 100:.1f}% of pixels) {title}".strip(),
    ]
    for i, (panel, cap) in enumerate(zip(panels, captions, strict=True)):
        canvas.paste(Image.fromarray(panel), (i * (w + gap), 18))
        draw.text((i * (w + gap) + 2, 3), cap, fill=(0, 0, 0))
    return canvas

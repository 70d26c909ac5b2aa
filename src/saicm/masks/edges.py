"""From segments to SA-ICM's edge mask: paint a segmentation map, take Canny edges, widen."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["dilate", "label_edges", "paint_segments"]


def paint_segments(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Paint boolean masks into an int32 label map (0 = no segment), largest first, so that
    small segments painted later stay visible on top of the large ones that contain them."""
    labels = np.zeros(shape, dtype=np.int32)
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    for label, i in enumerate(order, start=1):
        labels[masks[i]] = label
    return labels


def dilate(edges: np.ndarray, width: int) -> np.ndarray:
    """Grow one-pixel curves by a disk of radius ``width`` (0 leaves them as they are)."""
    if width <= 0:
        return edges.astype(bool)
    from scipy.ndimage import binary_dilation
    from skimage.morphology import disk

    return binary_dilation(edges, structure=disk(width))


def label_edges(labels: np.ndarray, width: int = 0) -> np.ndarray:
    """Canny edges of a label map, as SA-ICM takes them from SAM's segmentation map.

    The labels are spread over three 8-bit channels (so any two labels differ in some channel)
    and Canny runs on each with thresholds of 1: every change of label is an edge, one pixel wide,
    and nothing inside a segment is.
    """
    import cv2

    lab = labels.astype(np.int64)
    edges = np.zeros(labels.shape, dtype=bool)
    for shift in (0, 8, 16):
        channel = (((lab >> shift) & 0xFF) * 97 % 256).astype(np.uint8)  # spread close labels
        if channel.any():
            edges |= cv2.Canny(channel, 1, 1, L2gradient=True) > 0
    return dilate(edges, width)

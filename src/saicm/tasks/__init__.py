"""Recognition models that judge decoded images (image in, COCO-format results out)."""

from .detection import (
    Detection,
    SSDMobileNetV2,
    TorchvisionDetector,
    UltralyticsDetector,
    draw_detections,
)

__all__ = [
    "Detection",
    "SSDMobileNetV2",
    "TorchvisionDetector",
    "UltralyticsDetector",
    "draw_detections",
]

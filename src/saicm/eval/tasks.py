"""Recognition tasks under evaluation, one interface: an RGB image in, COCO results out."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SaicmError

__all__ = ["TASKS", "Task", "create_task"]


class Task:
    """``predict(image) -> [{"category_id", "bbox", "score"[, "segmentation"]}, ...]``;
    ``iou_types`` are the COCO evaluations that apply (``bbox``, ``segm``)."""

    name: str = ""
    iou_types: tuple[str, ...] = ("bbox",)

    def predict(self, image: np.ndarray) -> list[dict[str, Any]]:
        raise NotImplementedError


class DetectionTask(Task):
    """Boxes from the bundled COCO SSD-MobileNet-v2 (OpenCV DNN)."""

    name = "detection"

    def __init__(self) -> None:
        from ..tasks import SSDMobileNetV2

        self.model = SSDMobileNetV2(min_score=0.05)
        self.model_name = self.model.name

    def predict(self, image: np.ndarray) -> list[dict[str, Any]]:
        return [
            {"category_id": d.category_id, "bbox": list(d.bbox), "score": d.score}
            for d in self.model(image)
        ]


class InstanceTask(Task):
    """Boxes and masks from a torchvision Mask R-CNN with the user's weights."""

    name = "instance"
    iou_types = ("bbox", "segm")

    def __init__(self, weights: str | None, arch: str = "maskrcnn_resnet50_fpn") -> None:
        from ..tasks import TorchvisionDetector

        if weights is None:
            raise SaicmError(
                "the instance task needs --detector-weights (a torchvision "
                f"{arch} state dict; torchvision publishes the COCO weights)"
            )
        self.model = TorchvisionDetector(arch, weights)
        self.model_name = arch

    def predict(self, image: np.ndarray) -> list[dict[str, Any]]:
        from pycocotools import mask as mask_utils

        out = []
        for det, mask in self.model.predict_with_masks(image):
            rec: dict[str, Any] = {
                "category_id": det.category_id,
                "bbox": list(det.bbox),
                "score": det.score,
            }
            if mask is not None:
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                rec["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
            out.append(rec)
        return out


class PrivacyTask(Task):
    """Faces (MTCNN) and, where dlib is installed, their identity descriptors.

    Not scored with COCO mAP: the runner compares the faces of each decoded image with those of
    the original (see :func:`saicm.eval.metrics.face_privacy`).
    """

    name = "privacy"
    iou_types = ()

    def __init__(self) -> None:
        from ..tasks.faces import FaceDescriptor, FaceDetector

        self.detector = FaceDetector(min_score=0.5)
        self.descriptor = FaceDescriptor() if FaceDescriptor.available() else None

    def predict(self, image: np.ndarray) -> list[dict[str, Any]]:
        out = []
        for box, score in self.detector(image):
            rec: dict[str, Any] = {"category_id": 1, "bbox": list(box), "score": score}
            if self.descriptor is not None:
                rec["descriptor"] = [round(v, 5) for v in self.descriptor(image, box)]
            out.append(rec)
        return out


TASKS = {"detection": DetectionTask, "instance": InstanceTask, "privacy": PrivacyTask}


def create_task(name: str, **options: Any) -> Task:
    if name not in TASKS:
        raise SaicmError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    if name == "instance":
        return InstanceTask(
            options.get("detector_weights"), options.get("detector_arch") or "maskrcnn_resnet50_fpn"
        )
    return TASKS[name]()

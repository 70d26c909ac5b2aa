"""Recognition tasks under evaluation, one interface: an RGB image in, COCO results out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SaicmError

__all__ = ["TASKS", "Task", "create_task"]


class Task:
    """``predict(image) -> [{"category_id", "bbox", "score"[, "segmentation"]}, ...]``;
    ``iou_types`` are the COCO evaluations that apply (``bbox``, ``segm``). A task with no
    ``iou_types`` scores decoded images against the originals itself (``score``)."""

    name: str = ""
    iou_types: tuple[str, ...] = ("bbox",)
    spec: tuple[str, dict[str, Any]] = ("", {})
    _fingerprint: dict[str, Any] | None = None

    def fingerprint(self) -> dict[str, Any]:
        """Everything that determines this task's outputs on an image: the model's
        architecture, a hash of its weights (not a file or hub name), its thresholds, and the
        version of the library that runs it. Part of every cached cell's key
        (docs/EVALUATION.md); computed once per task."""
        if self._fingerprint is None:
            self._fingerprint = {"task": self.name, **self._model_fingerprint()}
        return self._fingerprint

    def _model_fingerprint(self) -> dict[str, Any]:
        raise NotImplementedError

    def predict(self, image: np.ndarray) -> list[dict[str, Any]]:
        raise NotImplementedError

    @property
    def categories(self) -> dict[int, str]:
        """The label space of :meth:`predict`: category id -> name. Annotation files are matched
        to it by name (:func:`saicm.data.coco.match_categories`), never by number."""
        return dict(self.model.categories)

    def score(self, original: list[list[dict]], decoded: list[list[dict]]) -> dict[str, float]:
        """Metrics of the decoded images' outputs against the originals' (per image lists)."""
        raise NotImplementedError


class DetectionTask(Task):
    """Boxes from a COCO detector: the bundled SSD-MobileNet-v2 (OpenCV DNN) by default, an
    ultralytics YOLO (``arch="yolo"``) or a torchvision detector (``arch`` = its builder name)
    with the user's ``weights``."""

    name = "detection"

    def __init__(self, weights: str | None = None, arch: str | None = None) -> None:
        from ..tasks import SSDMobileNetV2, TorchvisionDetector, UltralyticsDetector

        if arch in (None, "ssd", "ssd-mobilenet-v2"):
            self.model = SSDMobileNetV2(min_score=0.05)
        elif arch == "yolo":
            if weights is None:
                raise SaicmError("--detector-arch yolo needs --detector-weights (a YOLO .pt)")
            self.model = UltralyticsDetector(weights)
        else:
            if weights is None:
                raise SaicmError(f"--detector-arch {arch} needs --detector-weights")
            self.model = TorchvisionDetector(arch, weights)
        self.model_name = self.model.name

    def predict(self, image: np.ndarray) -> list[dict[str, Any]]:
        return [
            {"category_id": d.category_id, "bbox": list(d.bbox), "score": d.score}
            for d in self.model(image)
        ]

    def _model_fingerprint(self) -> dict[str, Any]:
        return _detector_fingerprint(self.model)


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

    def _model_fingerprint(self) -> dict[str, Any]:
        return _detector_fingerprint(self.model)


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

    def _model_fingerprint(self) -> dict[str, Any]:
        from importlib.metadata import version

        from ..utils.fingerprint import file_sha256, state_sha256

        fp: dict[str, Any] = {
            "detector": "mtcnn",
            "weights": state_sha256(self.detector.net),
            "min_score": self.detector.min_score,
            "facenet_pytorch": version("facenet-pytorch"),
        }
        if self.descriptor is not None:  # identities only where dlib is installed
            import importlib.util

            spec = importlib.util.find_spec("face_recognition_models")
            root = Path(next(iter(spec.submodule_search_locations))) / "models"
            fp["descriptor"] = [
                file_sha256(root / n)
                for n in (
                    "shape_predictor_5_face_landmarks.dat",
                    "dlib_face_recognition_resnet_model_v1.dat",
                )
            ]
        else:
            fp["descriptor"] = None
        return fp

    def score(self, original: list[list[dict]], decoded: list[list[dict]]) -> dict[str, float]:
        from .metrics import face_privacy

        return face_privacy(original, decoded)


class PanopticTask(Task):
    """Panoptic segments (transformers Mask2Former & co., the user's model), scored by PQ
    against the same model's segmentation of the original image."""

    name = "panoptic"
    iou_types = ()

    def __init__(self, model: str | None, **options: float) -> None:
        from ..tasks.panoptic import PanopticSegmenter

        if model is None:
            raise SaicmError(
                "the panoptic task needs --panoptic-model (a transformers model "
                "folder or hub name, e.g. facebook/mask2former-swin-tiny-coco-panoptic)"
            )
        self.model = PanopticSegmenter(model, **options)

    def predict(self, image: np.ndarray) -> list[dict[str, Any]]:
        from pycocotools import mask as mask_utils

        seg_map, segments = self.model(image)
        out = []
        for s in segments:
            rle = mask_utils.encode(np.asfortranarray((seg_map == s["id"]).astype(np.uint8)))
            out.append(
                {
                    "category_id": s["category_id"],
                    "score": s["score"],
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                }
            )
        return out

    def _model_fingerprint(self) -> dict[str, Any]:
        import transformers

        from ..utils.fingerprint import state_sha256

        return {
            "model": type(self.model.net).__name__,
            "weights": state_sha256(self.model.net),
            "options": self.model.options,
            "transformers": transformers.__version__,
        }

    def score(self, original: list[list[dict]], decoded: list[list[dict]]) -> dict[str, float]:
        from .metrics import panoptic_quality

        return panoptic_quality(original, decoded)


def _detector_fingerprint(model: Any) -> dict[str, Any]:
    """Architecture, weights hash and score threshold of a saicm detector wrapper."""
    from ..utils.fingerprint import file_sha256, state_sha256

    fp: dict[str, Any] = {"arch": model.name, "min_score": model.min_score}
    if hasattr(model, "input_size"):  # SSD-MobileNet-v2 through OpenCV DNN: its two files
        import cv2

        from ..tasks.detection import _model_files

        fp["weights"] = [file_sha256(f) for f in _model_files()]
        fp["input_size"] = model.input_size
        fp["opencv"] = cv2.__version__
    elif type(model).__name__ == "UltralyticsDetector":
        import ultralytics

        fp["weights"] = state_sha256(model.net.model)
        fp["ultralytics"] = ultralytics.__version__
    else:
        import torchvision

        fp["weights"] = state_sha256(model.net)
        fp["torchvision"] = torchvision.__version__
    return fp


TASKS = {
    "detection": DetectionTask,
    "instance": InstanceTask,
    "privacy": PrivacyTask,
    "panoptic": PanopticTask,
}


def create_task(name: str, **options: Any) -> Task:
    """A task by name; ``options`` are kept on it (``task.spec``) so that worker processes can
    build their own copy."""
    if name not in TASKS:
        raise SaicmError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    if name == "instance":
        task: Task = InstanceTask(
            options.get("detector_weights"), options.get("detector_arch") or "maskrcnn_resnet50_fpn"
        )
    elif name == "detection":
        task = DetectionTask(options.get("detector_weights"), options.get("detector_arch"))
    elif name == "panoptic":
        task = PanopticTask(options.get("panoptic_model"), **options.get("panoptic_options", {}))
    else:
        task = TASKS[name]()
    task.spec = (name, options)
    return task

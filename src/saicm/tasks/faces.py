"""Faces, for the privacy measure: MTCNN finds them (weights ship in ``facenet-pytorch``) and,
where ``dlib`` and ``face-recognition-models`` are installed, dlib's ResNet describes each face
with a 128-d vector whose distance says whether two faces are the same person.

SA-ICM drops texture, and faces with it: fewer faces should be found in decoded images, and
fewer of those found should still be recognisable as the same person.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import ModelError

__all__ = ["SAME_PERSON", "FaceDescriptor", "FaceDetector"]

#: dlib's threshold: descriptors closer than this are the same person (99.38% on LFW).
SAME_PERSON = 0.6


class FaceDetector:
    """MTCNN (Zhang et al. 2016) on the CPU or GPU; returns ``[(x, y, w, h), score]``."""

    def __init__(self, min_score: float = 0.5, device: str | None = None) -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError:
            raise ModelError(
                "face detection needs facenet-pytorch (pip install --no-deps facenet-pytorch)"
            ) from None
        import torch

        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.net = MTCNN(keep_all=True, device=dev)
        self.min_score = min_score

    def __call__(self, image: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        boxes, probs = self.net.detect(image)
        if boxes is None:
            return []
        h, w = image.shape[:2]
        out = []
        for (x0, y0, x1, y1), p in zip(boxes, probs, strict=True):
            if p is None or p < self.min_score:
                continue
            x0, x1 = max(0.0, float(x0)), min(float(w), float(x1))
            y0, y1 = max(0.0, float(y0)), min(float(h), float(y1))
            if x1 > x0 and y1 > y0:
                out.append(((x0, y0, x1 - x0, y1 - y0), float(p)))
        return out


class FaceDescriptor:
    """dlib's 128-d face descriptor (ResNet, 5-point alignment)."""

    def __init__(self) -> None:
        spec = importlib.util.find_spec("face_recognition_models")
        try:
            import dlib
        except ImportError:
            dlib = None
        if dlib is None or spec is None or not spec.submodule_search_locations:
            raise ModelError("identity needs dlib-bin and face-recognition-models")
        root = Path(next(iter(spec.submodule_search_locations))) / "models"
        self._dlib = dlib
        self.shape = dlib.shape_predictor(str(root / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(
            str(root / "dlib_face_recognition_resnet_model_v1.dat")
        )

    @staticmethod
    def available() -> bool:
        return (
            importlib.util.find_spec("dlib") is not None
            and importlib.util.find_spec("face_recognition_models") is not None
        )

    def __call__(self, image: np.ndarray, box: tuple[float, float, float, float]) -> list[float]:
        x, y, w, h = box
        rect = self._dlib.rectangle(int(x), int(y), int(x + w), int(y + h))
        shape = self.shape(np.ascontiguousarray(image), rect)
        return list(self.net.compute_face_descriptor(np.ascontiguousarray(image), shape))

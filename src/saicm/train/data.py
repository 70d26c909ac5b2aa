"""Training data: images with their masks, cropped and flipped together."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from ..errors import SaicmError
from ..image import image_size, list_images, load_image
from ..masks.io import check_masks, read_mask

__all__ = ["MaskedImageFolder", "MicroBatches"]


def _generator(*key: int) -> torch.Generator:
    """A generator seeded by a tuple of integers (seed, epoch) or (seed, sample)."""
    h = 0
    for k in key:
        h = (h * 1_000_003 + k) % (2**63 - 1)
    return torch.Generator().manual_seed(h)


class MaskedImageFolder(Dataset):
    """Random crops of the images in ``images`` and, if given, of their masks in ``masks``.

    Item ``k`` is the ``k``-th sample of the whole run (not the ``k``-th image): epoch
    ``k // len`` visits the images in a seeded permutation, and the crop and flip of sample ``k``
    come from a generator seeded by ``(seed, k)``. The data a run sees is therefore a function of
    the step alone, whatever the number of ranks, workers or restarts.

    Mask ``masks/<stem>.png`` belongs to image ``images/<stem>.*``; a missing mask or one whose
    size differs from its image is an error at construction, naming the file. Every mask is read
    once at construction (:func:`saicm.masks.io.check_masks`): a file that is not a binary mask,
    or masks that are all empty, are refused there, naming the files; ``mask_fraction`` is then
    the mean share of mask pixels (NaN without masks).

    Arguments:
        images: folder of training images.
        masks: folder of mask PNGs (any binary PNG, see :mod:`saicm.masks.io`), or None (all
            ones).
        crop: side of the square random crop.
        flip: random horizontal flips.
        seed: seed of the sample sequence.
        object_crops: fraction of the crops placed around a random pixel of the mask (the rest,
            and every crop of an image whose mask is empty, are uniform). Sparse masks need it:
            most uniform 128-pixel crops of a photo hold no object, and region learning then
            sees the rate term alone.
        allow_empty: accept some empty masks (object masks of images without objects); never
            all of them.
    """

    def __init__(
        self,
        images: str | Path,
        masks: str | Path | None,
        crop: int,
        flip: bool = True,
        seed: int = 0,
        object_crops: float = 0.0,
        allow_empty: bool = False,
    ) -> None:
        if not 0.0 <= object_crops <= 1.0:
            raise SaicmError(f"object crops {object_crops}: a fraction between 0 and 1")
        self.files = list_images(images)
        self.object_crops = object_crops
        self.crop = crop
        self.flip = flip
        self.seed = seed
        self.masks: list[Path] | None = None
        self._cache: dict[int, torch.Tensor] = {}  # decoded image+mask, uint8: decode once
        self._perm: tuple[int, torch.Tensor] | None = None
        self.mask_fraction = float("nan")
        self.empty_masks: list[Path] = []
        if masks is not None:
            stems: dict[str, Path] = {}
            for f in self.files:  # a.png and a.jpg would both learn the mask a.png
                if f.stem in stems:
                    raise SaicmError(
                        f"{f} and {stems[f.stem].name} would share the mask {f.stem}.png: "
                        "keep one of them in the training folder"
                    )
                stems[f.stem] = f
            self.masks = [self._mask_for(f, Path(masks)) for f in self.files]
            self.mask_fraction, self.empty_masks = check_masks(self.masks, allow_empty)

    @staticmethod
    def _mask_for(image: Path, mask_dir: Path) -> Path:
        if not mask_dir.is_dir():
            raise SaicmError(f"{mask_dir}: no such mask folder")
        m = mask_dir / f"{image.stem}.png"
        if not m.is_file():
            raise SaicmError(f"{m}: mask missing for image {image.name}")
        isize, msize = image_size(image), image_size(m)  # both as viewed (EXIF orientation)
        if isize != msize:
            raise SaicmError(
                f"{m}: mask is {msize[0]}x{msize[1]} but image {image.name} is "
                f"{isize[0]}x{isize[1]}"
            )
        return m

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> torch.Tensor:
        """Image ``i`` and its mask as one ``(4, H, W)`` uint8 tensor."""
        if i not in self._cache:
            img = torch.from_numpy(load_image(self.files[i])).permute(2, 0, 1)
            if self.masks is not None:
                m = read_mask(self.masks[i], allow_empty=True)  # refused at construction
                mask = torch.from_numpy(m).to(torch.uint8)[None] * 255
            else:
                mask = torch.full((1, *img.shape[1:]), 255, dtype=torch.uint8)
            self._cache[i] = torch.cat([img, mask])
        return self._cache[i]

    def image_index(self, k: int) -> int:
        epoch, pos = divmod(k, len(self.files))
        if self._perm is None or self._perm[0] != epoch:
            perm = torch.randperm(len(self.files), generator=_generator(self.seed, 0, epoch))
            self._perm = (epoch, perm)
        return int(self._perm[1][pos])

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        both = self.load(self.image_index(k)).float() / 255.0
        gen = _generator(self.seed, 1, k)
        c = self.crop
        _, h, w = both.shape
        if h < c or w < c:  # small images: replicate the border up to one crop
            both = F.pad(both[None], (0, max(0, c - w), 0, max(0, c - h)), mode="replicate")[0]
            _, h, w = both.shape
        around = None  # uniform crops draw nothing extra: their sequence is that of older runs
        if self.object_crops > 0 and float(torch.rand(1, generator=gen)) < self.object_crops:
            around = self._mask_pixel(both[3], gen)
        if around is None:
            top = int(torch.randint(0, h - c + 1, (1,), generator=gen))
            left = int(torch.randint(0, w - c + 1, (1,), generator=gen))
        else:  # any crop position that keeps the chosen pixel inside, uniformly
            y, x = around
            top = int(torch.randint(max(0, y - c + 1), min(y, h - c) + 1, (1,), generator=gen))
            left = int(torch.randint(max(0, x - c + 1), min(x, w - c) + 1, (1,), generator=gen))
        both = both[:, top : top + c, left : left + c]
        if self.flip and bool(torch.rand(1, generator=gen) < 0.5):
            both = both.flip(-1)
        return both[:3].contiguous(), both[3:].contiguous()

    @staticmethod
    def _mask_pixel(mask: torch.Tensor, gen: torch.Generator) -> tuple[int, int] | None:
        """A random ``(y, x)`` where ``mask`` is on, or None where it is empty."""
        on = torch.nonzero(mask > 0.5)
        if len(on) == 0:
            return None
        y, x = on[int(torch.randint(0, len(on), (1,), generator=gen))].tolist()
        return y, x


class MicroBatches(Sampler[list[int]]):
    """Sample keys of this rank's micro-batches, step after step, from ``start_step``.

    Step ``s`` covers samples ``s*B .. s*B+B-1``; micro-batch ``g = rank*accumulate + m`` takes
    the ``g``-th slice of ``B / (world*accumulate)`` of them.
    """

    def __init__(
        self, batch: int, world: int, rank: int, accumulate: int, start_step: int, steps: int
    ) -> None:
        self.batch, self.rank, self.accumulate = batch, rank, accumulate
        self.micro = batch // (world * accumulate)
        self.start, self.steps = start_step, steps

    def __len__(self) -> int:
        return (self.steps - self.start) * self.accumulate

    def __iter__(self):
        for s in range(self.start, self.steps):
            for m in range(self.accumulate):
                g = self.rank * self.accumulate + m
                first = s * self.batch + g * self.micro
                yield list(range(first, first + self.micro))

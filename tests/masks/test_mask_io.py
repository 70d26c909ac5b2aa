"""Mask files as users write them: every binary kind read right, the rest refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from saicm.masks.io import MaskError, check_masks, read_mask

TRUTH = np.zeros((6, 10), bool)
TRUTH[1:4, 2:7] = True  # 15 of 60 pixels: fraction 0.25


def _grey(values: tuple[int, int], dtype=np.uint8) -> np.ndarray:
    return np.where(TRUTH, values[1], values[0]).astype(dtype)


def _write(kind: str, path):
    if kind == "0/1 uint8":  # Image.fromarray(mask.astype(np.uint8)): the commonest
        Image.fromarray(TRUTH.astype(np.uint8)).save(path)
    elif kind == "0/255":
        Image.fromarray(_grey((0, 255))).save(path)
    elif kind == "bool mode 1":
        Image.fromarray(TRUTH).save(path)
    elif kind == "two grey levels":
        Image.fromarray(_grey((30, 200))).save(path)
    elif kind == "16-bit 0/65535":
        Image.fromarray(_grey((0, 65535), np.uint16)).save(path)
    elif kind == "palette, on at index 0":
        img = Image.fromarray(np.where(TRUTH, 0, 5).astype(np.uint8), "P")
        pal = [0] * 768
        pal[0:3] = (255, 0, 0)  # red object at index 0, black background at index 5
        img.putpalette(pal)
        img.save(path)
    elif kind == "RGB black/white":
        Image.fromarray(np.repeat(_grey((0, 255))[..., None], 3, axis=2)).save(path)
    elif kind == "RGB label colour":
        rgb = np.zeros((*TRUTH.shape, 3), np.uint8)
        rgb[TRUTH] = (0, 128, 255)
        Image.fromarray(rgb).save(path)
    elif kind == "RGBA transparent background":
        rgba = np.zeros((*TRUTH.shape, 4), np.uint8)
        rgba[..., :3] = 255  # white everywhere: the alpha tells the object
        rgba[TRUTH, 3] = 255
        Image.fromarray(rgba, "RGBA").save(path)
    elif kind == "0/1 BMP":
        Image.fromarray(_grey((0, 1))).save(path.with_suffix(".bmp"))
        return path.with_suffix(".bmp")
    return path


KINDS = [
    "0/1 uint8",
    "0/255",
    "bool mode 1",
    "two grey levels",
    "16-bit 0/65535",
    "palette, on at index 0",
    "RGB black/white",
    "RGB label colour",
    "RGBA transparent background",
    "0/1 BMP",
]


@pytest.mark.parametrize("kind", KINDS)
def test_every_binary_kind_reads_as_the_same_mask(tmp_path, kind):
    path = _write(kind, tmp_path / "m.png")
    got = read_mask(path)
    assert got.dtype == bool and (got == TRUTH).all()
    assert check_masks([path]) == (0.25, [])


def test_not_binary_is_refused_naming_the_file(tmp_path):
    three = np.zeros((4, 4), np.uint8)
    three[0, 0], three[1, 1] = 1, 2
    Image.fromarray(three).save(tmp_path / "three.png")
    with pytest.raises(MaskError, match=r"three\.png: not a binary mask: 3 different"):
        read_mask(tmp_path / "three.png")
    Image.fromarray(_grey((0, 255))).save(tmp_path / "lossy.jpg", quality=50)
    with pytest.raises(MaskError, match=r"lossy\.jpg: not a binary mask"):
        read_mask(tmp_path / "lossy.jpg")
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[1, 1] = (0, 0, 255)  # red and blue: as bright as each other, on black: three colours
    Image.fromarray(rgb).save(tmp_path / "rb.png")
    with pytest.raises(MaskError, match="3 different"):
        read_mask(tmp_path / "rb.png")
    Image.fromarray(rgb[:1, :1]).save(tmp_path / "r.png")  # one colour, not black: all on
    assert read_mask(tmp_path / "r.png").all()


def test_empty_masks_are_refused_unless_allowed_but_never_all(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "empty.png")
    Image.fromarray(TRUTH).save(tmp_path / "full.png")
    with pytest.raises(MaskError, match=r"empty\.png: empty mask"):
        read_mask(tmp_path / "empty.png")
    assert not read_mask(tmp_path / "empty.png", allow_empty=True).any()
    with pytest.raises(MaskError, match=r"1 empty masks: .*empty\.png"):
        check_masks([tmp_path / "full.png", tmp_path / "empty.png"])
    fraction, empty = check_masks([tmp_path / "full.png", tmp_path / "empty.png"], True)
    assert fraction == pytest.approx((0.25 + 0) / 2) and empty == [tmp_path / "empty.png"]
    with pytest.raises(MaskError, match=r"every mask is empty.*empty\.png"):
        check_masks([tmp_path / "empty.png"], allow_empty=True)


def test_unreadable_and_missing(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(MaskError, match=r"x\.png: not an image"):
        read_mask(tmp_path / "x.png")
    with pytest.raises(MaskError, match=r"nope\.png: no such mask file"):
        read_mask(tmp_path / "nope.png")


def test_exif_orientation_turns_the_mask_as_it_turns_the_image(tmp_path):
    from saicm.image import load_image

    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees clockwise to view
    Image.fromarray(TRUTH).save(tmp_path / "m.png", exif=exif.tobytes())
    rgb = np.where(TRUTH[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2)
    Image.fromarray(rgb).save(tmp_path / "i.png", exif=exif.tobytes())
    got = read_mask(tmp_path / "m.png")
    assert (got == np.rot90(TRUTH, -1)).all()
    assert (got == (load_image(tmp_path / "i.png")[..., 0] > 0)).all()

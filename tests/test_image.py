"""The one image loader: every kind of file Pillow opens, read as a viewer shows it."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from saicm.errors import SaicmWarning
from saicm.image import image_size, load_image, to_rgb

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _load(path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rgb = load_image(path)
    return rgb, [str(w.message) for w in caught if issubclass(w.category, SaicmWarning)]


def _sideways_jpeg(path):
    """40 wide x 24 high as stored, left half red; EXIF orientation 6 (turn 90 degrees clockwise
    to view), as a phone held upright writes it."""
    a = np.zeros((24, 40, 3), np.uint8)
    a[:, :20] = RED
    a[:, 20:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(path, quality=95, exif=exif.tobytes())


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "phone.jpg"
    _sideways_jpeg(path)
    rgb, said = _load(path)
    assert rgb.shape == (40, 24, 3)  # upright: 24 wide, 40 high
    assert image_size(path) == (24, 40)
    # the stored left (red) column is the viewed top row
    assert np.abs(rgb[:18].mean((0, 1)) - RED).max() < 20
    assert np.abs(rgb[22:].mean((0, 1)) - BLUE).max() < 20
    assert said == []  # what every viewer does: nothing to warn of


def test_exif_orientation_reaches_the_codec(tmp_path, tiny_model):
    import saicm

    path = tmp_path / "phone.jpg"
    _sideways_jpeg(path)
    decoded = saicm.decode(saicm.encode(path, tiny_model), tiny_model)
    assert decoded.shape == (40, 24, 3)


def test_palette_png_with_transparent_colour_turns_white_with_a_warning(tmp_path):
    img = Image.new("P", (8, 4), 0)
    img.putpalette([0, 0, 0, *RED] + [0] * 762)
    img.paste(1, (0, 0, 4, 4))  # left half red, right half index 0 (black, transparent)
    img.save(tmp_path / "p.png", transparency=0)
    rgb, said = _load(tmp_path / "p.png")
    assert (rgb[:, :4] == RED).all() and (rgb[:, 4:] == WHITE).all()
    assert any("composited onto white" in s and "50.0%" in s for s in said)


def test_rgba_alpha_is_composited_onto_white(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 3] = 128  # black at alpha 128/255
    a[0, 0] = (*RED, 255)
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    rgb, said = _load(tmp_path / "a.png")
    assert tuple(rgb[0, 0]) == RED
    assert tuple(rgb[1, 1]) == (127, 127, 127)  # 255 * (1 - 128/255)
    assert len(said) == 1
    # the same from an array
    with pytest.warns(SaicmWarning, match="onto white"):
        assert tuple(to_rgb(a)[1, 1]) == (127, 127, 127)


def test_opaque_rgba_is_exact_and_silent(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    a[..., 3] = 255
    Image.fromarray(a, "RGBA").save(tmp_path / "o.png")
    rgb, said = _load(tmp_path / "o.png")
    assert (rgb == a[..., :3]).all() and said == []


def test_la_pa_and_trns_grey_and_rgb(tmp_path):
    la = Image.fromarray(np.array([[[100, 255], [100, 0]]], np.uint8), "LA")
    la.save(tmp_path / "la.png")
    rgb, _ = _load(tmp_path / "la.png")
    assert tuple(rgb[0, 0]) == (100, 100, 100) and tuple(rgb[0, 1]) == WHITE

    pa = Image.new("PA", (2, 1))
    pa.putpalette([*RED, *BLUE] + [0] * 762)
    pa.putpixel((0, 0), (0, 255))
    pa.putpixel((1, 0), (1, 0))
    with pytest.warns(SaicmWarning):
        got = to_rgb(pa)
    assert tuple(got[0, 0]) == RED and tuple(got[0, 1]) == WHITE

    grey = Image.fromarray(np.array([[0, 50]], np.uint8), "L")
    grey.save(tmp_path / "l.png", transparency=0)
    rgb, said = _load(tmp_path / "l.png")
    assert tuple(rgb[0, 0]) == WHITE and tuple(rgb[0, 1]) == (50, 50, 50) and said

    col = Image.fromarray(np.array([[[0, 0, 0], [*RED]]], np.uint8), "RGB")
    col.save(tmp_path / "rgb.png", transparency=(0, 0, 0))
    rgb, said = _load(tmp_path / "rgb.png")
    assert tuple(rgb[0, 0]) == WHITE and tuple(rgb[0, 1]) == RED and said


def test_sixteen_bit_grey_scales_by_full_scale_not_by_its_own_range(tmp_path):
    a = np.array([[0, 200, 257 * 100, 65535]], np.uint16)  # a dark image's 200 is dark
    Image.fromarray(a).save(tmp_path / "g16.png")
    rgb, said = _load(tmp_path / "g16.png")
    assert rgb[0, :, 0].tolist() == [0, 1, 100, 255]
    assert any("8-bit" in s for s in said)


def test_sixteen_bit_rgb_keeps_its_high_byte_and_says_so(tmp_path):
    import cv2

    a = np.zeros((2, 3, 3), np.uint16)
    a[0, 0] = (65535, 257 * 100, 0)
    cv2.imwrite(str(tmp_path / "rgb16.png"), a[..., ::-1])  # OpenCV writes BGR
    rgb, said = _load(tmp_path / "rgb16.png")
    assert rgb[0, 0].tolist() == [255, 100, 0]
    assert any("16-bit RGB image converted to 8-bit" in s for s in said)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    a = np.zeros((16, 16, 4), np.uint8)
    a[:, 8:] = (0, 255, 255, 0)  # no cyan, full magenta and yellow: red
    Image.fromarray(a, "CMYK").save(tmp_path / "c.jpg", quality=95)
    rgb, said = _load(tmp_path / "c.jpg")
    assert rgb[:, :6].min() > 240  # no ink: white
    assert np.abs(rgb[:, 10:].mean((0, 1)) - RED).max() < 20
    assert any("CMYK" in s for s in said)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_multi_frame_files_give_their_first_frame_and_say_so(tmp_path, fmt):
    frames = [Image.new("RGB", (6, 4), c) for c in (RED, BLUE)]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:])
    rgb, said = _load(path)
    assert np.abs(rgb.mean((0, 1)) - RED).max() < 10
    assert any("2 frames" in s for s in said)


def test_an_srgb_colour_profile_leaves_pixels_bit_exact(tmp_path):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    a = np.random.default_rng(1).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "s.png", icc_profile=srgb.tobytes())
    rgb, said = _load(tmp_path / "s.png")
    assert (rgb == a).all() and said == []


def test_save_round_trip_unchanged(tmp_path):
    a = np.random.default_rng(2).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    (tmp_path / "x.png").write_bytes(buf.getvalue())
    rgb, said = _load(tmp_path / "x.png")
    assert (rgb == a).all() and said == []


def test_colour_profiles_of_real_files_are_applied():
    """mvtbdata's image3.jpg carries Adobe RGB (1998), tags.png (RGBA) Display P3: as sRGB
    they are not the stored numbers; lab-scene.png's sRGB profile leaves them untouched."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("mvtbdata")
    if spec is None:
        pytest.skip("mvtbdata is not installed")
    root = Path(next(iter(spec.submodule_search_locations))) / "images"
    for name, profile in [("image3.jpg", "Adobe RGB (1998)"), ("tags.png", "Display P3")]:
        rgb, said = _load(root / name)
        with Image.open(root / name) as img:
            stored = np.asarray(img.convert("RGB"), dtype=np.int16)
        assert any(profile in s and "converted to sRGB" in s for s in said)
        if name == "image3.jpg":  # opaque: the change is the colour conversion alone
            assert np.abs(rgb.astype(np.int16) - stored).mean() > 1
    rgb, said = _load(root / "lab-scene.png")
    with Image.open(root / "lab-scene.png") as img:
        assert (rgb == np.asarray(img.convert("RGB"))).all() and said == []


def test_a_fifo_or_device_is_refused_not_waited_on(tmp_path):
    import os

    from saicm.errors import ImageError
    from saicm.image import load_image

    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)  # nothing will ever write to it: opening it for reading would block
    with pytest.raises(ImageError, match=r"photo\.png: not a regular file"):
        load_image(fifo)
    link = tmp_path / "zero.png"
    link.symlink_to("/dev/zero")
    with pytest.raises(ImageError, match=r"zero\.png: not a regular file"):
        load_image(link)

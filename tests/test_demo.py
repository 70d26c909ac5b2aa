"""The shipped default model and the README's main job."""

from __future__ import annotations

import numpy as np
import torch

from saicm.codec import DEFAULT_MODEL, decode, encode, installed_models, load_model, unpack
from saicm.demo import run_demo
from saicm.image import pad_to_multiple, to_tensor


def test_default_model_is_shipped_and_codes_real_photos(photo, voc_photo):
    assert DEFAULT_MODEL in [m["name"] for m in installed_models()]
    model = load_model()
    assert model.name == DEFAULT_MODEL and model.card["loss"] == "edge"
    for img in (photo, voc_photo):
        data = encode(img, model)
        out = decode(data)  # the model is found from the name in the file
        assert out.shape == img.shape
        bpp = 8 * len(data) / (img.shape[0] * img.shape[1])
        assert 0.05 < bpp < 2.0
        x, _ = pad_to_multiple(to_tensor(img), model.downsampling)
        with torch.no_grad():
            lik = model.net(x)["likelihoods"]
        estimate = sum(float(-torch.log2(v).sum()) for v in lik.values())
        payload = 8 * (len(data) - unpack(data).header_bytes)
        assert abs(payload - estimate) / estimate < 0.02


def test_demo_writes_its_pictures(tmp_path, capsys):
    facts = run_demo(None, tmp_path)
    for name in ("original.png", "decoded.png", "detections.png", "astronaut.sic"):
        assert (tmp_path / name).is_file()
    assert facts["objects_original"] >= 1  # the astronaut
    assert facts["bpp"] == 8 * (tmp_path / "astronaut.sic").stat().st_size / (512 * 512)
    assert "detections" in capsys.readouterr().out
    assert np.isfinite(facts["psnr"])


def test_every_shipped_model_loads_with_a_complete_card():
    from saicm.codec.zoo import SHIPPED_DIR

    files = sorted(SHIPPED_DIR.glob("*.pt"))
    families = {f.stem.rsplit("-", 1)[0] for f in files}
    assert {"sa-icm-mbt-hed", "region-mbt", "mse-mbt"} <= families
    for f in files:
        model = load_model(f)
        card = model.card
        assert card["loss"] in ("edge", "region", "mse") and card["steps"] > 0
        assert {"data", "mask_source", "recipe", "val", "lmbda"} <= card.keys()
        assert 0 < card["val"]["bpp"] < 2 and 15 < card["val"]["psnr"] < 45
        assert f.stat().st_size < 8e6  # 8-bit coded weights
    for family in ("sa-icm-mbt-hed", "region-mbt", "mse-mbt"):
        rates = sorted(
            (load_model(f).card["lmbda"], load_model(f).card["val"]["bpp"])
            for f in files
            if f.stem.rsplit("-", 1)[0] == family
        )
        assert len(rates) >= 3
        assert [b for _, b in rates] == sorted(b for _, b in rates)  # lambda up, rate up

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

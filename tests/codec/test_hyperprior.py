"""The entropy-parameter interface (saicm.codec.entropy_params) and the architecture added
through it alone: CompressAI's bmshj2018-hyperprior (Balle et al.'s scale hyperprior)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from saicm.codec import create_model, decode, encode, export_model, list_architectures
from saicm.codec.entropy_params import EntropyParameters
from saicm.codec.hyperprior import Bmshj2018Hyperprior
from saicm.codec.latents import decode_latents, encode_latents

SMALL = {"N": 32, "M": 48}


@pytest.fixture(scope="module")
def bmshj(tmp_path_factory):
    """A small bmshj2018-hyperprior with random weights, exported as a saicm model file."""
    torch.manual_seed(0)
    net = create_model("bmshj2018-hyperprior", **SMALL)
    path = tmp_path_factory.mktemp("models") / "bmshj.pt"
    return export_model(path, net, name="bmshj", arch="bmshj2018-hyperprior", config=SMALL)


def test_every_architecture_implements_the_interface():
    assert "bmshj2018-hyperprior" in list_architectures()
    for name in list_architectures():
        small = {"tcm": {"N": 32, "M": 40, "Z": 32, "num_slices": 2}}.get(name, {})
        net = create_model(name, **small)
        assert isinstance(net, EntropyParameters), name
        assert all(k in net._modules for k in net.entropy_modules), name


def test_the_generic_coder_codes_the_scale_hyperprior_symbols_exactly(bmshj, photo):
    """Decoded y is round(y) of the encoder (zero means): the same symbols, through the checked
    path (float64 h_s, CRCs of tables, indexes and symbols)."""
    net = bmshj.net
    assert isinstance(net, Bmshj2018Hyperprior)
    x = torch.from_numpy(photo[:128, :192].copy()).permute(2, 0, 1)[None].float() / 255
    x = x.contiguous(memory_format=torch.channels_last)
    coded = encode_latents(net, x)
    y_hat = decode_latents(net, coded.strings, coded.latent_shape, coded.checks)
    with torch.inference_mode():
        y = net.g_a(x)
    assert torch.equal(y_hat, torch.round(y.double()).float())


def test_bmshj2018_round_trip_through_the_api(bmshj, photo):
    rgb = photo[50:150, 60:190]
    data = encode(rgb, bmshj)
    out = decode(data, bmshj)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.array_equal(decode(data, bmshj), out)  # deterministic
    err = np.abs(out.astype(float) - rgb).mean()
    assert np.isfinite(err)


def test_bmshj2018_trains_from_the_command_line(tmp_path, photo, capsys):
    from saicm.cli import main
    from saicm.codec import load_model

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i, (y, x) in enumerate([(0, 0), (200, 240)]):
        crop = photo[y : y + 96, x : x + 96]
        Image.fromarray(crop).save(images / f"p{i}.png")
        edges = np.zeros(crop.shape[:2], bool)
        edges[::8] = True
        Image.fromarray(edges).save(masks / f"p{i}.png")
    config = tmp_path / "c.yaml"
    config.write_text("arch_config: {N: 32, M: 48}\n")
    run = tmp_path / "run"
    argv = ["train", "--arch", "bmshj2018-hyperprior", "--config", str(config)]
    argv += ["--images", str(images), "--masks", str(masks), "--steps", "2", "--crop", "64"]
    argv += ["--batch-size", "2", "-o", str(run)]
    assert main(argv) == 0, capsys.readouterr().err
    assert "exported edge-bmshj2018-hyperprior-0.05" in capsys.readouterr().out
    model = load_model(run / "model.pt")
    assert model.arch == "bmshj2018-hyperprior"
    rgb = photo[:64, :64]
    assert decode(encode(rgb, model), model).shape == rgb.shape

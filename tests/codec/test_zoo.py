"""Model files: registry, export, hash check, installed-model lookup."""

from __future__ import annotations

import pytest
import torch

from saicm.codec import create_model, export_model, installed_models, list_models, load_model
from saicm.errors import ModelError


def test_registry_lists_the_architectures():
    assert {"tcm", "tcm-small", "mbt2018-mean"} <= set(list_models())
    assert list_models("tcm*") == ["tcm", "tcm-small"]
    with pytest.raises(ModelError, match="unknown architecture"):
        create_model("no-such-net")
    with pytest.raises(ModelError, match="unknown config keys"):
        create_model("tcm", width=3)


def test_half_precision_export_halves_the_file(tmp_path):
    torch.manual_seed(0)
    net = create_model("mbt2018-mean", N=32, M=48)
    cfg = {"N": 32, "M": 48}
    full = export_model(tmp_path / "full.pt", net, name="full", arch="mbt2018-mean", config=cfg)
    half = export_model(
        tmp_path / "half.pt", net, name="half", arch="mbt2018-mean", config=cfg, half=True
    )
    ratio = (tmp_path / "half.pt").stat().st_size / (tmp_path / "full.pt").stat().st_size
    assert 0.45 < ratio < 0.75  # CDF tables (int32) stay full size; they weigh a lot in a tiny net
    assert half.weights_hash != full.weights_hash
    assert load_model(tmp_path / "half.pt").weights_hash == half.weights_hash


def test_tampered_weights_fail_the_hash(tmp_path, tiny_model):
    blob = torch.load(tiny_model.path, weights_only=True)
    key = next(k for k in blob["state_dict"] if k.endswith("weight"))
    blob["state_dict"][key] = blob["state_dict"][key] + 1e-3
    path = tmp_path / "tampered.pt"
    torch.save(blob, path)
    with pytest.raises(ModelError, match="hash"):
        load_model(path)


def test_installed_models_are_found_by_name(tiny_model, monkeypatch):
    monkeypatch.setenv("SAICM_MODELS", str(tiny_model.path.parent))
    assert "tiny" in [m["name"] for m in installed_models()]
    assert load_model("tiny").weights_hash == tiny_model.weights_hash
    with pytest.raises(ModelError, match="no installed model named 'nope'"):
        load_model("nope")

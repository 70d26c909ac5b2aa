"""Model files: registry, export, hash check, installed-model lookup."""

from __future__ import annotations

import numpy as np
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


def test_storages_shrink_the_file_and_code_the_same_bits(tmp_path, photo):
    from saicm import decode, encode

    torch.manual_seed(0)
    net = create_model("mbt2018-mean", N=64, M=96)
    cfg = {"N": 64, "M": 96}
    sizes, models = {}, {}
    for storage in ("float32", "float16", "int8"):
        path = tmp_path / f"{storage}.pt"
        models[storage] = export_model(
            path, net, name=storage, arch="mbt2018-mean", config=cfg, storage=storage
        )
        sizes[storage] = path.stat().st_size
        again = load_model(path)  # a fresh load sees the weights the export coded with
        assert again.weights_hash == models[storage].weights_hash
        img = photo[:96, :128]
        assert np.array_equal(
            decode(encode(img, models[storage]), again), decode(encode(img, again), models[storage])
        )
    # CDF tables (int32) stay full size; they weigh a lot in a small net
    assert sizes["int8"] < sizes["float16"] < 0.7 * sizes["float32"]
    coded = torch.load(tmp_path / "int8.pt", weights_only=True)["coded"]
    assert len(coded) < 0.55 * 2 * sum(p.numel() for p in net.parameters())  # vs float16
    assert len({m.weights_hash for m in models.values()}) == 3
    with pytest.raises(ModelError, match="storage"):
        export_model(
            tmp_path / "x.pt", net, name="x", arch="mbt2018-mean", config=cfg, storage="int4"
        )


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

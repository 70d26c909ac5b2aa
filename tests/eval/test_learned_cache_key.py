"""The evaluation cache key of a learned codec covers how the model codes, not only its weights."""

from __future__ import annotations

import torch

from saicm.codec import create_model, export_model
from saicm.codec.registry import LIC_TCM_CODING, SAICM_CODING, Coding, Padding
from saicm.eval.codecs import LearnedCodec


def test_same_weights_other_coding_other_cache_key(tmp_path):
    torch.manual_seed(0)
    net = create_model("mbt2018-mean", N=32, M=48)
    keys, hashes = {}, {}
    codings = {
        "saicm": SAICM_CODING,
        "authors": LIC_TCM_CODING,
        "floor-only": Coding(Padding(), 128, "floor"),
    }
    for label, coding in codings.items():
        path = tmp_path / label / "m.pt"
        model = export_model(
            path, net, name="m", arch="mbt2018-mean", config={"N": 32, "M": 48}, coding=coding
        )
        keys[label] = LearnedCodec([str(path)]).cache_key(str(path))
        hashes[label] = model.weights_hash
    assert keys["saicm"] == f"m@{hashes['saicm'][:12]}"  # saicm's usual coding: key as before
    assert hashes["floor-only"] == hashes["saicm"]  # same weights and tables, other rounding
    assert len(set(keys.values())) == 3

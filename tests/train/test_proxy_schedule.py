"""Quantisation proxies (noise, ste, mixed) and LR schedules (step, cosine) of the trainer; an
old config (neither setting) trains exactly as before."""

from __future__ import annotations

import csv
import itertools
import math

import numpy as np
import pytest
import torch
import yaml

from saicm.codec import create_model
from saicm.errors import SaicmError
from saicm.train import TrainConfig, train
from saicm.train.proxy import check_quant, forward_with_proxy


@pytest.fixture(scope="module")
def net_and_batch(photo):
    torch.manual_seed(0)
    net = create_model("mbt2018-mean", N=32, M=48).train()
    x = torch.from_numpy(photo[:128, :128].copy()).permute(2, 0, 1)[None].float() / 255
    return net, torch.cat([x, x.flip(-1)])


def test_noise_is_the_networks_own_forward(net_and_batch):
    net, x = net_and_batch
    torch.manual_seed(5)
    a = net(x)
    torch.manual_seed(5)
    b = forward_with_proxy(net, x, "noise")
    assert torch.equal(a["x_hat"], b["x_hat"])
    assert all(torch.equal(a["likelihoods"][k], b["likelihoods"][k]) for k in ("y", "z"))


def test_ste_and_mixed_decode_what_the_coder_decodes(net_and_batch):
    """With straight-through rounding the decoder sees test-time values: x_hat equals the
    eval-mode forward's (rounding around the means and medians); ``ste`` also rates the rounded
    y as the eval forward does, while ``mixed`` rates noisy y (and both rate noisy z)."""
    net, x = net_and_batch
    net.eval()
    with torch.no_grad():
        ref = net(x)
    net.train()
    torch.manual_seed(1)
    ste = forward_with_proxy(net, x, "ste")
    torch.manual_seed(1)
    mixed = forward_with_proxy(net, x, "mixed")
    torch.manual_seed(1)
    noise = forward_with_proxy(net, x, "noise")
    for out in (ste, mixed):
        torch.testing.assert_close(out["x_hat"], ref["x_hat"], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(noise["x_hat"], ref["x_hat"], atol=1e-4)
    torch.testing.assert_close(ste["likelihoods"]["y"], ref["likelihoods"]["y"])
    assert not torch.allclose(mixed["likelihoods"]["y"], ref["likelihoods"]["y"], atol=1e-4)
    # the same noise for z in all three (drawn first, in the same order)
    assert torch.equal(ste["likelihoods"]["z"], noise["likelihoods"]["z"])
    assert torch.equal(mixed["likelihoods"]["z"], noise["likelihoods"]["z"])
    # straight-through: the analysis transform gets a gradient through x_hat
    mixed["x_hat"].sum().backward()
    assert net.g_a[0].weight.grad is not None and net.g_a[0].weight.grad.abs().sum() > 0
    assert net.entropy_bottleneck.quantiles.grad is None  # medians detached: aux loss only
    net.zero_grad(set_to_none=True)


def test_proxies_are_chosen_for_mbt2018_mean_only():
    assert check_quant("mbt2018-mean", None) == "noise"
    assert check_quant("mbt2018-mean", "ste") == "ste"
    assert check_quant("tcm", None) == "mixed" and check_quant("tcm", "mixed") == "mixed"
    assert check_quant("mbt2018-mean-vbr", None) == "mixed"
    with pytest.raises(SaicmError, match=r"quant noise: tcm's forward pass is the mixed proxy"):
        check_quant("tcm", "noise")
    with pytest.raises(SaicmError, match=r"quant ste: mbt2018-mean-vbr's forward pass is the"):
        check_quant("mbt2018-mean-vbr", "ste")
    vbr = create_model("mbt2018-mean-vbr", N=32, M=48)
    with pytest.raises(SaicmError, match="only"):
        forward_with_proxy(vbr, torch.zeros(1, 3, 64, 64), "ste")


def _cfg(corpus, **kw) -> TrainConfig:
    images, masks = corpus
    base = dict(
        images=str(images),
        masks=str(masks),
        loss="edge",
        lmbda=0.05,
        arch="mbt2018-mean",
        arch_config={"N": 32, "M": 48},
        steps=2,
        batch_size=2,
        crop=64,
        lr=1e-3,
        checkpoint_every=2,
        log_every=1,
    )
    return TrainConfig(**{**base, **kw})


def _weights(run) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def _rows(run) -> list[dict[str, str]]:
    with open(run / "train.csv") as f:
        return list(csv.DictReader(f))


def test_ste_and_mixed_train_differently_from_noise(tmp_path, corpus):
    runs = {}
    for quant in ("noise", "ste", "mixed"):
        model = train(_cfg(corpus, quant=quant), tmp_path / quant, progress=False)
        assert model.card["quant"] == quant
        runs[quant] = (_rows(tmp_path / quant), _weights(tmp_path / quant))
    for quant in ("ste", "mixed"):
        rows, weights = runs[quant]
        assert all(np.isfinite(float(r["loss"])) for r in rows)
        assert rows[0]["loss"] != runs["noise"][0][0]["loss"]  # step 1, same data and init
        assert not torch.equal(weights["g_a.0.weight"], runs["noise"][1]["g_a.0.weight"])
    assert runs["ste"][0][0]["bpp"] != runs["mixed"][0][0]["bpp"]  # rounded against noisy y


def test_an_old_config_trains_exactly_as_before(tmp_path, corpus):
    """A config written before ``quant`` and ``schedule`` existed runs the noise proxy and the
    step schedule: the same weights, bit for bit, as with both given explicitly."""
    from saicm.cli import main

    images, masks = corpus
    old = {
        "images": str(images),
        "masks": str(masks),
        "arch_config": {"N": 32, "M": 48},
        "crop": 64,
        "steps": 2,
        "batch_size": 2,
        "lr": 1e-3,
        "milestones": [0.5],
        "log_every": 1,
    }
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    assert main(["train", "--config", str(path), "-o", str(tmp_path / "old")]) == 0
    explicit = ["--quant", "noise", "--schedule", "step", "-o", str(tmp_path / "new")]
    assert main(["train", "--config", str(path), *explicit]) == 0
    a, b = _weights(tmp_path / "old"), _weights(tmp_path / "new")
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = yaml.safe_load((tmp_path / "old" / "config.yaml").read_text())
    assert (saved["quant"], saved["schedule"], saved["lmbda"]) == ("noise", "step", 0.05)
    assert [float(r["lr"]) for r in _rows(tmp_path / "old")] == [1e-3, 1e-4]


def test_cosine_schedule_values():
    cfg = TrainConfig(lr=1e-3, gamma=0.1, steps=10, schedule="cosine", milestones=[0.5])
    assert cfg.lr_floor() == pytest.approx(1e-5, rel=1e-12)
    want = {
        0: 1e-3,
        2: 1e-5 + 0.99e-3 * (1 + math.cos(math.pi / 5)) / 2,  # 9.054634e-4
        5: 5.05e-4,
        9: 1e-5 + 0.99e-3 * (1 + math.cos(0.9 * math.pi)) / 2,  # 3.4227e-5
        10: 1e-5,
    }
    for step, lr in want.items():
        assert cfg.lr_at(step) == pytest.approx(lr, rel=1e-12, abs=0), step
    assert cfg.lr_at(2) == pytest.approx(9.054634e-4, rel=1e-6)
    assert cfg.lr_at(9) == pytest.approx(3.42270e-5, rel=1e-5)
    # decreasing, and the milestones play no part
    lrs = [cfg.lr_at(s) for s in range(11)]
    assert all(a > b for a, b in itertools.pairwise(lrs))
    step = TrainConfig(lr=1e-3, gamma=0.1, steps=10, milestones=[0.5])
    assert [step.lr_at(s) for s in (4, 5)] == [1e-3, pytest.approx(1e-4)]


def test_warmup_ramps_either_schedule_then_leaves_it():
    step = TrainConfig(lr=1e-3, gamma=0.1, steps=10, milestones=[0.5], warmup=4)
    assert [step.lr_at(s) for s in range(6)] == [
        pytest.approx(v, rel=1e-12) for v in (2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-4)
    ]
    cos = TrainConfig(lr=1e-3, gamma=0.1, steps=10, schedule="cosine", warmup=2)
    plain = TrainConfig(lr=1e-3, gamma=0.1, steps=10, schedule="cosine")
    assert cos.lr_at(0) == pytest.approx(plain.lr_at(0) / 2, rel=1e-12)
    assert [cos.lr_at(s) for s in range(2, 11)] == [plain.lr_at(s) for s in range(2, 11)]
    assert TrainConfig(lr=1e-3, steps=10).lr_at(0) == 1e-3  # 0: no warm-up (runs before it)


def test_a_cosine_run_trains_at_lr_at_and_a_resume_recomputes_it(tmp_path, corpus, capsys):
    run = tmp_path / "run"
    cfg = _cfg(corpus, steps=4, schedule="cosine")
    train(cfg, run, progress=False)
    assert [float(r["lr"]) for r in _rows(run)] == pytest.approx(
        [cfg.lr_at(s) for s in range(4)], rel=1e-5
    )
    more = _cfg(corpus, steps=8, schedule="cosine")
    train(more, run, resume=True, progress=False)
    assert "cosine from lr 0.001 to 1e-05 at step 8" in capsys.readouterr().out
    lrs = [float(r["lr"]) for r in _rows(run)]
    assert lrs[4:] == pytest.approx([more.lr_at(s) for s in range(4, 8)], rel=1e-5)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert [(h["from_step"], h["to_step"], h["schedule"]) for h in saved["history"]] == [
        (0, 4, "cosine"),
        (4, 8, "cosine"),
    ]
    assert saved["history"][1]["lr_floor"] == pytest.approx(1e-5)


def test_quant_and_schedule_are_checked_in_one_line(tmp_path, corpus, capsys):
    from saicm.cli import main

    images, masks = corpus
    base = ["train", "--images", str(images), "--masks", str(masks), "--steps", "1"]
    assert main([*base, "--arch", "tcm", "--quant", "ste", "-o", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("saicm: error: quant ste: tcm's forward pass is the mixed proxy")
    assert err.count("\n") == 1
    with pytest.raises(SystemExit):
        main([*base, "--schedule", "linear", "-o", str(tmp_path / "b")])
    assert "choose from step, cosine" in capsys.readouterr().err
    with pytest.raises(SaicmError, match=r"quant 'round': choose from noise, ste, mixed"):
        _cfg(corpus, quant="round").validate()


def test_quant_is_fixed_for_a_resumed_run(tmp_path, corpus):
    run = tmp_path / "run"
    train(_cfg(corpus, quant="ste"), run, progress=False)
    with pytest.raises(SaicmError, match=r"--resume: quant was 'ste' in this run, now 'mixed'"):
        train(_cfg(corpus, quant="mixed", steps=4), run, resume=True, progress=False)


@pytest.mark.parametrize(("amp", "native", "warned"), [
    ("bf16", False, "no native bfloat16"), ("bf16", True, None), ("off", False, None),
    ("fp16", True, "meant for CUDA"),
])  # fmt: skip
def test_amp_that_slows_the_cpu_down_is_said(monkeypatch, amp, native, warned):
    import warnings

    from saicm.errors import SaicmWarning
    from saicm.train import amp as amp_module

    monkeypatch.setattr(amp_module, "native_bf16", lambda: native)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        amp_module.check_amp(amp, torch.device("cpu"))
        amp_module.check_amp(amp, torch.device("cuda"))  # never a word about a GPU's autocast
    said = [str(w.message) for w in seen if issubclass(w.category, SaicmWarning)]
    assert len(said) == (warned is not None), said
    assert warned is None or warned in said[0]


def test_native_bf16_reads_this_cpu():
    from pathlib import Path

    from saicm.train.amp import native_bf16

    info = Path("/proc/cpuinfo")
    flags = info.read_text() if info.exists() else ""

    if " avx512_bf16" in flags or " amx_bf16" in flags:
        assert native_bf16()
    elif flags and " avx512f" not in flags:  # an AVX2 machine: bf16 is emulated
        assert not native_bf16()

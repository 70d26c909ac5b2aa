"""Training a variable-rate model (mbt2018-mean-vbr): lambda drawn per step over a range, every
loss, the range recorded and coded at, resume, init from a fixed-rate model."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

import saicm
from saicm.codec import create_model, export_model, load_model
from saicm.errors import SaicmError
from saicm.train import TrainConfig, train
from saicm.train.loop import sample_lmbda

LO, HI = 0.002, 0.05
SMALL = {"N": 32, "M": 48, "levels": 4}
UNIT_01 = ("--unit-step-lmbda", "0.1")


def _cfg(corpus, **kw) -> TrainConfig:
    images, masks = corpus
    base = dict(
        images=str(images),
        masks=str(masks),
        loss="edge",
        lmbda_range=[LO, HI],
        arch="mbt2018-mean-vbr",
        arch_config=dict(SMALL),
        steps=3,
        batch_size=2,
        crop=64,
        lr=1e-3,
        milestones=[],
        checkpoint_every=2,
        log_every=1,
    )
    return TrainConfig(**{**base, **kw})


def _rows(path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _weights(run) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


@pytest.mark.parametrize("loss", ["mse", "region", "edge"])
def test_each_loss_trains_over_the_range_and_the_file_codes_at_both_ends(
    tmp_path, corpus, photo, loss
):
    run = tmp_path / "run"
    model = train(_cfg(corpus, loss=loss), run, progress=False)
    rows = _rows(run / "train.csv")
    lmbdas = [float(r["lmbda"]) for r in rows]
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(LO <= v < HI for v in lmbdas) and len(set(lmbdas)) == 3
    assert lmbdas == pytest.approx([sample_lmbda(0, s, LO, HI) for s in range(3)], rel=1e-5)
    # a one-step window: the row's means are the step's own values
    assert all(r["bpp"] == r["step_bpp"] and r["mse"] == r["step_mse"] for r in rows)
    for r in rows:  # the loss of each row is that of its own lambda
        want = float(r["bpp"]) + float(r["lmbda"]) * 255**2 * float(r["mse"])
        assert float(r["loss"]) == pytest.approx(want, rel=1e-4)
    assert model.name == f"{loss}-mbt2018-mean-vbr-0.002-0.05"
    assert model.card["lmbda_range"] == [LO, HI] and "lmbda" not in model.card
    assert model.card["quant"] == "mixed"
    loaded = load_model(model.path)
    assert loaded.net.rate_range == pytest.approx((LO, HI), rel=1e-6)
    img = photo[:128, :192]
    for lm in (LO, HI):
        data = saicm.encode(img, loaded, lmbda=lm)
        out = saicm.decode(data, loaded)
        assert out.shape == img.shape and out.dtype == np.uint8
    with pytest.raises(SaicmError, match="outside"):
        saicm.encode(img, loaded, lmbda=HI * 2)


def test_validation_runs_at_both_ends_and_the_middle(tmp_path, corpus):
    images, masks = corpus
    run = tmp_path / "run"
    cfg = _cfg(corpus, steps=2, val_images=str(images), val_masks=str(masks), val_every=2)
    train(cfg, run, progress=False)
    (row,) = _rows(run / "val.csv")
    mid = math.sqrt(LO * HI)
    assert f"{mid:g}" == "0.01"
    assert list(row) == ["step"] + [
        f"{k}@{lm:g}" for lm in (LO, mid, HI) for k in ("bpp", "psnr", "psnr_mask")
    ]
    assert all(float(v) > 0 for v in row.values())


def test_a_resumed_run_draws_the_lambdas_of_an_uninterrupted_one(tmp_path, corpus):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(_cfg(corpus, steps=5), straight, progress=False)
    train(_cfg(corpus, steps=2), resumed, progress=False)  # "killed" after step 2
    train(_cfg(corpus, steps=5), resumed, resume=True, progress=False)
    a, b = _rows(straight / "train.csv"), _rows(resumed / "train.csv")
    assert [r["lmbda"] for r in a] == [r["lmbda"] for r in b]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    wa, wb = _weights(straight), _weights(resumed)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # the lambda of a step is a function of (seed, step) alone
    assert sample_lmbda(0, 3, LO, HI) == sample_lmbda(0, 3, LO, HI) != sample_lmbda(1, 3, LO, HI)


def test_sampled_lambdas_are_log_uniform_over_the_range():
    draws = np.log([sample_lmbda(7, s, LO, HI) for s in range(4000)])
    u = (draws - math.log(LO)) / (math.log(HI) - math.log(LO))
    assert u.min() >= 0 and u.max() < 1
    # each quarter of the log-range gets a quarter of the draws (+-3 sigma of 4000 draws)
    counts = np.histogram(u, bins=4, range=(0, 1))[0]
    assert np.all(np.abs(counts - 1000) < 3 * math.sqrt(4000 * 0.25 * 0.75))


def test_resume_with_another_lambda_range_is_refused(tmp_path, corpus):
    run = tmp_path / "run"
    train(_cfg(corpus, steps=2), run, progress=False)
    with pytest.raises(SaicmError, match=r"--resume: lmbda_range was \[0.002, 0.05\] in this run"):
        train(_cfg(corpus, steps=4, lmbda_range=[LO, 0.1]), run, resume=True, progress=False)


def test_rate_settings_that_do_not_fit_the_architecture_are_refused_in_one_line(
    tmp_path, corpus, capsys
):
    from saicm.cli import main

    images, masks = corpus
    base = ["train", "--images", str(images), "--masks", str(masks), "--steps", "1"]
    cases = [
        (
            ["--lmbda-range", "0.002", "0.05"],
            "lmbda_range 0.002 0.05: only for a variable-rate architecture (mbt2018-mean-vbr), "
            "not mbt2018-mean; give --lmbda",
        ),
        (["--arch", "mbt2018-mean-vbr"], "arch mbt2018-mean-vbr is variable-rate: give"),
        (
            ["--arch", "mbt2018-mean-vbr", "--lmbda-range", "0.002", "0.05", "--lmbda", "0.01"],
            "lmbda 0.01: a variable-rate run (mbt2018-mean-vbr) trains at a lambda drawn",
        ),
        (
            ["--arch", "mbt2018-mean-vbr", "--lmbda-range", "0.05", "0.002"],
            "lmbda_range 0.05 0.002: expected LO < HI",
        ),
        (
            ["--arch", "mbt2018-mean-vbr", "--lmbda-range", "0.002", "0.05", *UNIT_01],
            "unit_step_lmbda 0.1: not within lmbda_range 0.002 0.05",
        ),
        (
            ["--lmbda", "0.01", "--unit-step-lmbda", "0.01"],
            "unit_step_lmbda 0.01: only for a variable-rate architecture (mbt2018-mean-vbr)",
        ),
    ]
    for i, (extra, message) in enumerate(cases):
        run = tmp_path / f"run{i}"
        assert main([*base, *extra, "-o", str(run)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"saicm: error: {message}") and err.count("\n") == 1, err
        assert not run.exists()
    with pytest.raises(SystemExit):  # argparse: a range is two positive numbers
        main([*base, "--arch", "mbt2018-mean-vbr", "--lmbda-range", "0.002", "-o", "x"])
    assert "expected 2 arguments" in capsys.readouterr().err


def _fixed_model(tmp_path, M=48):
    torch.manual_seed(3)
    net = create_model("mbt2018-mean", N=32, M=M)
    return export_model(
        tmp_path / f"fixed-{M}.pt", net, name="fixed", arch="mbt2018-mean", config={"N": 32, "M": M}
    )


def test_init_from_a_fixed_rate_model_loads_every_shared_tensor(tmp_path, corpus, capsys):
    fixed = _fixed_model(tmp_path)
    run = tmp_path / "run"
    # lr 0: the weights after a step are those it started from
    train(_cfg(corpus, steps=1, init=str(fixed.path), lr=0.0, aux_lr=0.0), run, progress=False)
    out = capsys.readouterr().out
    theirs = dict(fixed.net.named_parameters())
    n = len(theirs)
    assert f"--init {fixed.path}: loaded {n} of its {n} parameter tensors" in out
    assert "kept fresh: Gain, QuantABCD.0.bias, QuantABCD.0.weight" in out
    got = _weights(run)
    assert all(torch.equal(got[k], theirs[k].float()) for k in theirs)
    # the variable-rate parts are the run's own: anchors over its range, fresh offsets
    assert got["lmbda_levels"].tolist() == pytest.approx(
        np.geomspace(LO, HI, SMALL["levels"]).tolist(), rel=1e-6
    )
    assert got["Gain"].tolist() == pytest.approx(np.sqrt(got["lmbda_levels"] / HI).tolist())
    assert "note: the start codes as it was trained only at the top lambda 0.05" in out
    other = _fixed_model(tmp_path, M=64)
    with pytest.raises(SaicmError, match=r"--init .*fixed-64.pt: a 'mbt2018-mean' model .* of its"):
        train(_cfg(corpus, steps=1, init=str(other.path)), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_unit_step_lambda_keeps_a_fixed_rate_start_at_its_own_lambda(
    tmp_path, corpus, photo, capsys
):
    """``--unit-step-lmbda L``: gains sqrt(lambda / L), so that before any step the network codes
    L as the fixed-rate model it started from (finer steps above L, coarser below); the setting
    is in the card, the gains in the weights, and a resume keeps them."""
    fixed = _fixed_model(tmp_path)
    unit = 0.01
    run = tmp_path / "run"
    cfg = _cfg(corpus, steps=1, init=str(fixed.path), lr=0.0, aux_lr=0.0, unit_step_lmbda=unit)
    model = train(cfg, run, progress=False)
    assert "note: the start codes" not in capsys.readouterr().out
    got = _weights(run)
    levels = got["lmbda_levels"].double()
    assert got["Gain"].tolist() == pytest.approx(torch.sqrt(levels / unit).tolist(), rel=1e-6)
    assert float(got["Gain"][-1]) == pytest.approx(math.sqrt(HI / unit), rel=1e-6)
    assert model.card["unit_step_lmbda"] == unit
    net = load_model(model.path).net
    assert net.gain_for(unit) == pytest.approx(1.0, rel=1e-6)
    # gain 1 at `unit`: the reconstruction of the fixed-rate model it started from
    x = torch.from_numpy(photo[:64, :64]).permute(2, 0, 1)[None].float() / 255
    start = load_model(fixed.path).net.eval()
    with torch.no_grad():
        med = start.entropy_bottleneck._get_medians()
        y = start.g_a(x)
        mu = start.h_s(torch.round(start.h_a(y) - med) + med).chunk(2, 1)[1]
        theirs = start.g_s(torch.round(y - mu) + mu)
        wide = create_model("mbt2018-mean-vbr", **SMALL)
        wide.load_state_dict(got)
        ours = wide.eval()(x, lmbda=unit)["x_hat"]
    assert float((ours - theirs).abs().max()) < 1e-4
    # resumed with more steps: the gains come back from the checkpoint, not from a default
    train(
        _cfg(corpus, steps=2, init=str(fixed.path), lr=0.0, aux_lr=0.0, unit_step_lmbda=unit),
        run,
        resume=True,
        progress=False,
    )
    assert torch.equal(_weights(run)["Gain"], got["Gain"])
    with pytest.raises(SaicmError, match="unit_step_lmbda"):
        train(
            _cfg(corpus, steps=3, init=str(fixed.path), unit_step_lmbda=0.02),
            run,
            resume=True,
            progress=False,
        )


def test_a_variable_rate_start_keeps_its_unit_step_lambda(tmp_path, corpus, capsys):
    """``--init`` from a variable-rate model (the shared base of a study, a snapshot to continue
    from): without ``--unit-step-lmbda`` the run keeps the start's gains where the ranges agree,
    so the start codes as it did; outside the run's range the gains move, and it says so."""
    fixed = _fixed_model(tmp_path)
    base = tmp_path / "base"
    cfg = _cfg(corpus, steps=1, init=str(fixed.path), lr=0.0, aux_lr=0.0, unit_step_lmbda=0.01)
    start = train(cfg, base, progress=False)
    capsys.readouterr()
    run = tmp_path / "run"
    model = train(_cfg(corpus, steps=1, init=str(start.path), lr=0.0), run, progress=False)
    assert "codes lambda 0.01 with step 1; the run keeps that" in capsys.readouterr().out
    assert torch.equal(_weights(run)["Gain"], _weights(base)["Gain"])
    assert model.card["unit_step_lmbda"] == 0.01
    # a range that leaves out 0.01: gains from the run's range (step 1 at its top), said
    other = tmp_path / "other"
    train(
        _cfg(corpus, steps=1, init=str(start.path), lmbda_range=[0.02, 0.05]), other, progress=False
    )
    said = capsys.readouterr().out
    assert "step 1 at lambda 0.01, outside the run's range 0.02..0.05: its gains change" in said
    assert float(_weights(other)["Gain"][-1]) == pytest.approx(1.0)


def test_two_process_ddp_of_a_variable_rate_run_agrees_with_one_process(tmp_path, corpus, torchrun):
    """Every rank draws the step's lambda; the fixed gains take no part in the gradient sync."""
    import yaml

    from saicm.cli import main

    images, masks = corpus
    config = tmp_path / "vbr.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "images": str(images),
                "masks": str(masks),
                "arch": "mbt2018-mean-vbr",
                "arch_config": SMALL,
                "lmbda_range": [LO, HI],
                "crop": 64,
                "steps": 2,
                "batch_size": 4,
                "lr": 1e-3,
                "milestones": [],
                "log_every": 1,
            }
        )
    )
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    torchrun("saicm.train", "--config", str(config), "-o", str(ddp))
    assert main(["train", "--config", str(config), "--accumulate", "2", "-o", str(single)]) == 0
    a, b = _weights(ddp), _weights(single)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)
    assert [r["lmbda"] for r in _rows(ddp / "train.csv")] == [
        r["lmbda"] for r in _rows(single / "train.csv")
    ]

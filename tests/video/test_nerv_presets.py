"""NeRV presets are the official NeRV-S/M/L; every config field is bounded; NeRV's recipe."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from saicm.errors import SaicmError
from saicm.video.loss import VideoLoss, ssim
from saicm.video.nerv import SIZES, NeRV, NeRVConfig, nerv_config, parameter_count
from saicm.video.train import VideoTrainConfig, _lr


def _meta_count(config: NeRVConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in NeRV(config).parameters())


@pytest.mark.parametrize(
    ("size", "count", "widths"),
    [
        # haochen-rye/NeRV's Generator built with the README's settings (fc_hw_dim 9_16_26,
        # 9_16_58, 9_16_112; stem 512_1; lower width 96; swish; single_res; embed 1.25_40)
        ("S", 3_201_905, [26, 96, 96, 96, 96]),
        ("M", 6_282_001, [58, 96, 96, 96, 96]),
        ("L", 12_524_563, [112, 96, 96, 96, 96]),
        # saicm's earlier presets (the result tables of docs/VIDEO.md)
        ("saicm-S", 1_231_307, [96, 48, 24, 24, 24]),
        ("saicm-M", 2_920_931, [160, 80, 40, 32, 32]),
        ("saicm-L", 5_966_483, [256, 128, 64, 48, 48]),
    ],
)
def test_presets_at_720p_have_the_official_parameter_counts(size, count, widths):
    config = nerv_config(720, 1280, size)
    assert config.strides == (5, 2, 2, 2, 2)
    assert config.widths() == widths
    assert _meta_count(config) == count == parameter_count(config)


def test_official_presets_are_nerv_s_m_l_layer_by_layer():
    with torch.device("meta"):
        net = NeRV(nerv_config(720, 1280, "S"))
    assert net.map_size == (9, 16) and net.config.stem_channels == 26
    assert isinstance(net.stem[1], torch.nn.SiLU) and isinstance(net.blocks[0].act, torch.nn.SiLU)
    assert net.head.kernel_size == (1, 1)
    assert net.stem[0].in_features == 80  # 40 levels of sin and cos
    old = NeRV(nerv_config(240, 416, "saicm-S"))
    assert isinstance(old.blocks[0].act, torch.nn.GELU) and old.head.kernel_size == (3, 3)


def test_positional_encoding_interleaves_sin_and_cos():
    net = NeRV(nerv_config(64, 64, "S"))
    t = torch.tensor([0.0, 0.3, 0.75])
    got = net.pe(t)
    want = []
    for i in range(40):
        x = t.double() * 1.25**i * math.pi
        want += [torch.sin(x), torch.cos(x)]
    want = torch.stack(want, 1).float()
    assert got.shape == (3, 80)
    # float32 phases: exact to 1e-5 on the low levels, within 1e-2 at 1.25^39 * pi ~ 1.9e4 rad
    assert torch.allclose(got[:, :40], want[:, :40], atol=1e-5)
    assert torch.allclose(got, want, atol=1e-2)
    old = NeRV(nerv_config(64, 64, "saicm-S")).pe(t)
    assert torch.allclose(old[:, :20], want[:, 0:40:2], atol=1e-5)  # saicm-S: sines first


def test_warm_up_starts_at_a_tenth_of_the_learning_rate():
    cfg = VideoTrainConfig(video="x", epochs=100, lr=1e-3, warmup=0.2)
    assert _lr(cfg, 0) == pytest.approx(1e-4)  # NeRV's adjust_lr: 0.1 + 0.9 * epoch / warmup
    assert _lr(cfg, 10) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert _lr(cfg, 20) == pytest.approx(1e-3)
    assert _lr(cfg, 60) == pytest.approx(0.5e-3)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("height", 6250),
        ("width", 0),
        ("channels", 10**6),
        ("stem_dim", 10**6),
        ("stem_channels", -1),
        ("min_channels", 2000),
        ("pe_levels", 10**4),
        ("pe_base", float("nan")),
        ("pe_base", 1e9),
        ("activation", "os.system"),
        ("head_kernel", 2),
        ("pe_layout", "x"),
        ("pe_order", "pi_last"),
        ("strides", (5, 2, 2, 2, 2, 1, 1, 1, 1)),
        ("strides", (0, 2)),
        ("height", True),
        ("height", 720.0),
    ],
)
def test_every_config_field_is_bounded_before_anything_is_built(field, value):
    config = dataclasses.replace(nerv_config(720, 1280, "S"), **{field: value})
    with pytest.raises(SaicmError, match=r"NeRV|strides"):
        config.validate()
    with pytest.raises(SaicmError):
        NeRV(config)


def test_the_whole_network_and_one_frame_are_bounded():
    big = NeRVConfig(2160, 3840, (5, 3, 2, 2, 2, 2), stem_dim=8192, stem_channels=1024)
    with pytest.raises(SaicmError, match="parameters"):
        big.validate()
    wide = NeRVConfig(2160, 3840, (5, 3, 2, 2, 2, 2), channels=1024, min_channels=1024)
    with pytest.raises(SaicmError, match=r"parameters|float values per frame"):
        wide.validate()
    for size in SIZES:  # every preset fits at 1080p
        nerv_config(1080, 1920, size)


def test_ssim_is_pytorch_msssim_and_behaves():
    import pytorch_msssim

    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 48)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    assert ssim(x, y).item() == pytest.approx(pytorch_msssim.ssim(x, y, data_range=1).item())
    per = ssim(x, y, per_image=True)
    assert per.shape == (2,) and (per < 0.99).all()
    worse = ssim(x, (x + 0.3 * torch.randn_like(x)).clamp(0, 1))
    assert worse < ssim(x, y)
    out = VideoLoss("nerv")(y, x)
    assert out["loss"].item() == pytest.approx(
        0.7 * (y - x).abs().mean().item() + 0.3 * (1 - ssim(y, x).item()), rel=1e-6
    )


def test_positional_encoding_multiplies_in_the_official_order():
    """``(t * b^i) * pi`` in float32, as haochen-rye/NeRV's ``pos * self.lbase ** (i) *
    math.pi``, bit for bit; the order of saicm's earlier files, ``t * (pi * b^i)``, stays
    available for them and is a few float32 steps away at the top levels."""
    from saicm.video.nerv import PositionalEncoding

    t = torch.arange(600).float() / 600
    official = torch.stack(
        [f(t * 1.25**i * math.pi) for i in range(40) for f in (torch.sin, torch.cos)], 1
    )
    assert torch.equal(PositionalEncoding(40, 1.25, "interleave", "official")(t), official)
    earlier = t[:, None] * (math.pi * 1.25 ** torch.arange(40).float())  # saicm's earlier code
    old = PositionalEncoding(40, 1.25, "concat", "pi_first")(t)
    assert torch.equal(old, torch.cat([torch.sin(earlier), torch.cos(earlier)], 1))
    apart = (PositionalEncoding(40, 1.25, "interleave", "pi_first")(t) - official).abs().max()
    assert 1e-4 < float(apart) < 3e-3  # 2.0e-3: why a file must say which order it learnt
    assert all(nerv_config(64, 96, size).pe_order == "official" for size in SIZES)

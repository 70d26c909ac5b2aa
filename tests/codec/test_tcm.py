"""LIC-TCM: the paper's size, attention against a naive reference, coding round trips."""

from __future__ import annotations

import pytest
import torch

from saicm.codec import create_model, load_model
from saicm.codec.layers import WindowAttention


@pytest.fixture(scope="module")
def tcm_net():
    """The full LIC-TCM with random weights, built once for this module (77 M parameters)."""
    torch.manual_seed(0)
    return create_model("tcm")


def test_tcm_has_the_papers_parameter_count(tcm_net):
    # The authors' LIC-TCM (N=128, M=320) has 76.57 M parameters; ours matches to the unit.
    assert sum(p.numel() for p in tcm_net.parameters()) == 76_568_148


@pytest.mark.parametrize("arch", ["tcm-small", "mbt2018-mean"])
def test_parameter_counts_that_saicm_models_prints_are_true(arch):
    import re

    from saicm.codec import get_architecture

    stated = re.search(r"(\d+\.(\d+)) M parameters", get_architecture(arch).description)
    count = sum(p.numel() for p in create_model(arch).parameters())
    assert round(count / 1e6, len(stated[2])) == float(stated[1])


def test_official_tcm_checkpoint_is_imported_as_the_authors_code_runs_it(tmp_path, tcm_net):
    """An SA-ICM v2 file in LIC-TCM's training layout (no CDF tables): detected as tcm from its
    tensors, CompressAI's default 64-scale table as the authors' ``update()`` builds it, their
    padding (128, centred, zeros) and truncation."""
    from compressai.models.base import get_scale_table

    from saicm.codec.registry import LIC_TCM_CODING
    from saicm.codec.zoo import import_checkpoint

    path = tmp_path / "sa-icm_0.05.pth.tar"
    state = {f"module.{k}": v for k, v in tcm_net.state_dict().items()}
    torch.save({"epoch": 49, "state_dict": state, "loss": torch.tensor(0.5)}, path)
    model = import_checkpoint(path, folder=tmp_path / "models")
    assert (model.name, model.arch) == ("sa-icm-tcm-0.05", "tcm")
    assert model.card["lmbda"] == 0.05 and "SA-ICM-v2" in model.card["source"]
    assert model.coding == LIC_TCM_CODING and model.scale_levels == 64
    torch.testing.assert_close(
        model.net.gaussian_conditional.scale_table, get_scale_table(), rtol=0, atol=0
    )
    assert sum(p.numel() for p in model.net.parameters()) == 76_568_148


def _naive_window_attention(attn: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Window attention written out window by window, with the Swin shift mask built from
    region labels (the textbook construction), as an independent reference."""
    b, h, w, c = x.shape
    p, heads, d = attn.window, attn.n_heads, attn.head_dim
    pad_h, pad_w = (-h) % p, (-w) % p
    x = torch.nn.functional.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = x.shape[1:3]
    shift = p // 2 if attn.shifted else 0
    x = torch.roll(x, (-shift, -shift), (1, 2))
    region = torch.zeros(hp, wp, dtype=torch.long)
    if shift:
        for i, hs in enumerate(
            (slice(0, hp - p), slice(hp - p, hp - shift), slice(hp - shift, hp))
        ):
            for j, ws in enumerate(
                (slice(0, wp - p), slice(wp - p, wp - shift), slice(wp - shift, wp))
            ):
                region[hs, ws] = 3 * i + j
    table = attn.relative_position_params
    out = torch.zeros_like(x)
    for wi in range(hp // p):
        for wj in range(wp // p):
            win = x[:, wi * p : (wi + 1) * p, wj * p : (wj + 1) * p].reshape(b, p * p, c)
            reg = region[wi * p : (wi + 1) * p, wj * p : (wj + 1) * p].reshape(-1)
            qkv = attn.embedding_layer(win).reshape(b, p * p, 3, heads, d)
            res = []
            for hd in range(heads):
                q, k, v = qkv[:, :, 0, hd], qkv[:, :, 1, hd], qkv[:, :, 2, hd]
                sim = q @ k.transpose(1, 2) / d**0.5
                for m in range(p * p):
                    for n in range(p * p):
                        di, dj = m // p - n // p + p - 1, m % p - n % p + p - 1
                        sim[:, m, n] += table[hd, di, dj]
                sim = sim.masked_fill((reg[:, None] != reg[None, :])[None], float("-inf"))
                res.append(sim.softmax(-1) @ v)
            o = attn.linear(torch.cat(res, dim=-1)).reshape(b, p, p, c)
            out[:, wi * p : (wi + 1) * p, wj * p : (wj + 1) * p] = o
    out = torch.roll(out, (shift, shift), (1, 2))
    return out[:, :h, :w]


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("size", [(8, 8), (12, 16), (5, 9)])
def test_window_attention_matches_naive_reference(shifted, size):
    torch.manual_seed(0)
    attn = WindowAttention(dim=16, head_dim=8, window=4, shifted=shifted)
    with torch.no_grad():
        attn.relative_position_params.normal_()
        x = torch.randn(2, *size, 16)
        expected = _naive_window_attention(attn, x)
        got = attn(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_tcm_small_codes_and_decodes_what_forward_predicts():
    torch.manual_seed(0)
    net = create_model("tcm-small").eval()
    net.update(force=True)
    x = torch.rand(1, 3, 128, 192)
    with torch.no_grad():
        expected = net(x)["x_hat"].clamp(0, 1)
        out = net.compress(x)
        got = net.decompress(out["strings"], out["shape"], out["checks"])["x_hat"]
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=0)


def test_official_style_checkpoint_loads(tmp_path):
    """The LIC-TCM / SA-ICM authors publish bare state dicts, often saved from DataParallel."""
    torch.manual_seed(0)
    net = create_model("tcm-small")
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    path = tmp_path / "sa_icm_like.pth.tar"
    torch.save({"state_dict": state, "epoch": 49}, path)
    model = load_model(path)  # the architecture is found from the tensors
    assert model.arch == "tcm-small" and model.name == "sa_icm_like"
    assert model.padding.multiple == 128 and model.rounding == "floor"
    for k, v in net.state_dict().items():
        if "cdf" not in k and "offset" not in k and "scale_table" not in k:
            torch.testing.assert_close(model.net.state_dict()[k], v)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "mbt.pth"
    torch.save(create_model("mbt2018-mean", N=32, M=48).state_dict(), path)
    from saicm.errors import ModelError

    with pytest.raises(ModelError, match="not a 'tcm-small' checkpoint"):
        load_model(path, arch="tcm-small")

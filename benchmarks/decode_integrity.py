"""How far two decoders disagree on the entropy parameters, float64 against float32 (issue 17).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/decode_integrity.py [MODEL | --tcm]

Prints, per photo, the largest relative difference of the Gaussian scales and the number of
table indexes that differ under each perturbation of the decoder's arithmetic, and how many
scales lie within a relative margin of a table boundary (what ``saicm.codec.latents.MARGIN``
signals). ``--tcm``: the same per slice of a tcm-small with random weights whose scales spread
over the whole table (as in tests/codec/test_latents.py), each decoder running its own slice
chain (its own LRP outputs feed its next slice): does the difference grow across slices?
Results: docs/BENCHMARKS.md.
"""

from __future__ import annotations

import copy
import sys

import torch
from skimage import data

from saicm.codec import latents
from saicm.codec.zoo import load_model
from saicm.image import pad_to_multiple, to_tensor


def _scales(p, z_hat, dtype, channels_last=False):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return p(z_hat.to(dtype).contiguous(memory_format=fmt)).chunk(2, 1)[0].double()


def tcm_slices() -> None:
    import numpy as np

    from saicm.codec import create_model

    torch.manual_seed(3)
    net = create_model("tcm-small").eval()
    with torch.no_grad():
        for head in net.cc_scale_transforms:
            last = head[-1]
            last.weight.mul_(20.0)
            last.bias.copy_(torch.logspace(np.log10(0.05), np.log10(300.0), last.bias.numel()))
    from compressai.models.base import get_scale_table

    from saicm.codec.zoo import SCALE_LEVELS

    net.update(scale_table=get_scale_table(levels=SCALE_LEVELS), force=True)
    table = net.gaussian_conditional.scale_table
    p64 = latents._param_net(net)
    variants = {
        "f64 channels_last": copy.deepcopy(p64).to(memory_format=torch.channels_last),
        "f32": copy.deepcopy(p64).float(),
    }
    img = data.astronaut()[:256, :256]
    x = to_tensor(img)
    with torch.inference_mode():
        y = net.g_a(x)
        z = net.h_a(y)
        med = latents._medians(net)
        z_hat = torch.round(z - med) + med
        chains = {"ref": p64, **variants}
        state = {}
        for k, p in chains.items():
            dt = torch.float32 if k == "f32" else torch.float64
            state[k] = (p.h_mean_s(z_hat.to(dt)), p.h_scale_s(z_hat.to(dt)), [], dt)
        q_ref = []
        for i, y_slice in enumerate(y.chunk(net.num_slices, 1)):
            scales = {}
            for k, p in chains.items():
                means0, scales0, done, dt = state[k]
                mu, scale, support = p._slice_params(i, done, means0, scales0, y.shape[2:])
                if k == "ref":
                    q_ref.append(torch.round(y_slice.double() - mu))
                q = q_ref[i].to(dt)  # the symbols every decoder gets from the stream
                done.append(p._refine(i, support, q + mu))
                scales[k] = scale.double()
            ref = scales["ref"]
            idx_ref, near = latents.scale_indexes(ref, table)
            hist = np.histogram(idx_ref, bins=4, range=(0, len(table)))[0].tolist()
            for k in variants:
                rel = ((scales[k] - ref).abs() / ref.abs().clamp(min=0.11)).max().item()
                idx, _ = latents.scale_indexes(scales[k], table)
                print(
                    f"slice {i} {k:18s} max rel diff {rel:.2e}  index mismatches "
                    f"{(idx != idx_ref).sum()} of {idx.size}  (indexes per quarter {hist}, "
                    f"within MARGIN {near.sum()})"
                )


def main() -> None:
    if "--tcm" in sys.argv:
        tcm_slices()
        return
    m = load_model(sys.argv[1] if len(sys.argv) > 1 else None)
    net = m.net
    table = net.gaussian_conditional.scale_table
    p64 = latents._param_net(net)
    p64_cl = copy.deepcopy(p64).to(memory_format=torch.channels_last)
    p32 = copy.deepcopy(p64).float()
    p32_cl = copy.deepcopy(p32).to(memory_format=torch.channels_last)
    photos = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea()}
    for name, img in photos.items():
        x, _ = pad_to_multiple(to_tensor(img), 64)
        with torch.inference_mode():
            z = net.h_a(net.g_a(x.contiguous(memory_format=torch.channels_last)))
            med = latents._medians(net)
            z_hat = torch.round(z - med) + med
            ref = _scales(p64, z_hat, torch.float64)
            runs = {"f64 channels_last": _scales(p64_cl, z_hat, torch.float64, True)}
            torch.set_num_threads(2)
            runs["f64 2 threads"] = _scales(p64, z_hat, torch.float64)
            torch.set_num_threads(1)
            with torch.backends.mkldnn.flags(enabled=False):
                runs["f64 mkldnn off"] = _scales(p64, z_hat, torch.float64)
            runs["f32 contiguous"] = _scales(p32, z_hat, torch.float32)
            runs["f32 channels_last"] = _scales(p32_cl, z_hat, torch.float32, True)
        idx_ref, _ = latents.scale_indexes(ref, table)
        for k, v in runs.items():
            rel = ((v - ref).abs() / ref.abs().clamp(min=0.11)).max().item()
            idx, _ = latents.scale_indexes(v, table)
            print(
                f"{name:10s} {k:18s} max rel diff {rel:.2e}  "
                f"index mismatches {(idx != idx_ref).sum()} of {idx.size}"
            )
        s, b = ref.reshape(-1), table.double()[:-1]
        i = torch.searchsorted(b, s)
        lo, hi = b[(i - 1).clamp(min=0)], b[i.clamp(max=len(b) - 1)]
        d = torch.minimum((s - lo).abs() / lo, (hi - s).abs() / hi)
        for margin in (1e-12, 1e-9, 1e-6, 1e-4):
            near = (d <= margin).sum().item()
            print(f"{name:10s} scales within {margin:g} of a boundary: {near}")


if __name__ == "__main__":
    main()

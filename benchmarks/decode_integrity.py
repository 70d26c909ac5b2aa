"""How far two decoders disagree on the entropy parameters, float64 against float32 (issue 17).

Run: PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/decode_integrity.py [MODEL]
Prints, per photo, the largest relative difference of the Gaussian scales and the number of
table indexes that differ under each perturbation, and how many scales lie within a relative
margin of a table boundary (what saicm.codec.latents.MARGIN signals). Results: docs/BENCHMARKS.md.
"""
import sys, time, numpy as np, torch, copy
from skimage import data
from saicm.codec.zoo import load_model
from saicm.codec import latents
from saicm.image import pad_to_multiple, to_tensor
m = load_model(sys.argv[1] if len(sys.argv) > 1 else None)
net = m.net
imgs = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea()}
p64 = latents._param_net(net)
table = net.gaussian_conditional.scale_table.double()
def scales(p, zh, dtype):
    return p(zh.to(dtype)).chunk(2, 1)[0].double()
for name, img in imgs.items():
    x, _ = pad_to_multiple(to_tensor(img), 64)
    with torch.inference_mode():
        y = net.g_a(x.contiguous(memory_format=torch.channels_last)); z = net.h_a(y)
        med = latents._medians(net); zh = torch.round(z - med) + med
        ref = scales(p64, zh, torch.float64)
        out = {}
        out["f64 channels_last"] = scales(copy.deepcopy(p64).to(memory_format=torch.channels_last), zh.contiguous(memory_format=torch.channels_last), torch.float64)
        torch.set_num_threads(2); out["f64 2 threads"] = scales(p64, zh, torch.float64); torch.set_num_threads(1)
        with torch.backends.mkldnn.flags(enabled=False): out["f64 mkldnn off"] = scales(p64, zh, torch.float64)
        p32 = copy.deepcopy(p64).float()
        out["f32 contiguous"] = scales(p32, zh, torch.float32)
        out["f32 channels_last"] = scales(p32.to(memory_format=torch.channels_last), zh.contiguous(memory_format=torch.channels_last), torch.float32)
        idx_ref, near = latents.scale_indexes(ref, net.gaussian_conditional.scale_table)
        for k, v in out.items():
            rel = ((v - ref).abs() / ref.abs().clamp(min=0.11)).max().item()
            idx, _ = latents.scale_indexes(v, net.gaussian_conditional.scale_table)
            print(f"{name:10s} {k:20s} max rel diff {rel:.2e}  index mismatches {(idx != idx_ref).sum()}  of {idx.size}")
        s = ref.reshape(-1); b = table[:-1]
        i = torch.searchsorted(b, s).clamp(1, len(b)-1)
        d = torch.minimum((s - b[i-1]).abs()/b[i-1], (b[i.clamp(max=len(b)-1)] - s).abs()/b[i.clamp(max=len(b)-1)])
        for mg in (1e-12, 1e-9, 1e-6, 1e-4):
            print(f"{name:10s} near boundary within {mg:g}: {(d <= mg).sum().item()}")

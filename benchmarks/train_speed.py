"""Training steps per second of each architecture at 256x256 crops, batch 8.

    .venv/bin/python benchmarks/train_speed.py [--steps 3] [--batch-size 8] [--crop 256]

One full step each time: forward, the SA-ICM loss with an edge mask, backward, clipping, both
Adam steps. Random data: the cost does not depend on the pixels. Runs on CUDA when available.
"""

from __future__ import annotations

import argparse
import time

import torch


def _step(net, opt, aux_opt, loss_fn, x, m, main_params) -> None:
    opt.zero_grad()
    aux_opt.zero_grad()
    loss_fn(net(x), x, m)["loss"].backward()
    torch.nn.utils.clip_grad_norm_(main_params, 1.0)
    opt.step()
    net.aux_loss().backward()
    aux_opt.step()


def main() -> None:
    from saicm.codec import create_model, list_models
    from saicm.train import RateDistortionLoss

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"# {dev}, batch {args.batch_size}, {args.crop}x{args.crop}, "
        f"mean of {args.steps} steps after one warm-up step"
    )
    print("| architecture | parameters (M) | seconds per step | steps per second |")
    print("|---|---|---|---|")
    for name in args.models or list_models():
        torch.manual_seed(0)
        net = create_model(name).to(dev).train()
        aux = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
        main_p = [p for n, p in net.named_parameters() if not n.endswith(".quantiles")]
        opt, aux_opt = torch.optim.Adam(main_p, 1e-4), torch.optim.Adam(aux, 1e-3)
        loss_fn = RateDistortionLoss(0.05)
        x = torch.rand(args.batch_size, 3, args.crop, args.crop, device=dev)
        m = (torch.rand(args.batch_size, 1, args.crop, args.crop, device=dev) > 0.9).float()
        parts = (net, opt, aux_opt, loss_fn, x, m, main_p)
        _step(*parts)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(args.steps):
            _step(*parts)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        sec = (time.perf_counter() - t) / args.steps
        params = sum(p.numel() for p in net.parameters()) / 1e6
        print(f"| {name} | {params:.2f} | {sec:.2f} | {1 / sec:.3f} |", flush=True)


if __name__ == "__main__":
    main()

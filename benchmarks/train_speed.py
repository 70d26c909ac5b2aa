"""Training throughput of each option of the training loop, as ratios against today's loop.

    .venv/bin/python benchmarks/train_speed.py [--archs mbt2018-mean mbt2018-mean-vbr tcm-small]
        [--options base cl bf16 bf16-cl ...] [--batch-size 8] [--crop 128] [--steps 4]
        [--rounds 3] [--images data/offline/train]

One full training step each time, as ``saicm train`` does it (:class:`saicm.train.proxy.
TrainingForward` with the run's proxy, the masked rate-distortion loss computed in float32,
backward, clipping, both Adam steps). The configurations are **interleaved**: every round runs
``--steps`` steps of each (arch, option) in turn and the median over rounds is kept, so that a
noisy or shared machine slows them all alike; the ratio column compares each with ``base``
(float32, contiguous tensors, two threads: the loop before issue 25) of the same architecture
in the same run. Throughput is in training pixels per second (``batch x crop^2 / step time``).

Options (names joined by ``-`` combine):

- ``base``: float32, ``torch.contiguous_format``, ``--threads`` threads.
- ``cl``: the network's weights and each batch in ``torch.channels_last``.
- ``bf16``: ``torch.autocast("cpu", torch.bfloat16)`` over the forward pass.
- ``t1``: one thread (``torch.set_num_threads(1)``): what one of two side-by-side runs gets.
- ``compile``: ``torch.compile`` of the training forward pass (inductor; the compile time is
  reported apart and not counted).

With ``--images`` the batches come from the real dataset (:class:`saicm.train.data.
MaskedImageFolder`, decoded images kept in memory, its crops and flips) through a
``DataLoader`` without workers, so the loading is part of the step; otherwise from one random
tensor. ``--profile`` prints the ten most expensive operators of one step of the first
configuration (where the time goes: convolutions, GDN, the likelihoods).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

import torch

ARCH_ALIASES = {
    # name -> (registered architecture, its config overrides)
    "mbt2018-mean": ("mbt2018-mean", {}),
    "mbt2018-mean-n64": ("mbt2018-mean", {"N": 64, "M": 96}),
    "mbt2018-mean-vbr": ("mbt2018-mean-vbr", {}),
    "mbt2018-mean-vbr-n64": ("mbt2018-mean-vbr", {"N": 64, "M": 96}),
    "tcm-small": ("tcm-small", {}),
}


@dataclass
class Case:
    arch: str
    option: str
    parts: set[str]
    net: torch.nn.Module = None  # type: ignore[assignment]
    forward: object = None
    opt: torch.optim.Optimizer = None  # type: ignore[assignment]
    aux_opt: torch.optim.Optimizer = None  # type: ignore[assignment]
    main_params: list = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    compile_s: float = 0.0


def _build(case: Case, lr: float) -> None:
    from saicm.codec import create_model
    from saicm.train.proxy import TrainingForward, check_quant

    arch, config = ARCH_ALIASES[case.arch]
    torch.manual_seed(0)
    net = create_model(arch, **config)
    if hasattr(net, "set_range"):
        net.set_range(0.0018, 0.05)
    if "cl" in case.parts:
        net = net.to(memory_format=torch.channels_last)
    net.train()
    case.net = net
    fwd = TrainingForward(net, check_quant(arch, "mixed"))
    case.forward = torch.compile(fwd) if "compile" in case.parts else fwd
    aux = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    case.main_params = [
        p for n, p in net.named_parameters() if not n.endswith(".quantiles") and p.requires_grad
    ]
    case.opt = torch.optim.Adam(case.main_params, lr)
    case.aux_opt = torch.optim.Adam(aux, 1e-3)


def _step(case: Case, x: torch.Tensor, m: torch.Tensor, loss_fn, lmbda: float) -> None:
    net = case.net
    if "cl" in case.parts:
        x = x.contiguous(memory_format=torch.channels_last)
    case.opt.zero_grad(set_to_none=True)
    case.aux_opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in case.parts):
        out = case.forward(x, lmbda) if hasattr(net, "set_range") else case.forward(x)
    out = {
        "x_hat": out["x_hat"].float(),
        "likelihoods": {k: v.float() for k, v in out["likelihoods"].items()},
    }
    loss_fn.lmbda = lmbda
    loss_fn(out, x, m)["loss"].backward()
    torch.nn.utils.clip_grad_norm_(case.main_params, 1.0)
    case.opt.step()
    net.aux_loss().backward()
    case.aux_opt.step()


def main() -> None:
    from saicm.train import RateDistortionLoss

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["mbt2018-mean", "mbt2018-mean-vbr"],
                    choices=sorted(ARCH_ALIASES))
    ap.add_argument("--options", nargs="+", default=["base", "cl", "bf16", "bf16-cl", "bf16-t1"])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4, help="steps per configuration per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", default=None, help="training images: real batches, cached")
    ap.add_argument("--masks", default=None)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    known = {"base", "cl", "bf16", "t1", "compile"}
    cases = []
    for arch in args.archs:
        for option in args.options:
            parts = set(option.split("-"))
            if not parts <= known:
                ap.error(f"option {option}: parts are {', '.join(sorted(known))}")
            cases.append(Case(arch, option, parts))
    loss_fn = RateDistortionLoss(0.0067)
    b, c = args.batch_size, args.crop
    if args.images:
        from torch.utils.data import DataLoader

        from saicm.train.data import MaskedImageFolder, MicroBatches

        data = MaskedImageFolder(args.images, args.masks, c, seed=0)
        total = 10**7
        loader = iter(DataLoader(data, batch_sampler=MicroBatches(b, 1, 0, 1, 0, total)))

        def batch() -> tuple[torch.Tensor, torch.Tensor]:
            x, m = next(loader)
            return x, m if args.masks else torch.ones_like(x[:, :1])

        for _ in range(len(data.files) // b + 1):  # decode every image once (kept in memory)
            batch()
    else:
        g = torch.Generator().manual_seed(0)
        fixed = (torch.rand(b, 3, c, c, generator=g), torch.ones(b, 1, c, c))

        def batch() -> tuple[torch.Tensor, torch.Tensor]:
            return fixed

    print(
        f"# {torch.__version__}, {torch.get_num_threads()} threads available, batch {b}, "
        f"{c}x{c}, {args.steps} steps x {args.rounds} rounds per configuration, interleaved; "
        f"data: {'real (' + args.images + ')' if args.images else 'one random batch'}",
        flush=True,
    )
    for case in cases:
        torch.set_num_threads(1 if "t1" in case.parts else args.threads)
        _build(case, 1e-4)
        t = time.perf_counter()
        for _ in range(2):  # warm-up (and compile)
            _step(case, *batch(), loss_fn, 0.0067)
        case.compile_s = time.perf_counter() - t
    for r in range(args.rounds):
        for case in cases:
            torch.set_num_threads(1 if "t1" in case.parts else args.threads)
            t = time.perf_counter()
            for _ in range(args.steps):
                _step(case, *batch(), loss_fn, 0.0067)
            case.times.append((time.perf_counter() - t) / args.steps)
        print(f"# round {r + 1}/{args.rounds} done", flush=True)
    print("| architecture | option | s/step | Mpx/s | ratio to base |")
    print("|---|---|---|---|---|")
    base = {cs.arch: statistics.median(cs.times) for cs in cases if cs.option == "base"}
    for case in cases:
        sec = statistics.median(case.times)
        ratio = f"{base[case.arch] / sec:.2f}" if case.arch in base else "-"
        extra = f" (compile {case.compile_s:.0f} s)" if "compile" in case.parts else ""
        print(f"| {case.arch} | {case.option}{extra} | {sec:.3f} | {b * c * c / sec / 1e6:.3f} "
              f"| {ratio} |", flush=True)
    if args.profile:
        case = cases[0]
        with torch.profiler.profile() as prof:
            _step(case, *batch(), loss_fn, 0.0067)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()

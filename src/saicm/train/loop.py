"""The training loop.

Adam on the network, a second Adam on the entropy bottleneck's quantiles (CompressAI's
auxiliary loss), gradient clipping, step LR decay, validation, CSV and TensorBoard logs, atomic
checkpoints and exact resume. Under ``torchrun`` it runs DistributedDataParallel (NCCL on GPUs,
gloo on CPUs); rank 0 alone writes.

Reproducibility: the data of step ``s`` is fixed by ``(seed, s)`` (see ``MaskedImageFolder``),
the quantisation noise of micro-batch ``g`` of step ``s`` by ``(seed, s, g)``, and the lambda of
step ``s`` of a variable-rate run by ``(seed, s)`` (:func:`sample_lmbda`). Hence a resumed run
repeats an uninterrupted one, and ``K`` ranks equal one process accumulating ``K``
micro-batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from ..codec.model_file import TrainedModel, export_model
from ..codec.registry import create_model, get_architecture
from ..codec.vbr import is_variable_rate
from ..errors import SaicmError
from ..image import list_images
from ..utils.io import atomic_path, remove_stale_parts
from ..utils.runs import RunLogs, check_run_folder, dist_env
from .amp import check_amp
from .config import RESUME_APPLIED, RESUME_FIXED, TrainConfig
from .data import MaskedImageFolder, MicroBatches
from .loss import RateDistortionLoss
from .proxy import TrainingForward
from .warm_start import load_init

__all__ = ["sample_lmbda", "train", "validate", "validation_lmbdas"]

CHECKPOINT = "checkpoint.pt"
#: what a run writes into its folder (besides the logs, ``RunLogs.FILES``)
RUN_FILES = (CHECKPOINT, "config.yaml", "model.pt")


def _plain(value):
    """``value`` with only tensors, numbers, strings, None and containers (what ``torch.load``
    rebuilds with ``weights_only=True``); anything else becomes its text."""
    if isinstance(value, dict):
        return {(k if isinstance(k, (str, int)) else str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    return str(value)


def _read_checkpoint(path: Path) -> dict:
    """A checkpoint of this loop, read with ``weights_only=True`` (a file that needs unpickling,
    e.g. one handed over by someone else, is refused without running anything).

    Raises:
        SaicmError: one line: unreadable, not a checkpoint, or one that needs unpickling.
    """
    from ..utils.io import read_weights_file

    ckpt = read_weights_file(path, "training checkpoint of saicm train", SaicmError)
    keys = ("model", "opt", "aux_opt", "step")  # older checkpoints also hold "sched": unused
    if not isinstance(ckpt, dict) or not all(k in ckpt for k in keys):
        raise SaicmError(f"{path}: not a training checkpoint of saicm train")
    if not isinstance(ckpt["step"], int) or isinstance(ckpt["step"], bool) or ckpt["step"] < 0:
        raise SaicmError(f"{path}: not a training checkpoint of saicm train (step)")
    if not all(isinstance(ckpt[k], dict) for k in keys[:3]):
        raise SaicmError(f"{path}: not a training checkpoint of saicm train (state)")
    return ckpt


def _data_key(data: MaskedImageFolder) -> str:
    """SHA-256 of the training set's file names and sizes (images, then masks): what a resumed
    run checks so that it does not go on with other pictures under the same folder names.
    Sizes, not contents, so that resuming costs no pass over the data (and survives a copy of
    the set to another machine, which changes modification times)."""
    import hashlib

    h = hashlib.sha256()
    for f in [*data.files, *(data.masks or [])]:
        h.update(f"{f.name}\0{f.stat().st_size}\n".encode())
    return h.hexdigest()


def _noise_seed(seed: int, step: int, micro: int) -> int:
    return (seed * 1_000_003 + step) * 1_009 + micro


def sample_lmbda(seed: int, step: int, low: float, high: float) -> float:
    """The lambda of step ``step`` (0-based) of a variable-rate run: log-uniform in
    ``[low, high)``, from a generator seeded by ``(seed, step)`` alone, so that every rank and
    every resumed run draws the same one (and the global RNG, which draws the quantisation
    noise, is left untouched)."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + step) * 7_919 + 1)
    u = float(torch.rand((), generator=g, dtype=torch.float64))
    return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))


def validation_lmbdas(low: float, high: float) -> list[float]:
    """Where a variable-rate run is validated: both ends of its range and the geometric middle."""
    return [low, math.sqrt(low * high), high]


def _segment(cfg: TrainConfig, start: int) -> dict:
    """One segment of ``history``: the steps run from ``start`` with these settings."""
    seg = {
        "from_step": start,
        "to_step": start,
        **{k: getattr(cfg, k) for k in RESUME_APPLIED if k not in ("card", "workers", "name")},
    }
    if cfg.schedule == "cosine":
        seg["lr_floor"] = cfg.lr_floor()
    else:
        seg["milestone_steps"] = cfg.milestone_steps()
    return seg


def _schedule_text(cfg: TrainConfig) -> str:
    ramp = f" after {cfg.warmup} warm-up steps" if cfg.warmup else ""
    if cfg.schedule == "cosine":
        return f"cosine from lr {cfg.lr:g}{ramp} to {cfg.lr_floor():g} at step {cfg.steps}"
    return f"lr {cfg.lr:g}{ramp}, milestones at steps {cfg.milestone_steps()}"


def _resume_settings(cfg: TrainConfig, ckpt: dict, step: int) -> list[dict]:
    """Check ``cfg`` against the run in ``ckpt``; return the history to continue.

    Raises:
        SaicmError: a setting of :data:`RESUME_FIXED` differs (names it and both values), or
            ``steps`` is below the steps already run.
    """
    before = ckpt.get("config") or {}
    for k in RESUME_FIXED:
        if k in before and before[k] != getattr(cfg, k):
            raise SaicmError(
                f"--resume: {k} was {before[k]!r} in this run, now {getattr(cfg, k)!r}; a "
                f"resumed run cannot change {k} (start a new run, e.g. with --init)"
            )
    if cfg.steps < step:
        raise SaicmError(f"--resume: --steps {cfg.steps} is below the {step} steps already run")
    history = [dict(h) for h in ckpt.get("history") or []]
    if not history:  # a checkpoint of an older saicm: one segment, its own settings
        old = TrainConfig().override({k: v for k, v in before.items() if k != "history"})
        history = [{**_segment(old, 0), "to_step": step}]
    history = [h for h in history if h["from_step"] < step]  # work after the checkpoint: redone
    history[-1]["to_step"] = step
    return history


def _nan_hint(cfg: TrainConfig, totals: dict[str, float], x: torch.Tensor, lr: float) -> str:
    """Why the loss may have become non-finite, from the inputs first, then the optimiser."""
    if cfg.lmbda is not None and not (math.isfinite(cfg.lmbda) and cfg.lmbda > 0):
        return f"--lmbda is {cfg.lmbda}: it must be a finite number above 0"
    if cfg.lmbda_range is not None and not all(math.isfinite(v) and v > 0 for v in cfg.lmbda_range):
        return f"--lmbda-range is {cfg.lmbda_range}: both must be finite numbers above 0"
    for k in ("lr", "aux_lr", "gamma", "clip"):
        v = getattr(cfg, k)
        if not math.isfinite(v) or v < 0:
            return f"--{k.replace('_', '-')} is {v}: it must be a finite number, 0 or more"
    if not bool(torch.isfinite(x).all()):
        return "the input batch holds non-finite values: check the training images"
    bad = " and ".join(k for k in ("bpp", "mse") if not math.isfinite(totals[k])) or "loss"
    hint = f"lower --lr (now {lr:g})"
    if cfg.amp != "off":
        hint += f" or use --amp off (now {cfg.amp})"
    return f"settings and data are finite, the training diverged ({bad} not finite): {hint}"


@torch.no_grad()
def validate(
    net: torch.nn.Module,
    images: str,
    masks: str | None,
    device: torch.device,
    lmbdas: list[float] | None = None,
) -> dict[str, float]:
    """Mean bpp (entropy estimate), PSNR, and PSNR inside the mask over held-out images, with the
    network in eval mode (rounding, as at test time).

    A variable-rate network is measured at each of ``lmbdas`` (default: :func:`validation_lmbdas`
    of its range); each value's key then ends with ``@<lambda>``, e.g. ``bpp@0.0018``.
    """
    if is_variable_rate(net):
        res: dict[str, float] = {}
        for lm in lmbdas or validation_lmbdas(*net.rate_range):
            one = _validate(net, images, masks, device, lm)
            res.update({f"{k}@{lm:g}": v for k, v in one.items()})
        return res
    return _validate(net, images, masks, device, None)


def _validate(
    net: torch.nn.Module,
    images: str,
    masks: str | None,
    device: torch.device,
    lmbda: float | None,
) -> dict[str, float]:
    from ..image import pad_to_multiple

    ds = MaskedImageFolder(images, masks, crop=64)
    was_training = net.training
    net.eval()
    bpp, psnr, psnr_in = [], [], []
    for i in range(len(ds)):
        both = ds.load(i).float().div(255.0).to(device)[None]
        x, m = both[:, :3], both[:, 3:]
        h, w = x.shape[-2:]
        xp, _ = pad_to_multiple(x, getattr(net, "downsampling", 64))
        out = net(xp) if lmbda is None else net(xp, lmbda=lmbda)
        x_hat = out["x_hat"][..., :h, :w].clamp(0, 1)
        bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
        bpp.append(float(bits) / (h * w))
        err = (x_hat - x) ** 2
        psnr.append(float(-10 * torch.log10(err.mean())))
        if masks is not None and m.sum() > 0:
            psnr_in.append(float(-10 * torch.log10((err * m).sum() / (3 * m.sum()))))
    net.train(was_training)
    res = {"bpp": float(np.mean(bpp)), "psnr": float(np.mean(psnr))}
    if psnr_in:
        res["psnr_mask"] = float(np.mean(psnr_in))
    return res


def train(
    cfg: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True
) -> TrainedModel | None:
    """Train ``cfg`` into the run folder ``out``; export ``out/model.pt`` at the end.

    With ``resume`` the run continues from ``out/checkpoint.pt``: weights, both optimizers, the
    LR schedule and the step. Returns the exported model (None on ranks other than 0).
    A run that fails before its first checkpoint (an unreadable image, a bad setting) leaves no
    run folder behind, so the same command can simply be run again.
    """
    out = Path(out)
    fresh = not out.exists()
    try:
        return _train(cfg, out, resume, progress)
    except BaseException:
        if fresh and dist_env()[0] == 0 and not (out / CHECKPOINT).exists():
            shutil.rmtree(out, ignore_errors=True)
        raise


def _train(cfg: TrainConfig, out: Path, resume: bool, progress: bool) -> TrainedModel | None:
    from ..utils.progress import progress as progress_bar
    from ..utils.progress import say

    rank, world, local_rank = dist_env()
    cfg.validate(world)
    ckpt_path = out / CHECKPOINT
    check_run_folder(out, RUN_FILES, resume)
    ckpt = _read_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None
    data = MaskedImageFolder(
        cfg.images,
        cfg.masks if cfg.loss != "mse" else None,
        cfg.crop,
        seed=cfg.seed,
        object_crops=cfg.object_crops,
        allow_empty=cfg.loss == "region",  # images without objects; edge masks are never empty
    )
    if cfg.val_images:
        list_images(cfg.val_images)  # fail now, not at the first validation
        if cfg.val_masks:
            MaskedImageFolder(cfg.val_images, cfg.val_masks, 64, allow_empty=True)
    mask_facts = {}
    if data.masks is not None:
        mask_facts = {"mask_fraction": round(data.mask_fraction, 6)}
        if data.empty_masks:
            mask_facts["empty_masks"] = len(data.empty_masks)
        if rank == 0:
            print(
                f"masks: mean mask fraction {data.mask_fraction:.4f} over {len(data.masks)} "
                f"masks ({len(data.empty_masks)} empty) in {cfg.masks}",
                flush=True,
            )

    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(device)
    if rank == 0:
        check_amp(cfg.amp, device)
    torch.manual_seed(cfg.seed)
    net = create_model(cfg.arch, **cfg.arch_config)
    if is_variable_rate(net) != cfg.variable_rate:  # the table of config.py is out of date
        raise SaicmError(f"arch {cfg.arch}: variable rate is {is_variable_rate(net)} here")
    if cfg.init and not resume:  # a bad --init fails before the run folder is made
        load_init(net, cfg, verbose=rank == 0)
    if cfg.variable_rate and ckpt is None:  # a resumed run's anchors come with its weights
        # its gains are fixed (no gradient) in the network itself
        net.set_range(*cfg.lmbda_range, unit=cfg.unit_step_lmbda)
    net = net.to(device)
    net.train()
    aux_params = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    main_params = [
        p for n, p in net.named_parameters() if not n.endswith(".quantiles") and p.requires_grad
    ]
    opt = torch.optim.Adam(main_params, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=cfg.aux_lr)
    step = 0
    history = [_segment(cfg, 0)]
    data_key = _data_key(data)
    if ckpt is not None:
        history = _resume_settings(cfg, ckpt, ckpt["step"])
        if ckpt.get("data_key", data_key) != data_key:  # checkpoints before 2026-11-29: none
            raise SaicmError(
                f"--resume: the files in {cfg.images}"
                + (f" or {cfg.masks}" if data.masks is not None else "")
                + " are not those the run started with (names or sizes differ); a resumed run "
                "cannot change its data (start a new run, e.g. with --init)"
            )
        try:
            net.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["opt"])  # Adam's moments; the LRs are set below, each step
            aux_opt.load_state_dict(ckpt["aux_opt"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SaicmError(f"{ckpt_path}: does not fit this run's model ({first})") from None
        step = ckpt["step"]
        if cfg.variable_rate and not all(
            math.isclose(a, b, rel_tol=1e-6)
            for a, b in zip(net.rate_range, cfg.lmbda_range, strict=True)
        ):
            raise SaicmError(
                f"{ckpt_path}: its model's lambda range {net.rate_range} is not lmbda_range "
                f"{cfg.lmbda_range}"
            )
        if step < cfg.steps:
            history.append(_segment(cfg, step))
        changed = [
            f"{k} {ckpt['config'][k]!r} -> {getattr(cfg, k)!r}"
            for k in RESUME_APPLIED
            if k in (ckpt.get("config") or {}) and ckpt["config"][k] != getattr(cfg, k)
        ]
        if changed and rank == 0:
            print(
                f"resuming at step {step} with {', '.join(changed)}; from here the LR "
                f"follows {_schedule_text(cfg)}",
                flush=True,
            )
    for g in aux_opt.param_groups:
        g["lr"] = cfg.aux_lr
    cfg = dataclasses.replace(cfg, history=history)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:  # what a kill during a write left (this run's own names only)
            remove_stale_parts(out / name)
        cfg.save(out / "config.yaml")
    model: torch.nn.Module = TrainingForward(net, cfg.quant)
    if world > 1:
        # The quantiles are trained by the auxiliary loss and averaged by hand below.
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, [n for n, _ in model.named_parameters() if n.endswith(".quantiles")]
        )
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if cuda else None
        )
    amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16" and cuda)
    criterion = RateDistortionLoss(cfg.lmbda, outside=cfg.outside_weight)
    logs = RunLogs(out, rank == 0)
    if resume:
        logs.truncate(step)

    def save_checkpoint() -> None:
        if rank != 0:
            return
        state = {
            "model": net.state_dict(),
            "opt": opt.state_dict(),
            "aux_opt": aux_opt.state_dict(),
            "step": step,
            "config": _plain(asdict(cfg)),
            "history": _plain(cfg.history),
            "data_key": data_key,
        }
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)
        cfg.save(out / "config.yaml")  # its history: the steps that this checkpoint holds

    loader = DataLoader(
        data,
        batch_sampler=MicroBatches(cfg.batch_size, world, rank, cfg.accumulate, step, cfg.steps),
        num_workers=cfg.workers,
        pin_memory=cuda,
    )
    batches = iter(loader)
    bar = progress_bar(  # plain lines when stderr is not a terminal
        cfg.steps,
        cfg.model_name,
        "step",
        initial=step,
        disable=not progress or rank != 0,
        dynamic_ncols=True,
    )
    t0, seen = time.perf_counter(), 0
    window: dict[str, float] = {"loss": 0.0, "bpp": 0.0, "mse": 0.0}  # sums since the last row
    window_steps = 0
    lmbda = None
    while step < cfg.steps:
        if cfg.variable_rate:
            lmbda = sample_lmbda(cfg.seed, step, *cfg.lmbda_range)
            criterion.lmbda = lmbda
        lr = cfg.lr_at(step)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        aux_opt.zero_grad(set_to_none=True)
        totals = {"loss": 0.0, "bpp": 0.0, "mse": 0.0}
        for m in range(cfg.accumulate):
            x, mask = (t.to(device, non_blocking=True) for t in next(batches))
            torch.manual_seed(_noise_seed(cfg.seed, step, rank * cfg.accumulate + m))
            last = m == cfg.accumulate - 1
            sync = contextlib.nullcontext() if world == 1 or last else model.no_sync()
            with sync:
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    res_out = model(x) if lmbda is None else model(x, lmbda)
                res_out = {
                    "x_hat": res_out["x_hat"].float(),
                    "likelihoods": {k: v.float() for k, v in res_out["likelihoods"].items()},
                }
                res = criterion(res_out, x, mask if cfg.loss != "mse" else None)
                scaler.scale(res["loss"] / cfg.accumulate).backward()
            for k in totals:
                totals[k] += float(res[k].detach()) / cfg.accumulate
        if not math.isfinite(totals["loss"]):
            raise SaicmError(
                f"loss became {totals['loss']} at step {step + 1}: " + _nan_hint(cfg, totals, x, lr)
            )
        scaler.unscale_(opt)
        if cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(main_params, cfg.clip)
        scaler.step(opt)
        scaler.update()
        aux = net.aux_loss()
        aux.backward()
        if world > 1:
            for p in aux_params:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= world
        aux_opt.step()
        step += 1
        cfg.history[-1]["to_step"] = step
        seen += cfg.batch_size
        window_steps += 1
        for k in window:
            window[k] += totals[k]
        bar.update(1)
        bar.set_postfix(
            loss=f"{totals['loss']:.3f}", bpp=f"{totals['bpp']:.3f}", mse=f"{totals['mse']:.2e}"
        )
        if step % cfg.log_every == 0 or step == cfg.steps:
            dt = time.perf_counter() - t0
            means = {k: v / window_steps for k, v in window.items()}
            logs.row(
                "train",
                step,
                {
                    **means,
                    "aux": float(aux.detach()),
                    "lr": lr,  # of the last step
                    "images_per_s": seen / dt if dt > 0 else 0.0,
                    # a variable-rate run: the last step's lambda and its own bpp and MSE
                    **(
                        {"lmbda": lmbda, "step_bpp": totals["bpp"], "step_mse": totals["mse"]}
                        if lmbda is not None
                        else {}
                    ),
                },
            )
            window, window_steps = dict.fromkeys(window, 0.0), 0
        if cfg.val_images and rank == 0 and (step % cfg.val_every == 0 or step == cfg.steps):
            lms = validation_lmbdas(*cfg.lmbda_range) if cfg.variable_rate else None
            if progress:
                say(f"step {step}: validating on {cfg.val_images}")
            scores = validate(net, cfg.val_images, cfg.val_masks, device, lms)
            logs.row("val", step, scores)
            if progress:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in scores.items())
                say(f"step {step}: validation {shown}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_checkpoint()
    bar.close()
    if world > 1:
        dist.barrier()
    if rank != 0:
        return None
    rate: dict = {"lmbda": cfg.lmbda}
    if cfg.variable_rate:
        rate = {"lmbda_range": cfg.lmbda_range}
        if cfg.unit_step_lmbda is not None:
            rate["unit_step_lmbda"] = cfg.unit_step_lmbda
    card = {
        "loss": cfg.loss,
        **rate,
        "quant": cfg.quant,
        "schedule": cfg.schedule,
        "steps": cfg.steps,
        "crop": cfg.crop,
        "object_crops": cfg.object_crops,
        "outside_weight": cfg.outside_weight,
        "batch_size": cfg.batch_size,
        "images": cfg.images,
        "masks": cfg.masks,
        "init": cfg.init,
        **cfg.card,
        # what was measured and run, after the user's facts so that none can stand in for them
        **mask_facts,
        "history": cfg.history,
    }
    arch_config = {**get_architecture(cfg.arch).config, **cfg.arch_config}
    if progress:
        say(f"exporting {out / 'model.pt'}: CDF tables, 8-bit weights, rANS-coded")
    return export_model(
        out / "model.pt",
        net.cpu(),
        name=cfg.model_name,
        arch=cfg.arch,
        config=arch_config,
        card=card,
        storage="int8",
    )

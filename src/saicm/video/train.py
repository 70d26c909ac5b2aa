"""``saicm video train``: overfit NeRV (or SA-NeRV) to one clip, then prune and fine-tune.

A run folder holds ``config.yaml``, the frames it learns (``frames/``), their edge masks for
``sa-nerv`` (``masks/``, built once by any ``saicm masks`` source and cached), ``checkpoint.pt``
(written atomically every ``checkpoint_every`` epochs: a kill loses at most that much),
``train.csv`` and TensorBoard logs, and at the end ``model.pt`` (float weights, pruned).

Recipe (NeRV's, ``train_nerv.py``): Adam (beta1 0.5), lr 5e-4, cosine schedule after a linear
warm-up over the first 20% of the epochs from ``warmup_start`` (0.1) times the learning rate,
batch 1. Then global unstructured magnitude pruning of the conv and linear
weights (``prune``) and ``prune_epochs`` of fine-tuning with the pruned weights held at zero.
The learning rate is a function of the step and the frame order of epoch ``e`` a function of
``(seed, e)``, so a resumed run repeats the uninterrupted one. Under ``torchrun`` each rank
takes its share of every batch (DistributedDataParallel; gloo on CPUs, NCCL on GPUs).

Frames cache: ``frames/frame_NNNNN.png`` is trusted only with ``clip.yaml``, written last, that
holds their count, size, SHA-256 and a key of the source (path, size and time of the file or of
each frame, the frame selection); a cache without it (a killed copy) is made again, a source that
changed is refused. Checkpoints hold only tensors, numbers, strings and containers and are read
with ``torch.load(weights_only=True)``.

Resume (``resume=True``): the settings the checkpoint recorded are kept. ``checkpoint_every`` may
change at any time, ``prune`` and ``prune_epochs`` while the pruning phase has not started (the
learning rate before it does not depend on them); any other change is refused with one line,
because the epochs already run followed the recorded schedule. Every accepted change is listed,
with the epoch it took effect, in ``config.yaml``'s history and the model card.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..errors import SaicmError
from ..utils.io import atomic_path, read_weights_file, remove_stale_parts
from ..utils.options import OptionError, check, choice, finite_float, int_range
from ..utils.progress import progress as progress_bar
from ..utils.runs import RunLogs, check_run_folder, dist_env
from ..utils.settings import Settings, dump_yaml
from .bitstream import MAX_FRAMES
from .frames import parse_size
from .loss import LOSSES, VideoLoss
from .nerv import SIZES, NeRV, NeRVConfig, frame_times, nerv_config
from .run_frames import CLIP, prepare_frames, read_source

__all__ = ["VideoTrainConfig", "load_nerv", "train_video"]

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
FORMAT = "saicm-nerv"
#: what a run writes into its folder (besides the logs, ``RunLogs.FILES``), checkpoint first
RUN_FILES = (CHECKPOINT, "config.yaml", MODEL, CLIP, "frames", "masks")
#: Settings a resumed run may change: at any time / before pruning starts.
FREE_ON_RESUME = ("checkpoint_every",)
PRUNING_SETTINGS = ("prune", "prune_epochs")


@dataclass
class VideoTrainConfig(Settings):
    """A NeRV training run.

    Arguments:
        video: video file or folder of frames.
        frame_size: ``WxH`` to scale and centre-crop the frames to (default: as they are).
        max_frames, frame_step: which frames to learn (every ``frame_step``-th, at most
            ``max_frames``).
        size: NeRV preset: S, M, L (the official NeRV-S/M/L) or saicm-S/M/L (saicm's earlier,
            smaller GELU presets); see :data:`saicm.video.nerv.SIZES`.
        loss: ``nerv`` or ``sa-nerv`` (adds the edge-masked term).
        beta: weight of L1 inside the edge term (SSIM gets ``1 - beta``).
        mask_source: ``saicm masks`` source of the edge masks (hed, felzenszwalb, slic, sam).
        epochs, batch_size, lr, warmup: the training schedule (warm-up as a fraction).
        warmup_start: the warm-up's first learning rate as a fraction of ``lr`` (NeRV: 0.1).
        prune: fraction of conv/linear weights set to zero after training (0 = none).
        prune_epochs: fine-tuning epochs after pruning.
        checkpoint_every, seed: epochs between checkpoints; seed of weights and frame order.
    """

    video: str = ""
    frame_size: str | None = None
    max_frames: int | None = None
    frame_step: int = 1
    size: str = "S"
    loss: str = "nerv"
    beta: float = 0.5
    mask_source: str = "hed"
    epochs: int = 300
    batch_size: int = 1
    lr: float = 5e-4
    warmup: float = 0.2
    warmup_start: float = 0.1
    prune: float = 0.0
    prune_epochs: int = 0
    checkpoint_every: int = 10
    seed: int = 0

    def validate(self, world: int = 1) -> None:
        """Type and range of every setting (from the command line or a ``config.yaml``), before
        any work: :class:`SaicmError` naming the first one out of range."""
        from ..masks.sources import SOURCES

        if not isinstance(self.video, str) or not self.video:
            raise SaicmError("no video: give VIDEO (a file or a folder of frames)")
        parse_size(self.frame_size)
        try:
            if self.max_frames is not None:
                check("max_frames", self.max_frames, int_range(1, MAX_FRAMES))
            check("frame_step", self.frame_step, int_range(1, 10_000))
            check("size", self.size, choice(*SIZES))
            check("loss", self.loss, choice(*LOSSES))
            check("beta", self.beta, finite_float(0, 1))
            check("mask_source", self.mask_source, choice(*SOURCES))
            check("epochs", self.epochs, int_range(1, 100_000))
            check("batch_size", self.batch_size, int_range(1, 4096))
            check("lr", self.lr, finite_float(0, 1, lo_open=True))
            check("warmup", self.warmup, finite_float(0, 1, hi_open=True))
            check("warmup_start", self.warmup_start, finite_float(0, 1))
            check("prune", self.prune, finite_float(0, 1, hi_open=True))
            check("prune_epochs", self.prune_epochs, int_range(0, 100_000))
            check("checkpoint_every", self.checkpoint_every, int_range(1, 100_000))
            check("seed", self.seed, int_range(0, 2**31 - 1))
        except OptionError as exc:
            raise SaicmError(str(exc)) from None
        if self.batch_size % world:
            raise SaicmError(f"batch size {self.batch_size} does not split into {world} ranks")

    @property
    def total_epochs(self) -> int:
        return self.epochs + (self.prune_epochs if self.prune > 0 else 0)


def _lr(cfg: VideoTrainConfig, epoch: float) -> float:
    """Warm-up (linear from ``warmup_start * lr``, as NeRV's ``adjust_lr``) then cosine over the
    training epochs; the pruning fine-tune restarts the cosine
    from a tenth of the learning rate."""
    if epoch >= cfg.epochs:
        e = (epoch - cfg.epochs) / max(cfg.prune_epochs, 1)
        return 0.1 * cfg.lr * 0.5 * (1 + math.cos(math.pi * min(e, 1.0)))
    warm = cfg.warmup * cfg.epochs
    if epoch < warm:
        return cfg.lr * (cfg.warmup_start + (1 - cfg.warmup_start) * epoch / warm)
    e = (epoch - warm) / max(cfg.epochs - warm, 1e-9)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * e))


def prunable(net: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The weights magnitude pruning acts on: every conv and linear weight."""
    return {n: p for n, p in net.named_parameters() if n.endswith("weight") and p.dim() >= 2}


@torch.no_grad()
def prune_masks(net: torch.nn.Module, fraction: float) -> dict[str, torch.Tensor]:
    """Global magnitude pruning: keep-masks that zero the smallest ``fraction`` of the weights."""
    weights = prunable(net)
    flat = torch.cat([p.abs().flatten() for p in weights.values()])
    k = int(fraction * flat.numel())
    if k == 0:
        return {n: torch.ones_like(p, dtype=torch.bool) for n, p in weights.items()}
    threshold = flat.kthvalue(k).values
    return {n: p.abs() > threshold for n, p in weights.items()}


@torch.no_grad()
def _apply_masks(net: torch.nn.Module, masks: dict[str, torch.Tensor]) -> None:
    for n, p in prunable(net).items():
        if n in masks:
            p.mul_(masks[n].to(p.device))


def _load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """A checkpoint of this module, read with ``weights_only=True`` (nothing in it runs)."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # an unpickling, zip or torch error: not a checkpoint we wrote
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise SaicmError(
            f"{path}: not a saicm video checkpoint, refused without running it "
            f"({type(exc).__name__}{': ' + first if first else ''})"
        ) from None
    if not isinstance(ckpt, dict) or not {"model", "opt", "epoch"} <= set(ckpt):
        raise SaicmError(f"{path}: not a saicm video checkpoint")
    if "settings" not in ckpt or "nerv" not in ckpt:
        raise SaicmError(
            f"{path}: written by an earlier saicm that did not record its settings; a resume "
            "could not keep its schedule: start a new run folder"
        )
    return ckpt


def _resume_settings(
    cfg: VideoTrainConfig, ckpt: dict[str, Any]
) -> tuple[VideoTrainConfig, list[dict[str, Any]]]:
    """Check ``cfg`` against the settings the checkpoint recorded: a changed setting is applied
    (and added to the history) where the run can follow it, else refused."""
    saved, epoch = ckpt["settings"], int(ckpt["epoch"])
    history = list(ckpt.get("history") or [])
    changed = {}
    for f in dataclasses.fields(cfg):
        old, new = saved.get(f.name, f.default), getattr(cfg, f.name)
        if old == new or (f.name == "video" and Path(old).resolve() == Path(new).resolve()):
            continue
        pruning_not_started = f.name in PRUNING_SETTINGS and ckpt.get("keep") is None
        if f.name not in FREE_ON_RESUME and not pruning_not_started:
            flag = "--" + f.name.replace("_", "-")
            why = (
                "pruning has started"
                if f.name in PRUNING_SETTINGS
                else f"{epoch} epochs already ran with {old!r}"
            )
            raise SaicmError(
                f"--resume: {flag} {new!r} differs from this run's {old!r} and cannot apply "
                f"({why}): keep {old!r} or train into a new run folder"
            )
        changed[f.name] = {"from": old, "to": new}
    if changed:
        history.append({"epoch": epoch, "changed": changed})
    return cfg, history


def train_video(
    cfg: VideoTrainConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path | None:
    """Train ``cfg`` into the run folder ``out``; return ``out/model.pt`` (None off rank 0).

    ``stop_after``: checkpoint and return None after this epoch (a time-boxed session); the
    run goes on with ``resume`` as if it had never stopped. Without ``resume`` a folder that
    holds a run's files is refused; a run that fails before its first checkpoint leaves no run
    folder behind (when it made the folder), so the same command can simply be run again.
    """
    out = Path(out)
    fresh = not out.exists()
    try:
        return _train_video(cfg, out, resume, progress, stop_after)
    except BaseException:
        if fresh and dist_env()[0] == 0 and not (out / CHECKPOINT).exists():
            shutil.rmtree(out, ignore_errors=True)
        raise


def _train_video(
    cfg: VideoTrainConfig, out: Path, resume: bool, progress: bool, stop_after: int | None
) -> Path | None:
    rank, world, local_rank = dist_env()
    cfg.validate(world)
    ckpt_path = out / CHECKPOINT
    check_run_folder(out, RUN_FILES, resume)
    _refuse_output_in_source(cfg, out)
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    ckpt, history = None, []
    if resume and ckpt_path.exists():  # settings checked before anything is written
        ckpt = _load_checkpoint(ckpt_path, device)
        cfg, history = _resume_settings(cfg, ckpt)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if rank == 0:
        source = read_source(cfg, out)  # an unreadable video fails before anything is written
        out.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:  # what a kill during a write left (this run's own names only)
            remove_stale_parts(out / name)
        record = {**dataclasses.asdict(cfg), "history": history}
        with atomic_path(out / "config.yaml") as tmp:
            tmp.write_text(dump_yaml(record))
        clip, masks = prepare_frames(cfg, out, source)
    if world > 1:
        dist.barrier()
        if rank != 0:
            clip, masks = prepare_frames(cfg, out, None)
    frames_u8 = torch.from_numpy(clip.frames).permute(0, 3, 1, 2)  # uint8: a quarter of float
    masks_t = None if masks is None else torch.from_numpy(masks)[:, None]
    n, _, h, w = frames_u8.shape

    torch.manual_seed(cfg.seed)
    config = nerv_config(h, w, cfg.size)
    old = ckpt["nerv"] if ckpt is not None else None
    if isinstance(old, dict) and "pe_order" not in old:  # a run started before the official PE
        old = {**old, "pe_order": "pi_first"}  # order was followed: it goes on in its own order
        if {**old, "pe_order": config.pe_order} == config.to_dict():
            config = NeRVConfig.from_dict(old)
    net = NeRV(config).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    epoch, keep = 0, None
    if ckpt is not None:
        if old != config.to_dict():
            raise SaicmError(
                f"{ckpt_path}: its network ({ckpt['nerv']}) is not the {cfg.size} preset for "
                f"{w}x{h} frames of this saicm: start a new run folder"
            )
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        epoch, keep = int(ckpt["epoch"]), ckpt.get("keep")
    model = net
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[local_rank] if cuda else None
        )
    criterion = VideoLoss(cfg.loss, cfg.beta)
    logs = RunLogs(out, rank == 0)
    if resume:
        logs.truncate(epoch)
    if n < cfg.batch_size:
        raise SaicmError(f"{n} frames cannot fill a batch of {cfg.batch_size}")
    per_rank = cfg.batch_size // world
    steps = n // cfg.batch_size  # whole batches: every rank gets its share of each

    def save() -> None:
        if rank != 0:
            return
        state = {
            "model": net.state_dict(),
            "opt": opt.state_dict(),
            "epoch": epoch,
            "keep": keep,
            "settings": dataclasses.asdict(cfg),
            "history": history,
            "nerv": config.to_dict(),
        }
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)

    bar = progress_bar(  # plain lines when stderr is not a terminal
        cfg.total_epochs,
        f"{cfg.loss} {cfg.size}",
        "epoch",
        initial=epoch,
        disable=not progress or rank != 0,
    )
    while epoch < cfg.total_epochs:
        if cfg.prune > 0 and epoch >= cfg.epochs and keep is None:
            keep = prune_masks(net, cfg.prune)
            _apply_masks(net, keep)
        order = torch.randperm(
            n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        )
        sums = {"loss": 0.0, "psnr": 0.0}
        for s in range(steps):
            idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size][rank::world][:per_rank]
            for g in opt.param_groups:
                g["lr"] = _lr(cfg, epoch + s / steps)
            x = frames_u8[idx].to(device).float().div(255)
            m = None if masks_t is None else masks_t[idx].to(device).float()
            x_hat = model(frame_times(idx, n).to(device))
            res = criterion(x_hat, x, m)
            opt.zero_grad(set_to_none=True)
            res["loss"].backward()
            opt.step()
            if keep is not None:
                _apply_masks(net, keep)
            mse = float(((x_hat.detach() - x) ** 2).mean())
            sums["loss"] += float(res["loss"].detach())
            sums["psnr"] += -10 * math.log10(max(mse, 1e-10))
        epoch += 1
        row = {k: v / steps for k, v in sums.items()} | {"lr": _lr(cfg, epoch - 1e-9)}
        logs.row("train", epoch, row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", psnr=f"{row['psnr']:.2f}")
        bar.update(1)
        if epoch % cfg.checkpoint_every == 0 or epoch in (cfg.total_epochs, stop_after):
            save()
        if epoch == stop_after:
            break
    bar.close()
    if epoch < cfg.total_epochs:
        return None
    if world > 1:
        dist.barrier()
    if rank != 0:
        return None
    blob = {
        "format": FORMAT,
        "config": config.to_dict(),
        "frames": n,
        "fps": clip.fps,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "card": {
            "loss": cfg.loss,
            "size": cfg.size,
            "parameters": sum(p.numel() for p in net.parameters()),
            "epochs": cfg.epochs,
            "prune": cfg.prune,
            "prune_epochs": cfg.prune_epochs if cfg.prune > 0 else 0,
            "lr": cfg.lr,
            "warmup": cfg.warmup,
            "warmup_start": cfg.warmup_start,
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "video": str(cfg.video),
            "frames": n,
            "beta": cfg.beta,
            "mask_source": cfg.mask_source,
            "history": history,
        },
    }
    with atomic_path(out / MODEL) as tmp:
        torch.save(blob, tmp)
    return out / MODEL


def _refuse_output_in_source(cfg: VideoTrainConfig, out: Path) -> None:
    """The run folder must not be, hold, or lie inside the clip's folder or file."""
    src, dst = Path(cfg.video).resolve(), out.resolve()
    if src == dst or src.is_relative_to(dst) or (src.is_dir() and dst.is_relative_to(src)):
        raise SaicmError(
            f"{out}: the run folder would mix with the clip {cfg.video}: choose another -o"
        )


def load_nerv(path: str | Path) -> tuple[NeRV, dict[str, Any]]:
    """A trained NeRV (``model.pt`` of a run, or the run folder) and its file's facts."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL
    blob = read_weights_file(path, "NeRV model (did its run finish?)", SaicmError)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise SaicmError(f"{path}: not a NeRV model")
    net = NeRV(NeRVConfig.from_dict(blob["config"]))
    net.load_state_dict(blob["state_dict"])
    return net.eval(), blob

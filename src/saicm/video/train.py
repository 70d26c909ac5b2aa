"""``saicm video train``: overfit NeRV (or SA-NeRV) to one clip, then prune and fine-tune.

A run folder holds ``config.yaml``, the frames it learns (``frames/``), their edge masks for
``sa-nerv`` (``masks/``, built once by any ``saicm masks`` source and cached), ``checkpoint.pt``
(written atomically every ``checkpoint_every`` epochs: a kill loses at most that much),
``train.csv`` and TensorBoard logs, and at the end ``model.pt`` (float weights, pruned).

Recipe (NeRV's): Adam (beta1 0.5), lr 5e-4, cosine schedule with linear warm-up over the first
20% of the epochs, batch 1. Then global unstructured magnitude pruning of the conv and linear
weights (``prune``) and ``prune_epochs`` of fine-tuning with the pruned weights held at zero.
The learning rate is a function of the step and the frame order of epoch ``e`` a function of
``(seed, e)``, so a resumed run repeats the uninterrupted one. Under ``torchrun`` each rank
takes its share of every batch (DistributedDataParallel; gloo on CPUs, NCCL on GPUs).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml

from ..errors import SaicmError
from ..image import list_images
from ..utils.io import atomic_path, read_weights_file
from ..utils.runs import RunLogs, dist_env
from ..utils.settings import Settings
from .frames import Clip, parse_size, read_clip, write_clip
from .loss import LOSSES, VideoLoss
from .nerv import NeRV, NeRVConfig, frame_times, nerv_config

__all__ = ["VideoTrainConfig", "load_nerv", "train_video"]

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
FORMAT = "saicm-nerv"


@dataclass
class VideoTrainConfig(Settings):
    """A NeRV training run.

    Arguments:
        video: video file or folder of frames.
        frame_size: ``WxH`` to scale and centre-crop the frames to (default: as they are).
        max_frames, frame_step: which frames to learn (every ``frame_step``-th, at most
            ``max_frames``).
        size: NeRV size preset, S, M or L.
        loss: ``nerv`` or ``sa-nerv`` (adds the edge-masked term).
        beta: weight of L1 inside the edge term (SSIM gets ``1 - beta``).
        mask_source: ``saicm masks`` source of the edge masks (hed, felzenszwalb, slic, sam).
        epochs, batch_size, lr, warmup: the training schedule (warm-up as a fraction).
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
    prune: float = 0.0
    prune_epochs: int = 0
    checkpoint_every: int = 10
    seed: int = 0

    def validate(self, world: int = 1) -> None:
        if not self.video:
            raise SaicmError("no video: give VIDEO (a file or a folder of frames)")
        if self.loss not in LOSSES:
            raise SaicmError(f"loss {self.loss!r}: choose {', '.join(LOSSES)}")
        if self.epochs < 1 or self.batch_size < 1 or self.prune_epochs < 0:
            raise SaicmError("epochs and batch size must be >= 1, prune epochs >= 0")
        if not 0.0 <= self.prune < 1.0:
            raise SaicmError(f"prune {self.prune}: a fraction in [0, 1)")
        if self.batch_size % world:
            raise SaicmError(f"batch size {self.batch_size} does not split into {world} ranks")
        parse_size(self.frame_size)

    @property
    def total_epochs(self) -> int:
        return self.epochs + (self.prune_epochs if self.prune > 0 else 0)


def _lr(cfg: VideoTrainConfig, epoch: float) -> float:
    """Warm-up then cosine over the training epochs; the pruning fine-tune restarts the cosine
    from a tenth of the learning rate."""
    if epoch >= cfg.epochs:
        e = (epoch - cfg.epochs) / max(cfg.prune_epochs, 1)
        return 0.1 * cfg.lr * 0.5 * (1 + math.cos(math.pi * min(e, 1.0)))
    warm = cfg.warmup * cfg.epochs
    if epoch < warm:
        return cfg.lr * (epoch + 1e-3) / warm
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


def _read_source(cfg: VideoTrainConfig, out: Path) -> Clip | None:
    """The clip from ``cfg.video``, or None when the run already caches its frames."""
    frames_dir = out / "frames"
    if frames_dir.is_dir() and any(frames_dir.iterdir()):
        return None
    return read_clip(cfg.video, parse_size(cfg.frame_size), cfg.max_frames, cfg.frame_step)


def _prepare_frames(
    cfg: VideoTrainConfig, out: Path, source: Clip | None
) -> tuple[Clip, np.ndarray | None]:
    """The clip (``source``, cached as PNGs in the run, or the cache) and, for sa-nerv, its edge
    masks (cached)."""
    frames_dir = out / "frames"
    if source is None:
        clip = read_clip(frames_dir)
        meta = (
            yaml.safe_load((out / "clip.yaml").read_text()) if (out / "clip.yaml").exists() else {}
        )
        clip.fps = float(meta.get("fps", 0.0))
    else:
        clip = source
        write_clip(clip.frames, frames_dir)
        (out / "clip.yaml").write_text(
            yaml.safe_dump({"fps": clip.fps, "frames": len(clip.frames)})
        )
    if cfg.loss != "sa-nerv":
        return clip, None
    from ..masks.build import build_masks
    from ..masks.io import read_mask
    from ..masks.sources import create_source

    mask_dir = out / "masks"
    summary = build_masks([frames_dir], mask_dir, create_source(cfg.mask_source), progress=False)
    if summary.failures:
        name, why = next(iter(summary.failures.items()))
        raise SaicmError(f"edge mask of {name} failed: {why}")
    files = list_images(frames_dir)
    masks = []
    for f in files:
        m = mask_dir / f"{f.stem}.png"
        if not m.exists():
            raise SaicmError(f"{m}: mask missing")
        mask = read_mask(m, allow_empty=True)  # a flat frame has no edges
        if mask.shape != clip.frames.shape[1:3]:
            h, w = mask.shape
            raise SaicmError(f"{m}: mask is {w}x{h}, its frame {f.name} is not")
        masks.append(mask)
    if not any(m.any() for m in masks):
        raise SaicmError(f"{mask_dir}: every edge mask is empty (all off)")
    return clip, np.stack(masks)


def train_video(
    cfg: VideoTrainConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path | None:
    """Train ``cfg`` into the run folder ``out``; return ``out/model.pt`` (None off rank 0).

    ``stop_after``: checkpoint and return None after this epoch (a time-boxed session); the
    run goes on with ``resume`` as if it had never stopped.
    """
    from tqdm import tqdm

    out = Path(out)
    rank, world, local_rank = dist_env()
    cfg.validate(world)
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists() and not resume:
        raise SaicmError(f"{out} already holds a run: pass --resume to continue it")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if rank == 0:
        source = _read_source(cfg, out)  # an unreadable video fails before anything is written
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
        clip, masks = _prepare_frames(cfg, out, source)
    if world > 1:
        dist.barrier()
        if rank != 0:
            clip, masks = _prepare_frames(cfg, out, None)
    frames_t = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float().div(255)
    masks_t = None if masks is None else torch.from_numpy(masks)[:, None].float()
    n, _, h, w = frames_t.shape

    torch.manual_seed(cfg.seed)
    config = nerv_config(h, w, cfg.size)
    net = NeRV(config).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    epoch, keep = 0, None
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        epoch, keep = ckpt["epoch"], ckpt.get("keep")
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
        state = {"model": net.state_dict(), "opt": opt.state_dict(), "epoch": epoch, "keep": keep}
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)

    bar = tqdm(
        total=cfg.total_epochs,
        initial=epoch,
        disable=not progress or rank != 0,
        desc=f"{cfg.loss} {cfg.size}",
        unit="epoch",
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
            x = frames_t[idx].to(device)
            m = None if masks_t is None else masks_t[idx].to(device)
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
            "epochs": cfg.epochs,
            "prune": cfg.prune,
            "video": str(cfg.video),
            "beta": cfg.beta,
            "mask_source": cfg.mask_source,
        },
    }
    with atomic_path(out / MODEL) as tmp:
        torch.save(blob, tmp)
    return out / MODEL


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

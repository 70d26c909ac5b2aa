"""The training loop: Adam on the network, a second Adam on the entropy bottleneck's quantiles
(CompressAI's auxiliary loss), gradient clipping, step LR decay, atomic checkpoints and resume.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..codec.registry import create_model, get_architecture
from ..codec.zoo import TrainedModel, export_model
from ..errors import SaicmError
from ..utils.io import atomic_path
from .data import MaskedImageFolder
from .loss import LOSSES, RateDistortionLoss

__all__ = ["TrainConfig", "train"]


@dataclass
class TrainConfig:
    """Every setting of a run; saved as ``config.json`` in the run folder.

    Arguments:
        images: folder of training images.
        masks: folder of masks (edge masks for ``edge``, object masks for ``region``).
        loss: ``mse`` (Eq. 1), ``region`` (Eq. 3) or ``edge`` (SA-ICM, Eq. 5).
        lmbda: rate-distortion trade-off.
        arch: registered architecture; ``arch_config`` overrides its defaults.
        steps: optimisation steps in all.
        batch_size, crop: batch of random square crops.
        lr, aux_lr: learning rates of the network and of the quantiles.
        milestones: fractions of ``steps`` at which the LR is multiplied by ``gamma``.
        clip: gradient-norm clipping.
        checkpoint_every: steps between checkpoints (a kill loses at most this many).
        log_every: steps between CSV log rows.
        seed: seeds Python, NumPy and torch.
        name: name of the exported model (default: derived from loss, arch and lambda).
        card: extra facts for the model card (data, mask source, ...).
    """

    images: str
    loss: str = "edge"
    lmbda: float = 0.05
    masks: str | None = None
    arch: str = "mbt2018-mean"
    arch_config: dict[str, Any] = field(default_factory=dict)
    steps: int = 10000
    batch_size: int = 8
    crop: int = 256
    lr: float = 1e-4
    aux_lr: float = 1e-3
    milestones: tuple[float, ...] = (0.9, 0.96)
    gamma: float = 0.1
    clip: float = 1.0
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0
    name: str | None = None
    card: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise SaicmError(f"unknown loss {self.loss!r} (choose from {', '.join(LOSSES)})")
        if self.loss != "mse" and not self.masks:
            raise SaicmError(f"loss {self.loss!r} needs --masks")
        get_architecture(self.arch)
        if self.steps < 1 or self.batch_size < 1 or self.crop < 64 or self.crop % 64:
            raise SaicmError("steps and batch size must be >= 1 and crop a multiple of 64")

    @property
    def model_name(self) -> str:
        return self.name or f"{self.loss}-{self.arch}-{self.lmbda:g}"


def _rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _infinite(loader: DataLoader):
    while True:
        yield from loader


def train(
    cfg: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True
) -> TrainedModel:
    """Train ``cfg`` into run folder ``out`` and export the model (``out/model.pt``).

    With ``resume`` the latest checkpoint in ``out`` is continued: weights, both optimizers, the
    LR schedule, the RNG states and the step.
    """
    from tqdm import tqdm

    cfg.validate()
    out = Path(out)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not resume:
        raise SaicmError(f"{out} already holds a run: pass --resume to continue it")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "config.json") as tmp:
        tmp.write_text(json.dumps(dataclasses.asdict(cfg), indent=2))

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    data = MaskedImageFolder(cfg.images, cfg.masks if cfg.loss != "mse" else None, cfg.crop)
    net = create_model(cfg.arch, **cfg.arch_config)
    net.train()
    aux_params = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    main_params = [p for n, p in net.named_parameters() if not n.endswith(".quantiles")]
    opt = torch.optim.Adam(main_params, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=cfg.aux_lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, [round(f * cfg.steps) for f in cfg.milestones], gamma=cfg.gamma
    )
    criterion = RateDistortionLoss(cfg.lmbda)
    step = 0
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        aux_opt.load_state_dict(ckpt["aux_opt"])
        sched.load_state_dict(ckpt["sched"])
        _set_rng_state(ckpt["rng"])
        step = ckpt["step"]

    def save_checkpoint() -> None:
        state = {
            "model": net.state_dict(),
            "opt": opt.state_dict(),
            "aux_opt": aux_opt.state_dict(),
            "sched": sched.state_dict(),
            "rng": _rng_state(),
            "step": step,
        }
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)

    # A fresh generator per resume point keeps the crop sequence a function of (seed, step).
    gen = torch.Generator().manual_seed(cfg.seed + step)
    loader = DataLoader(
        data,
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=gen,
        drop_last=len(data) >= cfg.batch_size,
    )
    batches = _infinite(loader)
    log_path = out / "log.csv"
    new_log = not log_path.exists()
    bar = tqdm(
        total=cfg.steps, initial=step, disable=not progress, dynamic_ncols=True, desc=cfg.model_name
    )
    t0 = time.time()
    with log_path.open("a", newline="") as logf:
        log = csv.writer(logf)
        if new_log:
            log.writerow(["step", "loss", "bpp", "mse", "aux", "lr", "seconds"])
        while step < cfg.steps:
            x, m = next(batches)
            opt.zero_grad(set_to_none=True)
            aux_opt.zero_grad(set_to_none=True)
            res = criterion(net(x), x, m if cfg.loss != "mse" else None)
            res["loss"].backward()
            if cfg.clip > 0:
                torch.nn.utils.clip_grad_norm_(main_params, cfg.clip)
            opt.step()
            aux = net.aux_loss()
            aux.backward()
            aux_opt.step()
            sched.step()
            step += 1
            bar.update(1)
            bar.set_postfix(
                loss=f"{res['loss'].item():.3f}",
                bpp=f"{res['bpp'].item():.3f}",
                mse=f"{res['mse'].item():.2e}",
            )
            if step % cfg.log_every == 0 or step == cfg.steps:
                log.writerow(
                    [
                        step,
                        f"{res['loss'].item():.5f}",
                        f"{res['bpp'].item():.5f}",
                        f"{res['mse'].item():.6e}",
                        f"{aux.item():.3f}",
                        f"{sched.get_last_lr()[0]:.2e}",
                        f"{time.time() - t0:.1f}",
                    ]
                )
                logf.flush()
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_checkpoint()
    bar.close()
    card = {
        "loss": cfg.loss,
        "lmbda": cfg.lmbda,
        "steps": cfg.steps,
        "crop": cfg.crop,
        "batch_size": cfg.batch_size,
        "images": cfg.images,
        "masks": cfg.masks,
        **cfg.card,
    }
    arch_config = {**get_architecture(cfg.arch).config, **cfg.arch_config}
    return export_model(
        out / "model.pt",
        net,
        name=cfg.model_name,
        arch=cfg.arch,
        config=arch_config,
        card=card,
        half=True,
    )

"""Which training options make a step count for more: variants trained at an equal budget, then
measured on real coded files of held-out images.

    .venv/bin/python benchmarks/train_efficiency.py -o runs/eff \\
        --base "--images data/offline/train --loss mse --lmbda 0.013 --steps 2000 \\
                --batch-size 8 --crop 128 --lr 3e-4" \\
        --val-images data/offline/val --every 10 \\
        noise: ste:"--quant ste" mixed:"--quant mixed" cosine:"--schedule cosine" \\
        crop256:"--crop 256"            # steps scaled to the same pixels: 500 of them
    # several lambdas per variant (one run per lambda) and the BD-rate (PSNR) of each variant
    # against the first; a variable-rate variant is one run, evaluated at those lambdas:
    ... --lmbdas 0.0035,0.013,0.05 noise: vbr:"--arch mbt2018-mean-vbr --lmbda-range 0.0035 0.05"
    # all runs side by side (one process each; on a GPU, or with --threads on CPUs):
    ... --parallel --threads 2

Each variant is ``NAME:OPTIONS``: ``saicm train`` options added to (and overriding) ``--base``
(which may hold ``--config FILE``, e.g. for ``arch_config``). Each run is a ``saicm train`` run
folder ``OUT/NAME`` (``OUT/NAME-<lambda>`` with ``--lmbdas``): a finished run (``model.pt``) is
skipped, an interrupted one resumed, so the same command can be run again after a kill.

Equal budget: every variant trains the same number of pixels, ``runs x steps x batch x crop^2``,
as the base options do (a fixed-rate variant makes one run per lambda of ``--lmbdas``, a
variable-rate variant one run). A variant that does not give ``--steps`` gets the steps that make
its budget equal (``--crop 256`` against a base of 128: a quarter of the steps; a variable-rate
variant against three lambdas: three times the steps); one that gives ``--steps`` must already be
equal; either way an unequal budget is refused before anything is trained. The data and seed are
those of the base options (a variant that changes ``--images`` or ``--seed`` is marked in the
table).

Measured on every ``--every``-th image of ``--val-images``: real ``.sic`` files
(:func:`saicm.encode` / :func:`saicm.decode`), each model at its lambda (a variable-rate model at
each of ``--lmbdas``, else at both ends and the middle of its range):

- ``bpp``: bits of all files over all pixels; ``psnr``: mean over images (dB);
- ``J = bpp + lambda * 255^2 * MSE``: the rate-distortion cost the fixed-rate loss minimises
  (``MSE`` over all pixels of all images, pixel values in [0, 1]): lower is better, and
  comparable between variants at the same lambda only;
- with ``--val-masks`` (``<stem>.png`` per image, e.g. edge masks): ``psnr_mask`` (PSNR inside the
  mask, mean over images) and ``J_mask``, the same cost with the masked distortion of SA-ICM's
  Eq. 5 (``mean(err * m)`` over all pixels);
- with two or more lambdas per variant: ``bd_rate_psnr``, the BD-rate (%) on (bpp, PSNR) against
  the first variant (negative: fewer bits for the same PSNR).

Writes ``OUT/results.json`` and ``OUT/results.md`` (the table, also printed). Exit status 1 when
a run failed (named; the others are still measured).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Run:
    """One ``saicm train`` run of a variant."""

    variant: str
    folder: Path
    argv: list[str]
    cfg: Any  # TrainConfig, validated
    seconds: float = math.nan
    error: str = ""


@dataclass
class Variant:
    name: str
    options: list[str]
    runs: list[Run] = field(default_factory=list)
    budget: int = 0  # pixels trained, all runs together
    changes_data: bool = False


def _config_args(options: list[str]) -> argparse.Namespace:
    """``saicm train OPTIONS`` parsed (argparse prints what is wrong)."""
    from saicm.cli import build_parser
    from saicm.errors import SaicmError

    try:
        return build_parser().parse_args(["train", *options, "-o", "-"])
    except SystemExit:  # argparse said why
        raise SaicmError(f"bad train options: {shlex.join(options)}") from None


def _config(options: list[str]):
    """The validated TrainConfig of ``saicm train OPTIONS`` (as ``cmd_train`` builds it)."""
    from saicm.train import TrainConfig
    from saicm.train.cli import TRAIN_OPTIONS

    args = _config_args(options)
    cfg = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    cfg = cfg.override({k: getattr(args, k) for k in TRAIN_OPTIONS}, source="options")
    cfg.validate()
    return cfg, args


def _pixels(cfg) -> int:
    return cfg.steps * cfg.batch_size * cfg.crop**2


def plan(
    out: Path, base: list[str], variants: list[tuple[str, list[str]]], lmbdas: list[float] | None
) -> list[Variant]:
    """The runs of every variant, with steps set for an equal budget.

    Raises:
        SaicmError: bad options, a repeated name, or a budget that cannot be made equal.
    """
    from saicm.errors import SaicmError
    from saicm.utils.options import safe_name

    base_cfg, _ = _config(base)
    n_base = 1 if base_cfg.variable_rate or not lmbdas else len(lmbdas)
    budget = n_base * _pixels(base_cfg)
    names = [n for n, _ in variants]
    if len(set(names)) != len(names):
        raise SaicmError(f"variant names repeat: {' '.join(names)}")
    plans = []
    for name, options in variants:
        safe_name(name)
        cfg, _ = _config([*base, *options])
        own_steps = _config_args(options).steps
        points = [None] if cfg.variable_rate or not lmbdas else [f"{lm:g}" for lm in lmbdas]
        n = len(points)
        steps = cfg.steps
        per_step = n * cfg.batch_size * cfg.crop**2
        if own_steps is None:
            if budget % per_step:
                raise SaicmError(
                    f"variant {name}: {budget:,} pixels do not split into whole steps of "
                    f"{n} run(s) x batch {cfg.batch_size} x crop {cfg.crop}^2; give --steps"
                )
            steps = budget // per_step
        elif steps * per_step != budget:
            raise SaicmError(
                f"variant {name}: {n} run(s) x {steps} steps x batch {cfg.batch_size} x crop "
                f"{cfg.crop}^2 = {steps * per_step:,} pixels, not the base's {budget:,}"
            )
        v = Variant(name, options, budget=steps * per_step)
        v.changes_data = (cfg.images, cfg.masks, cfg.seed) != (
            base_cfg.images,
            base_cfg.masks,
            base_cfg.seed,
        )
        for lm in points:
            folder = out / (name if lm is None else f"{name}-{lm}")
            argv = [
                *base,
                *options,
                "--steps",
                str(steps),
                *([] if lm is None else ["--lmbda", lm]),
            ]
            run_cfg, _ = _config(argv)
            v.runs.append(Run(name, folder, argv, run_cfg))
        plans.append(v)
    return plans


def _train_argv(run: Run) -> list[str] | None:
    """The ``saicm train`` arguments of a run still to do (None: finished)."""
    if (run.folder / "model.pt").exists():
        return None
    resume = ["--resume"] if (run.folder / "checkpoint.pt").exists() else []
    return ["train", *run.argv, "-o", str(run.folder), *resume]


def _record_time(run: Run, seconds: float) -> None:
    path = run.folder / "train_seconds.json"
    before = json.loads(path.read_text())["seconds"] if path.exists() else 0.0
    if run.folder.is_dir():
        path.write_text(json.dumps({"seconds": before + seconds}))


def _read_time(run: Run) -> float:
    path = run.folder / "train_seconds.json"
    return json.loads(path.read_text())["seconds"] if path.exists() else math.nan


def train_all(runs: list[Run], parallel: bool, threads: int | None, out: Path) -> None:
    """Train every unfinished run, one after another in this process or all at once as
    processes; a failure is recorded on its run (``error``) and the others go on."""
    from saicm.cli import main as saicm_main

    todo = [(r, a) for r in runs if (a := _train_argv(r)) is not None]
    if threads:
        import torch

        torch.set_num_threads(threads)
    if not parallel:
        for run, argv in todo:
            print(f"== {run.folder.name}: saicm {shlex.join(argv)}", flush=True)
            t0 = time.perf_counter()
            if saicm_main(argv) != 0:
                run.error = "saicm train failed (see above)"
            _record_time(run, time.perf_counter() - t0)
        return
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    procs = []
    for run, argv in todo:
        log = out / f"{run.folder.name}.log"
        print(f"== {run.folder.name}: saicm {shlex.join(argv)}  (log: {log})", flush=True)
        f = log.open("a")
        cmd = [sys.executable, "-m", "saicm", *argv]
        proc = subprocess.Popen(cmd, stdout=f, stderr=f, env=env)
        procs.append((run, proc, f, time.perf_counter(), log))
    for run, proc, f, t0, log in procs:
        rc = proc.wait()
        f.close()
        _record_time(run, time.perf_counter() - t0)
        if rc != 0:
            tail = log.read_text().strip().splitlines()[-1:] or ["?"]
            run.error = f"saicm train exited {rc}: {tail[0][:200]}"


def measure(
    model, images: list, masks: list | None, lmbda: float, variable: bool
) -> dict[str, float]:
    """R-D of real files of ``images`` (uint8 arrays) coded with ``model`` at ``lmbda``."""
    import numpy as np

    import saicm

    bits = pixels = 0
    sq = sq_mask = 0.0
    psnrs, psnrs_mask = [], []
    for i, img in enumerate(images):
        data = saicm.encode(img, model, lmbda=lmbda if variable else None)
        out = saicm.decode(data, model)
        err = ((img.astype(np.float64) - out.astype(np.float64)) / 255.0) ** 2  # (H, W, 3)
        h, w = img.shape[:2]
        bits += 8 * len(data)
        pixels += h * w
        sq += float(err.sum()) / 3
        mse = float(err.mean())
        psnrs.append(10 * math.log10(1 / mse) if mse > 0 else math.inf)
        if masks is not None:
            m = masks[i].astype(np.float64)[..., None]
            sq_mask += float((err * m).sum()) / 3
            if m.sum() > 0:
                psnrs_mask.append(-10 * math.log10(float((err * m).sum()) / (3 * m.sum())))
    bpp = bits / pixels
    res = {
        "lmbda": lmbda,
        "bpp": bpp,
        "psnr": float(np.mean(psnrs)),
        "mse": sq / pixels,
        "J": bpp + lmbda * 255**2 * sq / pixels,
    }
    if masks is not None:
        res["psnr_mask"] = float(np.mean(psnrs_mask)) if psnrs_mask else math.nan
        res["J_mask"] = bpp + lmbda * 255**2 * sq_mask / pixels
    return res


def evaluate(
    plans: list[Variant], images: list, masks: list | None, lmbdas: list[float] | None
) -> list[dict[str, Any]]:
    """One row per (variant, lambda) point, plus each variant's BD-rate against the first."""
    from saicm.codec.zoo import load_model
    from saicm.eval.metrics import bd_rate
    from saicm.train.loop import validation_lmbdas

    rows = []
    for v in plans:
        for run in v.runs:
            run.seconds = _read_time(run)
            base = {
                "variant": v.name,
                "options": shlex.join(v.options),
                "run": run.folder.name,
                "steps": run.cfg.steps,
                "budget_gpx": v.budget / 1e9,
                "train_s": run.seconds,
                "changes_data": v.changes_data,
            }
            if run.error or not (run.folder / "model.pt").exists():
                rows.append({**base, "error": run.error or "no model.pt"})
                continue
            model = load_model(run.folder / "model.pt")
            if run.cfg.variable_rate:
                points = lmbdas or validation_lmbdas(*run.cfg.lmbda_range)
            else:
                points = [run.cfg.lmbda]
            for lm in points:
                rows.append({**base, **measure(model, images, masks, lm, run.cfg.variable_rate)})
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for r in rows:
        if "bpp" in r:
            c = curves.setdefault(r["variant"], ([], []))
            c[0].append(r["bpp"])
            c[1].append(r["psnr"])
    anchor = plans[0].name
    for r in rows:
        if anchor in curves and r["variant"] in curves and len(curves[anchor][0]) >= 2:
            value, _why = bd_rate(curves[anchor], curves[r["variant"]])
            r["bd_rate_psnr"] = math.nan if value is None else value
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    cols = [
        ("variant", "{}"),
        ("options", "`{}`"),
        ("steps", "{}"),
        ("budget_gpx", "{:.4g}"),
        ("lmbda", "{:g}"),
        ("bpp", "{:.4f}"),
        ("psnr", "{:.2f}"),
        ("psnr_mask", "{:.2f}"),
        ("J", "{:.4f}"),
        ("J_mask", "{:.4f}"),
        ("bd_rate_psnr", "{:+.1f}%"),
        ("train_s", "{:.0f}"),
    ]
    cols = [(k, f) for k, f in cols if any(k in r for r in rows)]
    lines = [
        "| " + " | ".join(k for k, _ in cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in rows:
        cells = []
        for k, f in cols:
            v = r.get(k)
            if k == "variant" and r.get("changes_data"):
                v = f"{v} (other data or seed)"
            if v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append(r.get("error", "-") if k == "bpp" else "-")
            else:
                cells.append(f.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _lmbdas(text: str) -> list[float]:
    from saicm.utils.options import finite_float

    check = finite_float(0, 1e4, lo_open=True)
    return [check(v) for v in text.split(",")]


def _variant(text: str) -> tuple[str, list[str]]:
    name, sep, options = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:OPTIONS, e.g. ste:'--quant ste'")
    return name, shlex.split(options)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("variants", nargs="+", type=_variant, help="NAME:'saicm train options'")
    ap.add_argument("-o", "--output", required=True, help="folder of the runs and results")
    ap.add_argument("--base", default="", help="saicm train options of every variant")
    ap.add_argument(
        "--lmbdas", type=_lmbdas, default=None, help="comma-separated: one run per lambda"
    )
    ap.add_argument("--val-images", required=True, help="held-out images")
    ap.add_argument("--val-masks", default=None, help="their masks (<stem>.png): masked PSNR, J")
    ap.add_argument("--every", type=int, default=1, help="every n-th held-out image (default 1)")
    ap.add_argument("--parallel", action="store_true", help="all runs at once, as processes")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per run")
    args = ap.parse_args(argv)

    from saicm.errors import SaicmError
    from saicm.image import list_images, load_image
    from saicm.masks.io import read_mask

    out = Path(args.output)
    try:
        plans = plan(out, shlex.split(args.base), args.variants, args.lmbdas)
        files = list_images(args.val_images)[:: max(1, args.every)]
        images = [load_image(p) for p in files]
        masks = None
        if args.val_masks:
            masks = [read_mask(Path(args.val_masks) / f"{p.stem}.png", True) for p in files]
    except SaicmError as exc:
        print(f"train_efficiency: error: {exc}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    runs = [r for v in plans for r in v.runs]
    for v in plans:
        print(f"{v.name}: {len(v.runs)} run(s) of {v.runs[0].cfg.steps} steps, {v.budget:,} px")
    train_all(runs, args.parallel, args.threads, out)
    rows = evaluate(plans, images, masks, args.lmbdas)
    text = table(rows)
    header = (
        f"{len(images)} images of {args.val_images} (every {args.every}), real .sic files; "
        f"base: `{args.base}`\n\n"
    )
    (out / "results.json").write_text(
        json.dumps({"base": args.base, "images": len(images), "rows": rows}, indent=1)
    )
    (out / "results.md").write_text(header + text + "\n")
    print(header + text)
    failed = [r.folder.name for r in runs if r.error]
    if failed:
        print(f"train_efficiency: error: runs failed: {' '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

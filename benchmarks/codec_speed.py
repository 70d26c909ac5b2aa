"""Encode / decode time and peak memory of every registered architecture on a 768x512 photo,
beside CompressAI's own mbt2018-mean in the same run.

    .venv/bin/python benchmarks/codec_speed.py [--repeats 3] [--models tcm tcm-small ...]

Each model runs in a fresh process (so peak memory is its own). Weights are random with
updated CDF tables for every row, so the architectures compare like for like; installed trained
models are added as extra rows. Ratios are against the anchor measured in the same run: these
machines are noisy, ratios much less so.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
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
    res = q.get()
    p.join()
    return res


def main() -> None:
    from saicm.codec import installed_models, list_models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", nargs="*", default=None, help="architectures (default: all)")
    args = ap.parse_args()
    rows = [("anchor", ANCHOR)]
    rows += [("arch", n) for n in (args.models or list_models())]
    rows += [("trained", m["name"]) for m in installed_models()]
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

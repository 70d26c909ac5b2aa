"""Peak memory of decoding a ``.sic`` file, per architecture and image size (issue 14).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/decode_memory.py [--sizes 512 1024 2048]
        [--models sa-icm-mbt-hed-0.05 tcm-small]

Each file is encoded in one process and decoded in a fresh one; the figure is the growth of
the peak resident memory (``ru_maxrss``) over the process after loading the model and reading
the file. Results: docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import resource


def _one(model_name: str, side: int, data: bytes | None, queue) -> None:
    """Encode (``data`` None: put the file's bytes) or decode ``data`` (put the peak growth)."""
    import tempfile

    import numpy as np
    import torch

    import saicm
    from saicm.codec import create_model, export_model, get_architecture, load_model

    torch.set_num_threads(1)
    if model_name in ("tcm", "tcm-small"):  # random weights, the same in both processes
        torch.manual_seed(0)
        path = f"{tempfile.mkdtemp()}/{model_name}.pt"
        cfg = get_architecture(model_name).config
        model = export_model(
            path, create_model(model_name), name=model_name, arch=model_name, config=cfg
        )
    else:
        model = load_model(model_name)
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 40, (side, side, 3)), 0, 255).astype(np.uint8)
    if data is None:
        queue.put(saicm.encode(img, model))
        return
    saicm.decode(saicm.encode(img[:64, :64], model), model)  # warm-up: tables, float64 copy
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    saicm.decode(data, model)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((peak - before) / 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[512, 1024, 2048])
    ap.add_argument("--models", nargs="*", default=["sa-icm-mbt-hed-0.05", "tcm-small"])
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    print("| model | image | decode peak growth MB | bytes per pixel |")
    print("|---|---|---|---|")
    for name in args.models:
        for side in args.sizes:
            data = None
            for _ in range(2):  # encode in one process, decode in a fresh one
                q = ctx.Queue()
                p = ctx.Process(target=_one, args=(name, side, data, q))
                p.start()
                while True:  # its result, or its failure
                    try:
                        data = q.get(timeout=5)
                        break
                    except queue.Empty:
                        if not p.is_alive():
                            raise SystemExit(f"{name} {side}: the child process failed") from None
                p.join()
            mb = data
            print(f"| {name} | {side}x{side} | {mb:.0f} | {mb * 2**20 / side**2:.0f} |", flush=True)


if __name__ == "__main__":
    main()

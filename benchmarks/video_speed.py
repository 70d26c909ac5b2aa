"""Decode speed of the NeRV presets (frames per second) beside HEVC in the same run.

    .venv/bin/python benchmarks/video_speed.py [--size 416x240] [--frames 64] [--batch 8] \
        [--presets S,M,L,saicm-S,saicm-M,saicm-L]

S, M, L are the official NeRV-S/M/L; saicm-S/M/L saicm's earlier presets (saicm.video.nerv).

A ``.snv`` file is decoded the way ``saicm video decode`` does it: parse, dequantise, then run
the network on every frame index in batches. Weights are random (speed does not depend on
them). The anchor is ffmpeg's HEVC decoder on the same frames coded at QP 32, as a ratio:
these machines are noisy, ratios much less so. Target (SA-NeRV issue): size S >= 30 frames/s
at 416x240 on this CPU.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="416x240", help="WxH")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", default="S,M,L,saicm-S,saicm-M,saicm-L")
    args = ap.parse_args()

    import numpy as np
    import torch

    from saicm.video import NeRV, decode_frames, encode_nerv, nerv_config, read_snv
    from saicm.video.evaluate import code_video

    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    from PIL import Image
    from skimage import data

    photo = np.asarray(Image.fromarray(data.astronaut()).resize((w * 2, h * 2)))
    clip = np.stack([photo[i : i + h, 2 * i : 2 * i + w] for i in range(args.frames)])  # a pan
    code_video(clip, "hevc", 32)  # warm-up
    hevc = min(code_video(clip, "hevc", 32)[2] for _ in range(args.repeats))
    hevc_fps = args.frames / hevc
    print(
        f"# {platform.processor() or platform.machine()}, {args.threads} threads, torch "
        f"{torch.__version__}, {args.frames} frames of {w}x{h}"
    )
    print("| decoder | parameters | .snv bytes (8-bit) | parse s | frames/s | ratio to HEVC |")
    print("|---|---|---|---|---|---|")
    print(f"| ffmpeg HEVC (QP 32) | - | - | - | {hevc_fps:.1f} | 1.00 |")
    for size in args.presets.split(","):
        torch.manual_seed(0)
        net = NeRV(nerv_config(h, w, size))
        data = encode_nerv(net, args.frames)
        times, parse = [], []
        for _ in range(args.repeats + 1):
            start = time.perf_counter()
            stream = read_snv(data)
            parse.append(time.perf_counter() - start)
            decode_frames(stream.net, stream.frames, batch=args.batch)
            times.append(time.perf_counter() - start)
        fps = args.frames / statistics.median(times[1:])  # parsing included
        params = sum(p.numel() for p in net.parameters())
        print(
            f"| {size} | {params / 1e6:.2f} M | {len(data):,} | "
            f"{statistics.median(parse[1:]):.2f} | {fps:.1f} | {fps / hevc_fps:.3f} |"
        )


if __name__ == "__main__":
    main()

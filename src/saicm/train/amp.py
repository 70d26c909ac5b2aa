"""Autocast on the CPU: when ``--amp`` makes training slower, say so.

Measured (docs/BENCHMARKS.md, "Training options on the CPU"): on a CPU without native bfloat16
(AVX2 only) a bf16-autocast training step of ``mbt2018-mean-vbr`` takes 15 to 30 times as long as a
float32 one; the issue that asked for bf16 saw 2.1x faster on a CPU with AVX-512 BF16.
"""

from __future__ import annotations

import warnings

import torch

from ..errors import SaicmWarning

__all__ = ["check_amp", "native_bf16"]


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), as ``torch.autocast``
    needs it to be faster than float32 (``torch.cpu`` private probes; False where absent)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, p, lambda: False)()) for p in probes)


def check_amp(amp: str, device: torch.device) -> None:
    """Warn (:class:`~saicm.errors.SaicmWarning`) when ``--amp`` will make training slower.

    ``bf16`` on a CPU without native bfloat16 is emulated: measured 15 to 30 times slower per
    step than float32 on an AVX2 EPYC (``benchmarks/train_speed.py``, docs/BENCHMARKS.md);
    ``fp16`` autocast is for CUDA.
    """
    if device.type != "cpu" or amp == "off":
        return
    if amp == "bf16" and not native_bf16():
        warnings.warn(
            f"--amp bf16: this CPU has no native bfloat16 (AVX-512 BF16 or AMX; PyTorch sees "
            f"{torch.backends.cpu.get_cpu_capability()}), so autocast emulates it, about 15-30x "
            "slower than --amp off (docs/BENCHMARKS.md); use --amp off here",
            SaicmWarning,
            stacklevel=2,
        )
    elif amp == "fp16":
        warnings.warn(
            "--amp fp16 on the CPU: float16 autocast is meant for CUDA; on the CPU it is "
            "emulated and slow; use --amp off (or bf16 on a CPU with AVX-512 BF16)",
            SaicmWarning,
            stacklevel=2,
        )

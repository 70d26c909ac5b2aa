"""SA-NeRV: NeRV video representations trained with SA-ICM's edge term, coded to ``.snv`` files.

``frames`` (clips in and out) -> ``nerv`` (the network) + ``loss`` (nerv, sa-nerv) -> ``train``
(fit, prune, fine-tune) -> ``bitstream`` (quantise, entropy-code, ``.snv``) -> ``evaluate``.
"""

from __future__ import annotations

from ..utils.lazy import lazy_exports

#: public name -> the submodule that defines it (imported on first use: ``saicm video --help``
#: and the parser of every command must not pay for torch)
_WHERE = {
    "VideoStream": "bitstream",
    "decode_frames": "bitstream",
    "encode_nerv": "bitstream",
    "read_snv": "bitstream",
    "Clip": "frames",
    "read_clip": "frames",
    "write_clip": "frames",
    "VideoLoss": "loss",
    "ssim": "loss",
    "NeRV": "nerv",
    "NeRVConfig": "nerv",
    "nerv_config": "nerv",
    "VideoTrainConfig": "train",
    "load_nerv": "train",
    "train_video": "train",
}

__all__ = [
    "Clip",
    "NeRV",
    "NeRVConfig",
    "VideoLoss",
    "VideoStream",
    "VideoTrainConfig",
    "decode_frames",
    "encode_nerv",
    "load_nerv",
    "nerv_config",
    "read_clip",
    "read_snv",
    "ssim",
    "train_video",
    "write_clip",
]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)

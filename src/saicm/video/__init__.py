"""SA-NeRV: NeRV video representations trained with SA-ICM's edge term, coded to ``.snv`` files.

``frames`` (clips in and out) -> ``nerv`` (the network) + ``loss`` (nerv, sa-nerv) -> ``train``
(fit, prune, fine-tune) -> ``bitstream`` (quantise, entropy-code, ``.snv``) -> ``evaluate``.
"""

from .bitstream import VideoStream, decode_frames, encode_nerv, read_snv
from .frames import Clip, read_clip, write_clip
from .loss import VideoLoss, ssim
from .nerv import NeRV, NeRVConfig, nerv_config
from .train import VideoTrainConfig, load_nerv, train_video

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

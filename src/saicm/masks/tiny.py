"""A tiny, randomly initialised Segment Anything model for dry runs of the mask pipeline.

It has SAM's architecture (ViT image encoder, prompt encoder, two-way-transformer mask decoder;
Kirillov et al., "Segment Anything", ICCV 2023) at a 64-pixel input with one block of width 32,
so that everything that runs a real SAM (``saicm masks --source sam``, the batched generator of
:mod:`saicm.masks.amg`, ``docs/scripts/masks_gpu.py --tiny``) runs in a second on a CPU. Its
masks mean nothing: use it to test plumbing, never to make training targets.
"""

from __future__ import annotations

import torch

__all__ = ["build_tiny_sam"]


def build_tiny_sam(seed: int = 0) -> torch.nn.Module:
    """A ``segment_anything.modeling.Sam`` with random weights drawn from ``seed``, in eval mode.

    Arguments:
        seed: the ``torch.manual_seed`` its weights are drawn with (the same seed, the same
            model).

    Returns:
        The model; its image encoder takes ``(B, 3, 64, 64)`` inputs (SAM's pixel mean and
        standard deviation), its image embedding is ``(B, 32, 4, 4)``.
    """
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    torch.manual_seed(seed)
    enc = ImageEncoderViT(
        img_size=64,
        patch_size=16,
        embed_dim=32,
        depth=1,
        num_heads=2,
        mlp_ratio=2.0,
        out_chans=32,
        qkv_bias=True,
        window_size=0,
    )
    pe = PromptEncoder(
        embed_dim=32, image_embedding_size=(4, 4), input_image_size=(64, 64), mask_in_chans=4
    )
    md = MaskDecoder(
        num_multimask_outputs=3,
        transformer_dim=32,
        iou_head_depth=1,
        iou_head_hidden_dim=32,
        transformer=TwoWayTransformer(depth=1, embedding_dim=32, mlp_dim=64, num_heads=2),
    )
    return Sam(
        enc, pe, md, pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]
    ).eval()

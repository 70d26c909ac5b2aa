"""Building blocks of LIC-TCM: window attention, the mixed Transformer-CNN block and SWAtten.

Reference: J. Liu, H. Sun, J. Katto, "Learned Image Compression with Mixed Transformer-CNN
Architectures", CVPR 2023 (arXiv 2303.14978). The Swin-style block follows SCUNet
(Zhang et al., 2022), which LIC-TCM builds on.

Parameter names (``msa.embedding_layer``, ``relative_position_params``, ``conv1_1`` ...) are those
of the authors' released checkpoints, so official LIC-TCM and SA-ICM weights load unchanged.
"""

from __future__ import annotations

from .. import _compressai  # noqa: F401  (before CompressAI: see saicm._compressai)

# isort: split

import torch
import torch.nn.functional as F
from compressai.layers import AttentionBlock, ResidualBlock
from torch import Tensor, nn

__all__ = ["ConvTransBlock", "SWAtten", "SwinBlock", "TransformerBlock", "WindowAttention"]


def _relative_position_index(window: int) -> Tensor:
    """Index into a (2w-1, 2w-1) table for every pair of positions in a w x w window."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ).flatten(1)  # (2, w*w)
    rel = coords[:, :, None] - coords[:, None, :] + window - 1  # (2, w*w, w*w)
    return rel[0] * (2 * window - 1) + rel[1]


def _shift_mask(h_windows: int, w_windows: int, window: int) -> Tensor:
    """Boolean mask (True = blocked) for shifted windows after a cyclic roll by window // 2.

    Only the last row and column of windows mix pixels that were not neighbours before the
    roll; within them, the two halves must not attend to each other.
    """
    p, s = window, window - window // 2
    mask = torch.zeros(h_windows, w_windows, p, p, p, p, dtype=torch.bool)
    mask[-1, :, :s, :, s:, :] = True
    mask[-1, :, s:, :, :s, :] = True
    mask[:, -1, :, :s, :, s:] = True
    mask[:, -1, :, s:, :, :s] = True
    return mask.reshape(h_windows * w_windows, p * p, p * p)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping (``W``) or shifted (``SW``) windows.

    Arguments:
        dim: channels of the input and output.
        head_dim: channels per head (``dim // head_dim`` heads).
        window: side of the square window.
        shifted: roll the map by ``window // 2`` first (Swin's shifted windows).

    Works on channels-last maps ``(B, H, W, C)`` of any size: the map is zero-padded to a multiple
    of the window at the bottom and right, and cropped back.
    """

    def __init__(self, dim: int, head_dim: int, window: int, shifted: bool) -> None:
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"dim {dim} is not a multiple of head_dim {head_dim}")
        self.dim = dim
        self.head_dim = head_dim
        self.n_heads = dim // head_dim
        self.window = window
        self.shifted = shifted
        self.embedding_layer = nn.Linear(dim, 3 * dim)
        # Stored as (heads, 2w-1, 2w-1), the layout of the released checkpoints.
        self.relative_position_params = nn.Parameter(
            torch.zeros(self.n_heads, 2 * window - 1, 2 * window - 1)
        )
        nn.init.trunc_normal_(self.relative_position_params, std=0.02)
        self.linear = nn.Linear(dim, dim)
        self.register_buffer("_rel_index", _relative_position_index(window), persistent=False)

    def _bias(self, h_windows: int, w_windows: int, dtype: torch.dtype) -> Tensor:
        table = self.relative_position_params.flatten(1)  # (heads, (2w-1)^2)
        bias = table[:, self._rel_index].to(dtype)  # (heads, w*w, w*w)
        bias = bias.unsqueeze(1)  # (heads, 1, P, P): same for every window
        if self.shifted:
            blocked = _shift_mask(h_windows, w_windows, self.window).to(bias.device)
            bias = bias.masked_fill(blocked.unsqueeze(0), float("-inf"))
        return bias.unsqueeze(0)  # (1, heads, nW or 1, P, P)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        p = self.window
        pad_h, pad_w = (-h) % p, (-w) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        if self.shifted:
            x = torch.roll(x, shifts=(-(p // 2), -(p // 2)), dims=(1, 2))
        hw, ww = hp // p, wp // p
        # (B, H, W, C) -> (B, nW, P, C) with windows in raster order.
        windows = x.reshape(b, hw, p, ww, p, c).permute(0, 1, 3, 2, 4, 5)
        windows = windows.reshape(b, hw * ww, p * p, c)
        qkv = self.embedding_layer(windows)
        # Released weights order the projection as [q heads | k heads | v heads].
        qkv = qkv.reshape(b, hw * ww, p * p, 3 * self.n_heads, self.head_dim)
        qkv = qkv.permute(3, 0, 1, 2, 4)  # (3*heads, B, nW, P, d)
        q, k, v = qkv.chunk(3, dim=0)  # each (heads, B, nW, P, d)
        q, k, v = (t.permute(1, 0, 2, 3, 4) for t in (q, k, v))  # (B, heads, nW, P, d)
        bias = self._bias(hw, ww, q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.permute(0, 2, 3, 1, 4).reshape(b, hw * ww, p * p, c)
        out = self.linear(out)
        out = out.reshape(b, hw, ww, p, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        if self.shifted:
            out = torch.roll(out, shifts=(p // 2, p // 2), dims=(1, 2))
        if pad_h or pad_w:
            out = out[:, :h, :w, :]
        return out


class TransformerBlock(nn.Module):
    """Pre-norm Swin block: ``x + MSA(LN(x))`` then ``x + MLP(LN(x))`` on ``(B, H, W, C)``.

    Arguments:
        dim: channels.
        head_dim: channels per attention head.
        window: window side.
        shifted: shifted windows (``SW``) instead of plain ones (``W``).
    """

    def __init__(self, dim: int, head_dim: int, window: int, shifted: bool) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.msa = WindowAttention(dim, head_dim, window, shifted)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.msa(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ConvTransBlock(nn.Module):
    """LIC-TCM's mixed block: a 1x1 conv splits channels between a residual CNN branch (local
    detail) and a Swin branch (non-local context); a second 1x1 conv fuses them, plus a skip.

    Arguments:
        conv_dim: channels of the CNN branch.
        trans_dim: channels of the transformer branch.
        head_dim: channels per attention head.
        window: window side.
        shifted: shifted windows in the transformer branch.
    """

    def __init__(
        self, conv_dim: int, trans_dim: int, head_dim: int, window: int, shifted: bool
    ) -> None:
        super().__init__()
        self.conv_dim = conv_dim
        self.trans_dim = trans_dim
        self.trans_block = TransformerBlock(trans_dim, head_dim, window, shifted)
        self.conv1_1 = nn.Conv2d(conv_dim + trans_dim, conv_dim + trans_dim, 1)
        self.conv1_2 = nn.Conv2d(conv_dim + trans_dim, conv_dim + trans_dim, 1)
        self.conv_block = ResidualBlock(conv_dim, conv_dim)

    def forward(self, x: Tensor) -> Tensor:
        conv_x, trans_x = torch.split(self.conv1_1(x), (self.conv_dim, self.trans_dim), dim=1)
        conv_x = self.conv_block(conv_x) + conv_x
        trans_x = self.trans_block(trans_x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.conv1_2(torch.cat((conv_x, trans_x), dim=1))


class SwinBlock(nn.Module):
    """A ``W`` block followed by an ``SW`` block, on channels-first maps ``(B, C, H, W)``."""

    def __init__(self, dim: int, head_dim: int, window: int) -> None:
        super().__init__()
        self.block_1 = TransformerBlock(dim, head_dim, window, shifted=False)
        self.block_2 = TransformerBlock(dim, head_dim, window, shifted=True)

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        return self.block_2(self.block_1(x)).permute(0, 3, 1, 2)


class SWAtten(AttentionBlock):
    """Swin-transformer attention module (SWAtten) of LIC-TCM's channel-wise entropy model.

    CompressAI's attention block whose non-local branch is a Swin block, wrapped in 1x1
    convolutions that bring ``in_dim`` channels down to ``inter_dim`` and back to ``out_dim``.

    Arguments:
        in_dim: input channels (hyper-prior features + already decoded slices).
        out_dim: output channels.
        head_dim: channels per attention head.
        window: window side.
        inter_dim: working width of the attention block.
    """

    def __init__(self, in_dim: int, out_dim: int, head_dim: int, window: int, inter_dim: int):
        super().__init__(N=inter_dim)
        self.non_local_block = SwinBlock(inter_dim, head_dim, window)
        self.in_conv = nn.Conv2d(in_dim, inter_dim, 1)
        self.out_conv = nn.Conv2d(inter_dim, out_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.in_conv(x)
        a = self.conv_a(x)
        b = self.conv_b(self.non_local_block(x))
        return self.out_conv(a * torch.sigmoid(b) + x)

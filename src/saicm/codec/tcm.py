"""LIC-TCM: learned image compression with mixed Transformer-CNN blocks.

J. Liu, H. Sun, J. Katto, "Learned Image Compression with Mixed Transformer-CNN Architectures",
CVPR 2023 (arXiv 2303.14978). SA-ICM (Shindo et al., ICIP 2024) trains this network with its
edge-masked loss; ``TCM()`` with default arguments is the paper's N=128, M=320 model and has the
same 76.57 M parameters and parameter names as the authors' release.
"""

from __future__ import annotations

from .. import _compressai  # noqa: F401  (before CompressAI: see saicm._compressai)

# isort: split

import copy
from collections.abc import Callable, Sequence

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import (
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    conv3x3,
    subpel_conv3x3,
)
from compressai.models import CompressionModel
from compressai.models.utils import conv
from torch import Tensor, nn

from .layers import ConvTransBlock, SWAtten

__all__ = ["TCM"]


def ste_round(x: Tensor) -> Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return torch.round(x) - x.detach() + x


def _stage(n: int, depth: int, head_dim: int, window: int, last: nn.Module) -> list[nn.Module]:
    """``depth`` ConvTransBlocks alternating W / SW windows, then a resampling layer."""
    blocks: list[nn.Module] = [
        ConvTransBlock(n, n, head_dim, window, shifted=bool(i % 2)) for i in range(depth)
    ]
    return [*blocks, last]


class TCM(CompressionModel):
    """LIC-TCM with a channel-wise (slice) autoregressive entropy model, SWAtten and latent
    residual prediction (LRP).

    Arguments:
        N: channels of each branch of the ConvTransBlocks (the analysis runs at 2N).
        M: channels of the latent ``y``.
        Z: channels of the hyper-latent ``z``.
        config: ConvTransBlocks per stage (3 analysis stages, then 3 synthesis stages).
        head_dim: attention head width per stage.
        window: attention window of the main transforms.
        num_slices: channel slices of ``y`` coded one after the other.
        max_support_slices: how many earlier slices condition each slice.
        hyper_head_dim, hyper_window: attention of the hyper transforms.
        atten_dim: working width of SWAtten.
        atten_head_dim: attention head width of SWAtten.
        cc_dims: hidden widths of the mean, scale and LRP heads of each slice.
    """

    #: Image sides must be a multiple of this (the codec pads and crops around it).
    downsampling: int = 64

    def __init__(
        self,
        N: int = 128,
        M: int = 320,
        Z: int = 192,
        config: Sequence[int] = (2, 2, 2, 2, 2, 2),
        head_dim: Sequence[int] = (8, 16, 32, 32, 16, 8),
        window: int = 8,
        num_slices: int = 5,
        max_support_slices: int = 5,
        hyper_head_dim: int = 32,
        hyper_window: int = 4,
        atten_dim: int = 128,
        atten_head_dim: int = 16,
        cc_dims: Sequence[int] = (224, 128),
    ) -> None:
        super().__init__()
        if M % num_slices:
            raise ValueError(f"M={M} is not divisible by num_slices={num_slices}")
        self.N, self.M, self.Z = N, M, Z
        self.num_slices = num_slices
        self.max_support_slices = max_support_slices
        c = 2 * N

        self.g_a = nn.Sequential(
            ResidualBlockWithStride(3, c, 2),
            *_stage(N, config[0], head_dim[0], window, ResidualBlockWithStride(c, c, stride=2)),
            *_stage(N, config[1], head_dim[1], window, ResidualBlockWithStride(c, c, stride=2)),
            *_stage(N, config[2], head_dim[2], window, conv3x3(c, M, stride=2)),
        )
        self.g_s = nn.Sequential(
            ResidualBlockUpsample(M, c, 2),
            *_stage(N, config[3], head_dim[3], window, ResidualBlockUpsample(c, c, 2)),
            *_stage(N, config[4], head_dim[4], window, ResidualBlockUpsample(c, c, 2)),
            *_stage(N, config[5], head_dim[5], window, subpel_conv3x3(c, 3, 2)),
        )
        self.h_a = nn.Sequential(
            ResidualBlockWithStride(M, c, 2),
            *_stage(N, config[0], hyper_head_dim, hyper_window, conv3x3(c, Z, stride=2)),
        )
        self.h_mean_s = nn.Sequential(
            ResidualBlockUpsample(Z, c, 2),
            *_stage(N, config[3], hyper_head_dim, hyper_window, subpel_conv3x3(c, M, 2)),
        )
        self.h_scale_s = nn.Sequential(
            ResidualBlockUpsample(Z, c, 2),
            *_stage(N, config[3], hyper_head_dim, hyper_window, subpel_conv3x3(c, M, 2)),
        )

        s = M // num_slices

        def support(i: int) -> int:
            return M + s * min(i, max_support_slices)

        def head(in_ch: int) -> nn.Sequential:
            return nn.Sequential(
                conv(in_ch, cc_dims[0], stride=1, kernel_size=3),
                nn.GELU(),
                conv(cc_dims[0], cc_dims[1], stride=1, kernel_size=3),
                nn.GELU(),
                conv(cc_dims[1], s, stride=1, kernel_size=3),
            )

        def atten(i: int) -> nn.Sequential:
            return nn.Sequential(SWAtten(support(i), support(i), atten_head_dim, window, atten_dim))

        self.atten_mean = nn.ModuleList(atten(i) for i in range(num_slices))
        self.atten_scale = nn.ModuleList(atten(i) for i in range(num_slices))
        self.cc_mean_transforms = nn.ModuleList(head(support(i)) for i in range(num_slices))
        self.cc_scale_transforms = nn.ModuleList(head(support(i)) for i in range(num_slices))
        self.lrp_transforms = nn.ModuleList(
            head(M + s * min(i + 1, max_support_slices + 1)) for i in range(num_slices)
        )
        self.entropy_bottleneck = EntropyBottleneck(Z)
        self.gaussian_conditional = GaussianConditional(None)

    # -- the slice loop shared by forward, compress and decompress --------------------------
    def _slice_params(
        self, i: int, done: list[Tensor], means: Tensor, scales: Tensor, size: torch.Size
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Mean and scale of slice ``i`` given the decoded earlier slices."""
        support = done if self.max_support_slices < 0 else done[: self.max_support_slices]
        mean_support = self.atten_mean[i](torch.cat([means, *support], dim=1))
        mu = self.cc_mean_transforms[i](mean_support)[:, :, : size[0], : size[1]]
        scale_support = self.atten_scale[i](torch.cat([scales, *support], dim=1))
        scale = self.cc_scale_transforms[i](scale_support)[:, :, : size[0], : size[1]]
        return mu, scale, mean_support

    def _refine(self, i: int, mean_support: Tensor, y_hat_slice: Tensor) -> Tensor:
        """Latent residual prediction: recover part of the quantisation error."""
        lrp = self.lrp_transforms[i](torch.cat([mean_support, y_hat_slice], dim=1))
        return y_hat_slice + 0.5 * torch.tanh(lrp)

    # -- the entropy-parameter structure (saicm.codec.entropy_params) ----------------------
    #: What computes the entropy parameters: the hyper-synthesis pair, then per slice SWAtten,
    #: the channel-conditional transforms and the LRP that feeds later slices.
    entropy_modules: tuple[str, ...] = (
        "h_mean_s",
        "h_scale_s",
        "atten_mean",
        "atten_scale",
        "cc_mean_transforms",
        "cc_scale_transforms",
        "lrp_transforms",
    )

    def entropy_param_module(self) -> nn.Module:
        """A view of the network holding only :attr:`entropy_modules` (shared, not copied),
        with its methods (``_slice_params``, ``_refine``)."""
        view = copy.copy(self)
        view._parameters, view._buffers = {}, {}
        view._modules = {k: self._modules[k] for k in self.entropy_modules}
        return view

    def hyper_analysis(self, y: Tensor) -> Tensor:
        return self.h_a(y)

    def y_slices(self, y: Tensor) -> Sequence[Tensor]:
        return y.chunk(self.num_slices, 1)

    def code_y(
        self,
        p: nn.Module,
        z_hat: Tensor,
        size: Sequence[int],
        code: Callable[[Tensor, Tensor], Tensor],
    ) -> Tensor:
        """Slice by slice, with ``p`` (a copy or view of :meth:`entropy_param_module`): each
        slice's parameters from ``z_hat`` and the slices before it (refined by the LRP),
        ``code(scale, mu)`` its reconstruction."""
        scales0 = p.h_scale_s(z_hat)
        means0 = p.h_mean_s(z_hat)
        done: list[Tensor] = []
        for i in range(self.num_slices):
            mu, scale, support = p._slice_params(i, done, means0, scales0, size)
            done.append(p._refine(i, support, code(scale, mu)))
        return torch.cat(done, dim=1)

    def forward(self, x: Tensor) -> dict[str, object]:
        y = self.g_a(x)
        z = self.h_a(y)
        _, z_likelihoods = self.entropy_bottleneck(z)
        z_offset = self.entropy_bottleneck._get_medians()
        z_hat = ste_round(z - z_offset) + z_offset
        latent_scales = self.h_scale_s(z_hat)
        latent_means = self.h_mean_s(z_hat)

        done: list[Tensor] = []
        likelihoods = []
        for i, y_slice in enumerate(y.chunk(self.num_slices, 1)):
            mu, scale, mean_support = self._slice_params(
                i, done, latent_means, latent_scales, y.shape[2:]
            )
            _, lik = self.gaussian_conditional(y_slice, scale, mu)
            likelihoods.append(lik)
            done.append(self._refine(i, mean_support, ste_round(y_slice - mu) + mu))
        x_hat = self.g_s(torch.cat(done, dim=1))
        return {
            "x_hat": x_hat,
            "likelihoods": {"y": torch.cat(likelihoods, dim=1), "z": z_likelihoods},
        }

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict[str, object]:
        """Code one image ``(1, 3, H, W)`` (sides a multiple of 64) with saicm's checked coding
        (:func:`saicm.codec.latents.encode_latents`: float64 entropy parameters, signalled
        near-boundary indexes, escape-free rANS). Returns ``strings`` (``[[z], [y]]``),
        ``shape`` (of ``z``) and ``checks`` (what :meth:`decompress` verifies)."""
        from .latents import encode_latents

        if x.size(0) != 1:
            raise ValueError("TCM.compress codes one image at a time")
        coded = encode_latents(self, x)
        return {
            "strings": [[s] for s in coded.strings],
            "shape": coded.latent_shape,
            "checks": coded.checks,
        }

    @torch.no_grad()
    def decompress(
        self, strings: list[list[bytes]], shape: Sequence[int], checks=None
    ) -> dict[str, Tensor]:
        """Decode what :meth:`compress` returned (``checks`` given), or with ``checks=None`` the
        strings ``[[y], [z]]`` of CompressAI-style coding (float32, unchecked, decoded in an
        isolated process, with a warning). Raises :class:`~saicm.errors.BitstreamError` when a
        check fails or a stream is damaged."""
        from .latents import decode_latents

        y_hat = decode_latents(self, tuple(s[0] for s in strings), tuple(shape), checks)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1)}

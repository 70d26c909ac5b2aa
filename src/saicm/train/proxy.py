"""Quantisation proxies: what stands in for rounding in a training forward pass.

Rounding has no useful gradient, so training replaces it by a differentiable proxy. Three are in
use, differing in what the rate term (the likelihoods) and the decoder (``x_hat``) see:

- ``noise``: additive uniform noise ``U(-1/2, 1/2)`` on ``y`` and ``z``, for both the likelihoods
  and ``x_hat`` (Balle, Laparra, Simoncelli, "End-to-end Optimized Image Compression", ICLR 2017;
  Balle et al., "Variational image compression with a scale hyperprior", ICLR 2018). CompressAI's
  default forward pass, and what every ``mbt2018-mean`` run of saicm did before this setting.
- ``ste``: straight-through rounding (value rounded, gradient of the identity) of ``y - mu``, for
  ``x_hat`` and for the rate (the likelihood of the rounded value): what the decoder sees is what
  it will see at test time, but the rate term loses the smoothing of the noise.
- ``mixed``: noise for the likelihoods, straight-through rounding around the mean for ``x_hat``
  (Minnen and Singh, "Channel-wise Autoregressive Entropy Models for Learned Image
  Compression", ICIP 2020, Sec. 2.2; the practice of LIC-TCM and of CompressAI's variable-rate
  model).

``z`` keeps the entropy bottleneck's noise for its rate in all three; the ``z_hat`` that feeds the
hyper-synthesis ``h_s`` is the noisy ``z`` in ``noise`` and ``z`` rounded (straight-through)
around the bottleneck's medians in ``ste`` and ``mixed`` (as the test-time coder rounds it).

Which architectures take which proxy (:data:`NATIVE_QUANT`): ``mbt2018-mean`` (CompressAI's
``MeanScaleHyperprior``) takes any of the three through :func:`forward_with_proxy`; ``tcm``,
``tcm-small`` and ``mbt2018-mean-vbr`` implement ``mixed`` in their own forward pass
(:meth:`saicm.codec.tcm.TCM.forward`: noisy likelihoods, ``ste_round`` of ``z - median`` and of
``y - mu``; :meth:`saicm.codec.vbr.VariableRateMeanScale.forward`: noisy likelihoods of
``gain * y``, straight-through rounding with reconstruction offsets for ``x_hat``), so they take
``mixed`` only.
"""

from __future__ import annotations

from .. import _compressai  # noqa: F401  (before CompressAI: see saicm._compressai)

# isort: split
from compressai.models import MeanScaleHyperprior
from torch import Tensor, nn

from ..codec.tcm import ste_round
from ..codec.vbr import is_variable_rate
from ..errors import SaicmError

__all__ = [
    "NATIVE_QUANT",
    "QUANTS",
    "TrainingForward",
    "check_quant",
    "forward_with_proxy",
]

QUANTS = ("noise", "ste", "mixed")

#: The proxy of each architecture's own forward pass. Those whose value is ``noise`` take any
#: of :data:`QUANTS` (:func:`forward_with_proxy`); the others only their own.
NATIVE_QUANT = {
    "mbt2018-mean": "noise",
    "mbt2018-mean-vbr": "mixed",
    "tcm": "mixed",
    "tcm-small": "mixed",
}


def check_quant(arch: str, quant: str | None) -> str | None:
    """The proxy a run of ``arch`` trains with: ``quant``, or the architecture's own when None.

    Returns None for an architecture outside :data:`NATIVE_QUANT` given no ``quant`` (its own
    forward pass, whatever it is).

    Raises:
        SaicmError: ``quant`` is not one of :data:`QUANTS`, or not one ``arch`` can train with.
    """
    if quant is not None and quant not in QUANTS:
        raise SaicmError(f"quant {quant!r}: choose from {', '.join(QUANTS)}")
    native = NATIVE_QUANT.get(arch)
    if quant is None or quant == native:
        return native
    if native == "noise":
        return quant
    if native is None:
        raise SaicmError(f"quant {quant}: {arch} trains with its own forward pass; drop --quant")
    raise SaicmError(
        f"quant {quant}: {arch}'s forward pass is the {native} proxy (noisy likelihoods, "
        f"straight-through rounding for x_hat); use --quant {native} or drop --quant"
    )


def forward_with_proxy(net: nn.Module, x: Tensor, quant: str) -> dict:
    """The training forward pass of a mean-scale hyperprior with the proxy ``quant``.

    Arguments:
        net: CompressAI's ``MeanScaleHyperprior`` (``mbt2018-mean``), in training mode.
        x: images ``(B, 3, H, W)`` in [0, 1], sides a multiple of 64.
        quant: ``noise``, ``ste`` or ``mixed`` (see the module docstring).

    Returns:
        ``{"x_hat": (B, 3, H, W), "likelihoods": {"y": (B, M, H/16, W/16),
        "z": (B, N, H/64, W/64)}}``, as the network's own forward pass.

    ``noise`` is exactly ``net(x)`` (same operations, same random draws). ``ste`` and ``mixed``
    draw the same noise for ``z`` (and, in ``mixed``, for ``y``) in the same order.

    Raises:
        SaicmError: ``net`` is not a plain mean-scale hyperprior, or ``quant`` is unknown.
    """
    if not isinstance(net, MeanScaleHyperprior) or is_variable_rate(net):
        raise SaicmError(
            f"a quantisation proxy is chosen for mbt2018-mean only, not {type(net).__name__}"
        )
    if quant == "noise":
        return net(x)
    if quant not in QUANTS:
        raise SaicmError(f"quant {quant!r}: choose from {', '.join(QUANTS)}")
    y = net.g_a(x)
    z = net.h_a(y)
    _, z_likelihoods = net.entropy_bottleneck(z)  # noise: the rate of z in every proxy
    medians = net.entropy_bottleneck._get_medians().detach()  # (C, 1, 1)
    z_hat = ste_round(z - medians) + medians
    scales_hat, means_hat = net.h_s(z_hat).chunk(2, 1)
    y_hat = ste_round(y - means_hat) + means_hat
    gc = net.gaussian_conditional
    if quant == "mixed":
        _, y_likelihoods = gc(y, scales_hat, means=means_hat)  # noisy y for the rate
    else:
        y_likelihoods = gc._likelihood(y_hat, scales_hat, means_hat)
        if gc.use_likelihood_bound:
            y_likelihoods = gc.likelihood_lower_bound(y_likelihoods)
    return {"x_hat": net.g_s(y_hat), "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}


class TrainingForward(nn.Module):
    """The training forward pass of a run, as one module (what DistributedDataParallel wraps):
    ``net(x, lmbda=lmbda)`` for a variable-rate network, :func:`forward_with_proxy` for
    ``mbt2018-mean``, the network's own forward pass otherwise.

    Arguments:
        net: the network being trained.
        quant: the run's proxy (:func:`check_quant`), or None for the network's own.
    """

    def __init__(self, net: nn.Module, quant: str | None) -> None:
        super().__init__()
        self.net = net
        self.quant = quant
        self.choosable = isinstance(net, MeanScaleHyperprior) and not is_variable_rate(net)

    def forward(self, x: Tensor, lmbda: float | None = None) -> dict:
        """``x``: ``(B, 3, H, W)`` in [0, 1]; ``lmbda``: the step's lambda (variable rate only)."""
        if is_variable_rate(self.net):
            return self.net(x, lmbda=lmbda)
        if self.choosable and self.quant is not None:
            return forward_with_proxy(self.net, x, self.quant)
        return self.net(x)

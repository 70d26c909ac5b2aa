"""The settings of a learned codec in ``saicm eval``: ``MODEL``, ``MODEL@LAMBDA`` (a
variable-rate model's rate), a bare number (the model before it), a family name (all the
installed ``NAME-<lambda>`` models), a variable-rate model alone (:data:`VBR_POINTS` rates).
"""

from __future__ import annotations

from ..errors import SaicmError

__all__ = [
    "VBR_POINTS",
    "CodecSettingError",
    "expand_rates",
    "model_family",
    "rate_gain_of",
    "split_setting",
]


class CodecSettingError(SaicmError):
    """A setting out of a codec's range (a hard error: the command stops before any work)."""


#: Points of the curve a variable-rate model named alone in ``saicm eval`` stands for.
VBR_POINTS = 6


def split_setting(setting: str) -> tuple[str, float | None]:
    """``MODEL@LAMBDA`` -> ``(MODEL, LAMBDA)``; ``MODEL`` -> ``(MODEL, None)``.

    Raises:
        CodecSettingError: a lambda that is not a finite number above 0.
    """
    from ..utils.options import OptionError, finite_float

    model, at, rate = setting.rpartition("@")
    if not at:
        return setting, None
    try:
        return model, finite_float(0, 10_000, lo_open=True)(rate)
    except OptionError as exc:
        raise CodecSettingError(f"codec saicm: setting {setting!r}: lambda {exc}") from None


def rate_gain_of(model, lmbda: float | None) -> float | None:
    """:func:`saicm.codec.api.rate_gain` for a setting: a variable-rate model named without a
    lambda is an error here (each setting is one point)."""
    from ..codec.api import rate_gain
    from ..codec.vbr import is_variable_rate

    if lmbda is None and is_variable_rate(model.net):
        lo, hi = model.net.rate_range
        raise SaicmError(
            f"{model.name} is a variable-rate model: name a setting as {model.name}@LAMBDA "
            f"(LAMBDA in {lo:.6g}..{hi:.6g})"
        )
    return rate_gain(model, lmbda)


def model_family(name: str) -> list[str]:
    """The installed models named ``NAME-<number>`` (``mse-mbt`` -> ``mse-mbt-0.0018``, ...,
    ``mse-mbt-0.013``), in the order of their number (their lambda); empty if none."""
    from ..codec.installed import installed_models

    found = []
    for m in installed_models():
        stem, dash, tail = m["name"].rpartition("-")
        if dash and stem == name:
            try:
                found.append((float(tail), m["name"]))
            except ValueError:
                continue
    return [n for _, n in sorted(found)]


def expand_rates(settings: list[str]) -> list[str]:
    """Bare numbers take the model of the setting before them; a variable-rate model named
    alone becomes :data:`VBR_POINTS` settings over its range. A setting that does not load is
    kept as it is (``available`` says why)."""
    import math

    from ..codec import load_model
    from ..codec.vbr import is_variable_rate
    from ..utils.options import OptionError, finite_float

    out: list[str] = []
    last_model: str | None = None
    for s in settings:
        try:
            finite_float(0, 10_000, lo_open=True)(s)
            number = True
        except OptionError:
            number = False
        if number and last_model is not None:
            out.append(f"{last_model}@{s}")
            continue
        model, lmbda = split_setting(s)
        last_model = model if lmbda is not None else None
        if lmbda is None:
            try:
                m = load_model(model)
            except SaicmError:
                family = model_family(model) if "/" not in model else []
                out += family or [s]  # a family: all its rates; else available() says why
                continue
            if is_variable_rate(m.net):
                lo, hi = m.net.rate_range
                step = (math.log(hi) - math.log(lo)) / (VBR_POINTS - 1)
                pts = [math.exp(math.log(lo) + i * step) for i in range(VBR_POINTS)]
                pts[0], pts[-1] = lo, hi
                out += [f"{model}@{v:.6g}" for v in pts]
                last_model = model
                continue
        out.append(s)
    return out

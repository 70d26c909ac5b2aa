"""Codecs under evaluation: our learned models and the conventional anchors.

Every codec codes an RGB image at one *setting* (a quality, a QP, a model) into a real file and
decodes it back; the rate is the size of that file. Conventional codecs run through Pillow or the
ffmpeg bundled with ``imageio-ffmpeg`` (libx265 for HEVC intra, libvvenc + the native decoder for
VVC intra, libjxl for JPEG XL).

A codec is named by a spec: ``NAME`` (its default settings) or ``NAME:S1,S2,...``, e.g.
``jpeg:10,30,50``, ``vvc:37,42,47``, ``saicm:sa-icm-mbt-hed-0.05,models/other.pt``.
"""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SaicmError
from .model_settings import (
    VBR_POINTS,
    CodecSettingError,
    expand_rates,
    model_family,
    rate_gain_of,
    split_setting,
)

__all__ = [
    "CODECS",
    "VBR_POINTS",
    "Codec",
    "CodecSettingError",
    "Coded",
    "ffmpeg_exe",
    "model_family",
    "parse_codec",
]


@dataclass
class Coded:
    """One image through one codec setting."""

    decoded: np.ndarray
    nbytes: int
    encode_s: float
    decode_s: float


class Codec:
    """Base class: ``settings`` are strings (qualities, QPs or model names)."""

    name: str = ""
    default_settings: tuple[str, ...] = ()
    #: the codec's own name when ``name`` is a label (``LABEL=SPEC``); see :attr:`coder_name`
    coder: str = ""

    def __init__(self, settings: list[str] | None = None) -> None:
        self.settings = list(settings or self.default_settings)
        if not self.settings:
            raise SaicmError(f"codec {self.name}: give settings, e.g. {self.name}:A,B,C")
        check = SETTING_CHECKS.get(self.name)
        if check is not None:
            from ..utils.options import OptionError

            for i, setting in enumerate(self.settings):
                try:
                    check(setting)
                except OptionError as exc:
                    raise CodecSettingError(f"codec {self.name}: setting {exc}") from None
                self.settings[i] = setting.strip()

    @property
    def coder_name(self) -> str:
        """The coder's own name (``jpeg``, ``saicm``), whatever label its curve carries: cached
        cells are filed under it, so that a relabelled codec reuses them."""
        return self.coder or self.name

    def available(self) -> str | None:
        """None if the codec can run here, else why not."""
        return None

    def cache_key(self, setting: str) -> str:
        """The folder name of this setting's cached results (readable; :meth:`fingerprint`, not
        this name, decides whether a cached result is still valid)."""
        return setting

    def fingerprint(self, setting: str) -> dict[str, str]:
        """Everything that determines this setting's decoded images and file sizes: the coder,
        its parameters, and the version of the library that runs it. Part of every cached cell's
        key (docs/EVALUATION.md)."""
        return {"coder": type(self).__name__, "setting": setting}

    def code(self, image: np.ndarray, setting: str) -> Coded:
        raise NotImplementedError


class PillowCodec(Codec):
    """JPEG, WebP, AVIF or JPEG 2000 through Pillow, at ``quality`` settings."""

    def __init__(self, name: str, fmt: str, defaults: tuple[str, ...], settings=None) -> None:
        self.name, self.fmt, self.default_settings = name, fmt, defaults
        super().__init__(settings)

    def available(self) -> str | None:
        from PIL import features

        feature = {"WEBP": "webp", "AVIF": "avif", "JPEG2000": "jpg_2000", "JPEG": "jpg"}[self.fmt]
        return None if features.check(feature) else f"this Pillow has no {self.fmt} support"

    def fingerprint(self, setting: str) -> dict[str, str]:
        import PIL
        from PIL import features

        feature = {"WEBP": "webp", "AVIF": "avif", "JPEG2000": "jpg_2000", "JPEG": "jpg"}[self.fmt]
        return {
            **super().fingerprint(setting),
            "format": self.fmt,
            "pillow": PIL.__version__,
            "library": str(features.version(feature)),
        }

    def code(self, image: np.ndarray, setting: str) -> Coded:
        q = int(setting)
        buf = io.BytesIO()
        t = time.perf_counter()
        kwargs = (
            {"quality_mode": "rates", "quality_layers": [q]}
            if self.fmt == "JPEG2000"
            else {"quality": q}
        )
        Image.fromarray(image).save(buf, format=self.fmt, **kwargs)
        t_enc = time.perf_counter() - t
        data = buf.getvalue()
        t = time.perf_counter()
        with Image.open(io.BytesIO(data)) as img:
            decoded = np.array(img.convert("RGB"))
        return Coded(decoded, len(data), t_enc, time.perf_counter() - t)


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        raise SaicmError(
            "the ffmpeg codecs need imageio-ffmpeg (pip install imageio-ffmpeg)"
        ) from None


class FfmpegCodec(Codec):
    """An intra-only video codec (or JPEG XL) through the bundled ffmpeg.

    The raw bitstream (no container) is the file whose size counts.
    """

    def __init__(
        self,
        name: str,
        encoder: str,
        fmt: str,
        suffix: str,
        pix_fmt: str,
        param: str,
        defaults: tuple[str, ...],
        extra: tuple[str, ...] = (),
        settings=None,
    ) -> None:
        self.name, self.encoder, self.fmt, self.suffix = name, encoder, fmt, suffix
        self.pix_fmt, self.param, self.extra = pix_fmt, param, extra
        self.default_settings = defaults
        super().__init__(settings)

    def available(self) -> str | None:
        try:
            exe = ffmpeg_exe()
        except SaicmError as exc:
            return str(exc)
        out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True)
        return None if self.encoder in out.stdout else f"this ffmpeg has no {self.encoder}"

    def fingerprint(self, setting: str) -> dict[str, str]:
        import imageio_ffmpeg

        return {
            **super().fingerprint(setting),
            "encoder": self.encoder,
            "arguments": " ".join(
                [self.param.format(setting), *self.extra, self.pix_fmt, self.fmt]
            ),
            "ffmpeg": imageio_ffmpeg.get_ffmpeg_version(),
        }

    def code(self, image: np.ndarray, setting: str) -> Coded:
        exe = ffmpeg_exe()
        h, w = image.shape[:2]
        # 4:2:0 needs even sides: pad by replicating the edge, crop after decoding.
        ph, pw = (h % 2, w % 2) if self.pix_fmt.startswith("yuv420") else (0, 0)
        src = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else image
        with tempfile.TemporaryDirectory(prefix="saicm-") as tmp:
            inp, bits, outp = (
                Path(tmp) / "in.png",
                Path(tmp) / f"out{self.suffix}",
                Path(tmp) / "dec.png",
            )
            Image.fromarray(src).save(inp)
            enc = [
                exe,
                "-v",
                "error",
                "-y",
                "-i",
                str(inp),
                "-c:v",
                self.encoder,
                *self.param.format(setting).split(),
                *self.extra,
                "-pix_fmt",
                self.pix_fmt,
                "-frames:v",
                "1",
                "-f",
                self.fmt,
                str(bits),
            ]
            t = time.perf_counter()
            r = subprocess.run(enc, capture_output=True, text=True)
            t_enc = time.perf_counter() - t
            if r.returncode or not bits.exists() or bits.stat().st_size == 0:
                why = r.stderr.strip()[-300:] or "no bitstream written"
                raise SaicmError(f"{self.name} encoder failed (exit {r.returncode}): {why}")
            t = time.perf_counter()
            r = subprocess.run(
                [
                    exe,
                    "-v",
                    "error",
                    "-y",
                    "-i",
                    str(bits),
                    "-frames:v",
                    "1",
                    "-pix_fmt",
                    "rgb24",
                    str(outp),
                ],
                capture_output=True,
                text=True,
            )
            t_dec = time.perf_counter() - t
            if r.returncode or not outp.exists() or outp.stat().st_size == 0:
                why = r.stderr.strip()[-300:] or "no picture written"
                raise SaicmError(f"{self.name} decoder failed (exit {r.returncode}): {why}")
            with Image.open(outp) as img:
                decoded = np.array(img.convert("RGB"))
            if decoded.shape[:2] != src.shape[:2]:
                raise SaicmError(
                    f"{self.name} decoder gave {decoded.shape[1]}x{decoded.shape[0]} for "
                    f"{src.shape[1]}x{src.shape[0]}"
                )
            decoded = decoded[:h, :w]
            return Coded(decoded, bits.stat().st_size, t_enc, t_dec)


class LearnedCodec(Codec):
    """saicm's own models: each setting is an installed model name or a model file; for a
    variable-rate model, ``MODEL@LAMBDA`` (a lambda in its range). A bare number after such a
    setting takes the same model (``vbr@0.002,0.004,0.008``), a variable-rate model named
    alone stands for :data:`VBR_POINTS` lambdas log-spaced over its range, and a family name
    (``sa-icm-mbt-hed``: the installed models named ``sa-icm-mbt-hed-<lambda>``) for all its
    rates: one curve each. Without settings: the default model's family (the shipped SA-ICM
    models, four rates)."""

    name = "saicm"

    def __init__(self, settings: list[str] | None = None) -> None:
        from ..codec.installed import DEFAULT_MODEL

        family = DEFAULT_MODEL.rpartition("-")[0]
        self.default_settings = tuple(model_family(family)) or (DEFAULT_MODEL,)
        super().__init__(settings)
        self.settings = expand_rates(self.settings)

    def available(self) -> str | None:
        from ..codec import load_model

        try:
            for s in self.settings:
                model, lmbda = split_setting(s)
                rate_gain_of(load_model(model), lmbda)
        except SaicmError as exc:
            return str(exc)
        return None

    def cache_key(self, setting: str) -> str:
        from ..codec import load_model
        from ..codec.registry import SAICM_CODING

        # A retrained model keeps its name: the weights decide, and how the model pads and
        # rounds (named unless it is saicm's usual, so earlier cache entries stay valid).
        spec, lmbda = split_setting(setting)
        name = Path(spec).stem if spec.endswith(".pt") else spec
        model = load_model(spec)
        coding = "" if model.coding == SAICM_CODING else f"+{model.coding.tag}"
        rate = "" if lmbda is None else f"+lmbda{lmbda:.6g}"
        return f"{name}@{model.weights_hash[:12]}{coding}{rate}"

    def fingerprint(self, setting: str) -> dict[str, str]:
        import torch

        from .. import __version__
        from ..codec import load_model
        from ..codec.bitstream import FORMAT_VERSION, VBR_FORMAT_VERSION

        spec, lmbda = split_setting(setting)
        model = load_model(spec)
        gain = rate_gain_of(model, lmbda)
        rate = {} if gain is None else {"gain": f"{gain!r}"}
        return {
            **super().fingerprint(Path(spec).name),  # the weights, not the path, decide
            "arch": model.arch,
            "config": json.dumps(model.config, sort_keys=True, default=str),
            "weights": model.weights_hash,
            "coding": model.coding.tag,  # padding and rounding change the pictures too
            "sic_format": str(FORMAT_VERSION if gain is None else VBR_FORMAT_VERSION),
            **rate,
            "saicm": __version__,
            "torch": torch.__version__,
        }

    def code(self, image: np.ndarray, setting: str) -> Coded:
        from ..codec import decode, encode, load_model

        spec, lmbda = split_setting(setting)
        model = load_model(spec)
        t = time.perf_counter()
        data = encode(image, model, lmbda=lmbda)
        t_enc = time.perf_counter() - t
        t = time.perf_counter()
        decoded = decode(data, model)
        return Coded(decoded, len(data), t_enc, time.perf_counter() - t)


class Lossless(Codec):
    """PNG: the reference point (accuracy of the uncompressed image)."""

    name = "png"
    default_settings = ("lossless",)

    def fingerprint(self, setting: str) -> dict[str, str]:
        import PIL

        return {**super().fingerprint(setting), "pillow": PIL.__version__}

    def code(self, image: np.ndarray, setting: str) -> Coded:
        buf = io.BytesIO()
        t = time.perf_counter()
        Image.fromarray(image).save(buf, format="PNG")
        t_enc = time.perf_counter() - t
        t = time.perf_counter()
        with Image.open(io.BytesIO(buf.getvalue())) as img:
            decoded = np.array(img.convert("RGB"))
        return Coded(decoded, len(buf.getvalue()), t_enc, time.perf_counter() - t)


class Unavailable(Codec):
    """A codec that was asked for but cannot run: it stays in the report, marked missing."""

    def __init__(self, name: str, reason: str) -> None:
        self.name, self.reason = name, reason
        self.settings = ["-"]

    def available(self) -> str | None:
        return self.reason


#: name -> (Pillow format, default qualities)
_PILLOW = {
    "jpeg": ("JPEG", ("5", "10", "20", "40", "70")),
    "webp": ("WEBP", ("5", "20", "40", "60", "80")),
    "avif": ("AVIF", ("10", "30", "50", "70")),
    "jpeg2000": ("JPEG2000", ("200", "100", "50", "25")),  # compression ratios
}
#: name -> FfmpegCodec arguments: intra-only, one frame, the raw bitstream is the file.
_FFMPEG = {
    "jxl": dict(
        encoder="libjxl",
        fmt="image2",
        suffix=".jxl",
        pix_fmt="rgb24",
        param="-distance {}",
        defaults=("12", "8", "4", "2"),
    ),
    "hevc": dict(
        encoder="libx265",
        fmt="hevc",
        suffix=".hevc",
        pix_fmt="yuv444p",
        param="-x265-params keyint=1:log-level=error:qp={}",
        defaults=("47", "42", "37", "32"),
    ),
    "vvc": dict(
        encoder="libvvenc",
        fmt="vvc",
        suffix=".266",
        pix_fmt="yuv420p",
        param="-qp {}",
        defaults=("50", "47", "42", "37"),
        extra=("-preset", "faster"),
    ),
}
CODECS = (*_PILLOW, *_FFMPEG, "saicm", "png")


def _settings_checks() -> dict:
    from ..utils.options import finite_float, int_range

    return {
        "jpeg": int_range(1, 100),  # Pillow's quality
        "webp": int_range(0, 100),
        "avif": int_range(0, 100),
        "jpeg2000": int_range(1, 10_000),  # compression ratio
        "jxl": finite_float(0, 25),  # libjxl's butteraugli distance
        "hevc": int_range(0, 51),  # x265 QP
        "vvc": int_range(0, 63),  # VVenC QP
    }


#: codec -> checker of one setting: a number in the codec's own range, so that nothing else
#: (a negative quality, a QP of 999, extra ffmpeg arguments) reaches the encoder
SETTING_CHECKS = _settings_checks()


def _create(name: str, settings: list[str] | None) -> Codec:
    if name in _PILLOW:
        fmt, defaults = _PILLOW[name]
        return PillowCodec(name, fmt, defaults, settings)
    if name in _FFMPEG:
        return FfmpegCodec(name, **_FFMPEG[name], settings=settings)
    return LearnedCodec(settings) if name == "saicm" else Lossless(settings)


def parse_codec(spec: str) -> Codec:
    """``NAME`` or ``NAME:S1,S2``; a model file or folder of ``.pt`` files means ``saicm``;
    ``LABEL=SPEC`` names the curve (``edge=models/edge/ mse=models/mse/`` compares two families).

    A spec that cannot be used gives an :class:`Unavailable` codec that says why.
    """
    label, eq, rest = spec.partition("=")
    if eq and label and "/" not in label and ":" not in label:
        inner, eq2, _ = rest.partition("=")
        if eq2 and inner and "/" not in inner and ":" not in inner:
            raise CodecSettingError(f"--codec {spec}: two labels; name a curve once: LABEL=SPEC")
        codec = parse_codec(rest)
        codec.coder, codec.name = codec.coder_name, label
        return codec
    try:
        return _parse(spec)
    except CodecSettingError:
        raise
    except SaicmError as exc:
        return Unavailable(spec.partition(":")[0], str(exc))


def _parse(spec: str) -> Codec:
    name, colon, rest = spec.partition(":")
    if colon and not all(s.strip() for s in rest.split(",")):
        raise CodecSettingError(
            f"--codec {spec}: an empty setting (nothing after ':', two commas, or a comma at an "
            "end); give NAME or NAME:S1,S2"
        )
    settings = rest.split(",") if rest else None
    path = Path(spec)
    if name not in CODECS and (path.suffix == ".pt" or path.is_dir()):
        files = sorted(path.glob("*.pt")) if path.is_dir() else [path]
        return LearnedCodec([str(f) for f in files])
    if name not in CODECS:
        from ..codec.installed import installed_models

        if any(m["name"] == spec for m in installed_models()):  # an installed model's name
            return LearnedCodec([spec])
        family = model_family(spec)
        if family:  # all the rates of a family: one curve named after it
            codec = LearnedCodec(family)
            codec.coder, codec.name = "saicm", spec
            return codec
        raise SaicmError(f"unknown codec {name!r} (known: {', '.join(CODECS)}, or a model)")
    return _create(name, settings)

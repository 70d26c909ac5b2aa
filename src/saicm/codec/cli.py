"""``saicm encode | decode | models``: images to ``.sic`` files and back, and the models that
code them (architectures, installed models, ``models import`` of a foreign checkpoint)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SaicmError
from ..utils.commands import each, outputs, overwrite_flag, refuse_suffix
from ..utils.options import finite_float

__all__ = ["add_codec_parsers"]


def cmd_encode(args: argparse.Namespace) -> int:
    from ..utils.io import atomic_write_bytes, refuse_existing, refuse_overwrite
    from . import encode, encode_to_bpp, load_model
    from .api import rate_gain

    names = args.model or [None]
    if len(names) > 1 and args.bpp is None:
        raise SaicmError("several models need --bpp (the largest setting that fits is chosen)")
    if args.bpp is not None and args.lmbda is not None:
        raise SaicmError("give --lmbda or --bpp, not both")
    outs = outputs(args.images, args.output, ".sic")
    refuse_suffix(outs[0], (".sic",), "a .sic file")
    refuse_overwrite([*args.images, *(n for n in names if n)], outs)
    refuse_existing(outs, args.overwrite)
    models = [load_model(n, arch=args.arch) for n in names]
    if args.bpp is None:
        rate_gain(models[0], args.lmbda)  # a bad --lmbda fails before any image is read

    def job(src: str, dst: Path) -> str:
        from ..image import load_image

        rgb = load_image(src)
        if args.bpp is not None:
            choice = encode_to_bpp(rgb, models, args.bpp)
            data, setting = choice.data, f"  {choice.setting} ({choice.tries} tries)"
        else:
            data, setting = encode(rgb, models[0], lmbda=args.lmbda), ""
            if args.lmbda is not None:
                setting = f"  lambda {args.lmbda:g}"
        atomic_write_bytes(dst, data)
        bpp = 8 * len(data) / (rgb.shape[0] * rgb.shape[1])
        return (
            f"{src} -> {dst}  {rgb.shape[1]}x{rgb.shape[0]}  {len(data)} bytes  {bpp:.4f} bpp"
            + setting
        )

    return each(zip(args.images, outs, strict=True), job, len(outs))


def cmd_decode(args: argparse.Namespace) -> int:
    from ..errors import BitstreamError
    from ..image import WRITE_SUFFIXES, save_image
    from ..utils.io import refuse_existing, refuse_overwrite
    from . import decode, load_model

    outs = outputs(args.files, args.output, ".png")
    refuse_suffix(outs[0], WRITE_SUFFIXES, "an image")
    refuse_overwrite([*args.files, *([args.model] if args.model else [])], outs)
    refuse_existing(outs, args.overwrite)
    model = load_model(args.model, arch=args.arch) if args.model else None

    def job(src: str, dst: Path) -> str:
        path = Path(src)
        if path.is_dir():
            raise BitstreamError(f"{src}: a folder, not a .sic file")
        if not path.is_file():
            raise BitstreamError(f"{src}: no such file")
        rgb = decode(path.read_bytes(), model, rounding=args.round)
        save_image(rgb, dst)
        return f"{src} -> {dst}  {rgb.shape[1]}x{rgb.shape[0]}"

    return each(zip(args.files, outs, strict=True), job, len(outs))


def cmd_models(args: argparse.Namespace) -> int:
    from . import DEFAULT_MODEL, get_architecture, installed_models, list_architectures

    if getattr(args, "models_command", None) == "import":
        from .installed import import_checkpoint

        model = import_checkpoint(args.file, args.name, force=args.force)
        c = model.coding
        print(f"{args.file} -> {model.path}")
        print(
            f"  {model.name}: {model.arch}, pad to {c.padding.multiple} {c.padding.placement} "
            f"{c.padding.mode}, {model.scale_levels}-scale tables, {c.rounding} rounding"
        )
        facts = ", ".join(f"{k}={model.card[k]}" for k in ("alpha", "lmbda") if k in model.card)
        print(f"  {model.card.get('source', '')}{f' ({facts})' if facts else ''}")
        print(f"  sha256 of {model.card['file']}: {model.card['sha256']}")
        return 0

    print("architectures (saicm.create_model):")
    for name in list_architectures():
        print(f"  {name:<16} {get_architecture(name).description}")
    print("installed models (saicm encode --model NAME):")
    models = installed_models()
    for m in models:
        card = m["card"]
        mark = "*" if m["name"] == DEFAULT_MODEL else " "
        keys = ("loss", "alpha", "lmbda", "lmbda_range", "steps")
        facts = ", ".join(f"{k}={card[k]}" for k in keys if k in card)
        if m.get("coding"):  # how it pads, its tables, its rounding (saicm's usual if absent)
            facts += f"{', ' if facts else ''}{_coding_tag(m['coding'])}"
        print(f" {mark}{m['name']:<24} {m['arch']:<16} {m['bytes'] / 1e6:6.1f} MB  {facts}")
        print(f"   {m['path']}")
    if not models:
        print("  (none)")
    return 0


def _coding_tag(coding: object) -> str:
    from .registry import Coding

    try:
        return Coding.from_dict(coding).tag
    except SaicmError:
        return "invalid coding"


def add_codec_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``encode``, ``decode`` and ``models`` to the sub-commands ``sub``."""
    e = sub.add_parser("encode", help="compress images into .sic files")
    e.add_argument("images", nargs="+", metavar="IMAGE")
    e.add_argument(
        "-o", "--output", required=True, help="output file (one image) or folder (several images)"
    )
    e.add_argument(
        "-m",
        "--model",
        nargs="+",
        action="extend",  # -m A -m B is A and B, not B alone
        default=None,
        help="installed model name or model file (default: the shipped SA-ICM model); several "
        "with --bpp",
    )
    e.add_argument(
        "--arch", default=None, help="architecture of a foreign checkpoint (default: detected)"
    )
    e.add_argument(
        "--lmbda",
        type=finite_float(0, 10_000, lo_open=True),
        default=None,
        metavar="L",
        help="rate setting of a variable-rate model: a lambda within its range (saicm models "
        "lists it; default: the middle of the range)",
    )
    e.add_argument(
        "--bpp",
        type=finite_float(0, 1_000, lo_open=True),
        default=None,
        metavar="TARGET",
        help="code each image at the largest setting of the model(s) whose file has at most "
        "TARGET bits per pixel (a variable-rate model's lambda is searched per image)",
    )
    overwrite_flag(e)
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser("decode", help="decode .sic files into PNG images")
    d.add_argument("files", nargs="+", metavar="FILE.sic")
    d.add_argument("-o", "--output", required=True, help="output PNG (one file) or folder")
    d.add_argument(
        "-m",
        "--model",
        default=None,
        help="model to decode with (default: the one named in the file)",
    )
    d.add_argument(
        "--arch", default=None, help="architecture of a foreign checkpoint (default: detected)"
    )
    d.add_argument(
        "--round",
        default=None,
        choices=("nearest", "floor"),
        help="decoded floats to 8 bits: nearest, or floor (the truncation of the LIC-TCM / "
        "SA-ICM authors' scripts); default: the model's own (floor for their checkpoints, "
        "nearest for saicm's models)",
    )
    overwrite_flag(d)
    d.set_defaults(func=cmd_decode)

    m = sub.add_parser("models", help="list architectures and installed models; import one")
    m.set_defaults(func=cmd_models)
    ms = m.add_subparsers(dest="models_command", metavar="{list,import}")
    ms.add_parser("list", help="list architectures and installed models (the default)")
    mi = ms.add_parser(
        "import",
        help="install an official LIC-TCM / SA-ICM checkpoint as a saicm model",
        description="Install an official checkpoint (icm_78.pth.tar, sa-icm_0.05.pth.tar, ...) "
        "into the first model folder ($SAICM_MODELS, else ~/.cache/saicm/models); the "
        "architecture is found from its tensors, it codes as the authors' scripts do.",
    )
    mi.add_argument("file", metavar="FILE", help="the checkpoint (loaded without running code)")
    mi.add_argument("--name", default=None, help="installed name (default: from the file name)")
    mi.add_argument(
        "--overwrite",
        "--force",
        dest="force",
        action="store_true",
        help="replace an installed model of that name",
    )

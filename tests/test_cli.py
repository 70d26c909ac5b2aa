"""The command line: outputs, batches with bad members, one-line errors, exit status."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from saicm.cli import main


@pytest.fixture()
def images(tmp_path, photo):
    paths = []
    for i, (h, w) in enumerate([(96, 128), (130, 70)]):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(photo[:h, :w]).save(p)
        paths.append(p)
    return paths


def test_encode_decode_one_file(tmp_path, images, tiny_model, capsys):
    sic = tmp_path / "one.sic"
    assert main(["encode", str(images[0]), "-o", str(sic), "--model", str(tiny_model.path)]) == 0
    line = capsys.readouterr().out
    bpp = 8 * sic.stat().st_size / (96 * 128)
    assert f"{bpp:.4f} bpp" in line
    png = tmp_path / "one.png"
    assert main(["decode", str(sic), "-o", str(png), "--model", str(tiny_model.path)]) == 0
    assert np.asarray(Image.open(png)).shape == (96, 128, 3)


def test_decode_finds_installed_model_by_name(tmp_path, images, tiny_model, monkeypatch):
    monkeypatch.setenv("SAICM_MODELS", str(tiny_model.path.parent))
    sic = tmp_path / "a.sic"
    assert main(["encode", str(images[0]), "-o", str(sic), "-m", "tiny"]) == 0
    assert main(["decode", str(sic), "-o", str(tmp_path / "a.png")]) == 0
    assert main(["models"]) == 0


def test_batch_with_bad_members_processes_the_rest(tmp_path, images, tiny_model, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    missing = tmp_path / "missing.png"
    out = tmp_path / "out"
    code = main(
        [
            "encode",
            str(images[0]),
            str(bad),
            str(missing),
            str(images[1]),
            "-o",
            str(out),
            "-m",
            str(tiny_model.path),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["img0.sic", "img1.sic"]
    assert any("bad.png" in e and "not an image" in e for e in err)
    assert any("missing.png" in e and "no such file" in e for e in err)
    assert err[-1] == "saicm: error: 2 of 4 input(s) failed"

    cut = out / "cut.sic"
    cut.write_bytes((out / "img0.sic").read_bytes()[:-7])
    code = main(
        [
            "decode",
            str(out / "img0.sic"),
            str(cut),
            "-o",
            str(tmp_path / "dec"),
            "-m",
            str(tiny_model.path),
        ]
    )
    assert code == 1
    assert [p.name for p in (tmp_path / "dec").iterdir()] == ["img0.png"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["decode", "{png}", "-o", "{tmp}/x.png"], "not a saicm .sic file"),
        (["encode", "{png}", "-o", "{tmp}/x.sic", "-m", "no-such-model"], "no installed model"),
        (["encode", "{png}", "-o", "{tmp}/x.sic", "-m", "{png}"], "not a model file"),
        (["data", "offline-corpus", "-o", "{png}/corpus"], "Not a directory"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path, images, args, message):
    args = [a.format(png=images[0], tmp=tmp_path) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "saicm", *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("saicm: error:")]
    assert lines and message in lines[0]
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.sic").exists()


# --- hostile and broken input (issue 14): no output over an input, one line, no work ---


def _err_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if "saicm: error:" in ln]


@pytest.mark.parametrize(
    "make",
    [
        lambda d: (["encode", "img0.png", "-o", "img0.png"], "img0.png"),
        lambda d: (["encode", "./img0.png", "-o", "sub/../img0.png"], "img0.png"),
        lambda d: (["encode", "img0.png", "-o", "link.sic"], "img0.png"),
        lambda d: (["decode", "one.sic", "-o", "one.sic"], "one.sic"),
        lambda d: (["decode", "one.sic", "-o", "./sub/../one.sic"], "one.sic"),
    ],
)
def test_an_output_never_overwrites_an_input(tmp_path, images, tiny_model, monkeypatch, make):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.sic").symlink_to(images[0])
    assert main(["encode", "img0.png", "-o", "one.sic", "-m", str(tiny_model.path)]) == 0
    argv, victim = make(tmp_path)
    before = (tmp_path / victim).read_bytes()
    assert main([*argv, "-m", str(tiny_model.path)]) == 1
    assert (tmp_path / victim).read_bytes() == before
    assert (tmp_path / "link.sic").is_symlink()


def test_masks_into_the_photo_folder_is_refused_before_work(tmp_path, images, capsys):
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.png")}
    for argv in (
        ["masks", str(tmp_path), "-o", str(tmp_path)],
        ["masks", str(images[0]), "-o", str(tmp_path)],
        ["masks", str(tmp_path), "-o", f"{tmp_path}/../{tmp_path.name}"],
    ):
        assert main([*argv, "--source", "felzenszwalb"]) == 1
        assert "overwrite the input" in _err_lines(capsys.readouterr().err)[0]
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.png")} == before
    assert not list(tmp_path.glob("manifest-*"))


def test_masks_of_a_missing_folder_make_nothing(tmp_path, capsys):
    assert main(["masks", str(tmp_path / "nodir"), "-o", str(tmp_path / "m")]) == 1
    err = _err_lines(capsys.readouterr().err)
    assert len(err) == 1 and "nodir: no such image or folder" in err[0]
    assert not (tmp_path / "m").exists()


def test_masks_folder_of_another_source_is_not_taken_as_done(tmp_path, images, capsys):
    out = tmp_path / "m"
    args = ["masks", str(images[0]), "-o", str(out)]
    assert main([*args, "--source", "felzenszwalb"]) == 0
    made = (out / "img0.png").read_bytes()
    capsys.readouterr()
    assert main([*args, "--source", "slic"]) == 1
    err = _err_lines(capsys.readouterr().err)
    assert len(err) == 1 and "made with other settings" in err[0] and "source=" in err[0]
    assert main([*args, "--source", "felzenszwalb", "--edge-width", "3"]) == 1
    assert "edge_width" in capsys.readouterr().err
    assert (out / "img0.png").read_bytes() == made
    assert main([*args, "--source", "felzenszwalb"]) == 0  # same settings: already done
    assert "1 already done" in capsys.readouterr().out
    assert main([*args, "--source", "slic", "--overwrite"]) == 0


def test_masks_folder_of_foreign_pngs_is_refused(tmp_path, images, capsys):
    out = tmp_path / "m"
    out.mkdir()
    Image.new("L", (8, 8)).save(out / "img0.png")
    before = (out / "img0.png").read_bytes()
    assert main(["masks", str(images[0]), "-o", str(out), "--source", "felzenszwalb"]) == 1
    assert "did not write" in capsys.readouterr().err
    assert (out / "img0.png").read_bytes() == before


def test_a_busy_folder_is_refused(tmp_path, images, capsys):
    import json
    import os
    import socket

    out = tmp_path / "m"
    out.mkdir()
    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    (out / ".saicm-masks-0of1.lock").write_text(me)
    assert main(["masks", str(images[0]), "-o", str(out), "--source", "felzenszwalb"]) == 1
    assert "in use by another saicm run" in capsys.readouterr().err
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / ".saicm.lock").write_text(me)
    argv = ["eval", "--images", str(images[0]), "--codec", "png", "-o", str(rep)]
    assert main(argv) == 1
    assert "in use by another saicm run" in capsys.readouterr().err
    assert sorted(p.name for p in rep.iterdir()) == [".saicm.lock"]
    run = tmp_path / "run"
    run.mkdir()
    (run / ".saicm.lock").write_text(me)
    argv = ["train", "--images", str(images[0].parent), "--loss", "mse", "-o", str(run)]
    assert main([*argv, "--steps", "1", "--crop", "64", "--batch-size", "1"]) == 1
    assert "in use by another saicm run" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == [".saicm.lock"]


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["train", "-o", "r", "--lmbda=-0.05"], "--lmbda: -0.05: expected a finite number > 0"),
        (["train", "-o", "r", "--lmbda", "nan"], "--lmbda: nan: expected a finite number"),
        (["train", "-o", "r", "--lmbda", "inf"], "--lmbda: inf: expected a finite number"),
        (["train", "-o", "r", "--lr", "-1"], "--lr: -1: expected a finite number >= 0"),
        (["train", "-o", "r", "--clip", "nan"], "--clip: nan"),
        (["train", "-o", "r", "--workers", "-1"], "--workers: -1: expected an integer >= 0"),
        (["train", "-o", "r", "--checkpoint-every", "0"], "--checkpoint-every: 0"),
        (["train", "-o", "r", "--steps", "1e3"], "--steps: '1e3': expected an integer"),
        (["train", "-o", "r", "--batch-size", "0"], "--batch-size: 0"),
        (["train", "-o", "r", "--crop", "32"], "--crop: 32: expected an integer >= 64"),
        (["train", "-o", "r", "--name", "a/b"], "--name: 'a/b': expected a name"),
        (["train", "-o", "r", "--amp", "fp8"], "--amp: 'fp8': choose from off, bf16, fp16"),
        (["train", "-o", "r", "--object-crops", "2"], "--object-crops: 2: expected"),
        (["masks", "x", "-o", "m", "--edge-width", "-1"], "--edge-width: -1"),
        (["masks", "x", "-o", "m", "--threshold", "2"], "--threshold: 2"),
        (["masks", "x", "-o", "m", "--threshold", "nan"], "--threshold: nan"),
        (["masks", "x", "-o", "m", "--alpha", "5"], "--alpha: 5"),
        (["masks", "x", "-o", "m", "--points-per-side", "0"], "--points-per-side: 0"),
        (["masks", "x", "-o", "m", "--min-score", "-1"], "--min-score: -1"),
        (["eval", "--images", "x", "--codec", "png", "-o", "r", "--max-images", "0"], "0"),
        (["eval", "--images", "x", "--codec", "png", "-o", "r", "--workers", "0"], "--workers"),
        (["eval", "--images", "x", "--codec", "png", "-o", "r", "--bootstrap", "-5"], "-5"),
        (["data", "offline-corpus", "-o", "c", "--max-side", "0"], "--max-side: 0"),
        (["data", "offline-corpus", "-o", "c", "--val-every", "0"], "--val-every: 0"),
        (["encode"], "the following arguments are required"),
    ],
)
def test_bad_options_are_one_line_before_any_work(tmp_path, monkeypatch, capsys, argv, reason):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("saicm: error: ") and reason in err[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--codec", "jpeg:-5"], "codec jpeg: setting -5: expected an integer >= 1"),
        (["--codec", "vvc:999"], "codec vvc: setting 999: expected an integer >= 0 and <= 63"),
        (["--codec", "hevc:30 -version"], "codec hevc: setting '30 -version'"),
        (["--codec", "jxl:nan"], "codec jxl: setting nan"),
        (["--codec", "jpeg", "--anchor", "nosuch"], "--anchor nosuch: not one of the codecs"),
        (["--codec", "png", "-o", "{img}"], "overwrite the input"),
    ],
)
def test_eval_refuses_bad_codecs_anchors_and_outputs(tmp_path, images, capsys, argv, reason):
    argv = [a.format(img=images[0].parent) for a in argv]
    out = [] if "-o" in argv else ["-o", str(tmp_path / "rep")]
    assert main(["eval", "--images", str(images[0].parent), *argv, *out]) == 1
    err = _err_lines(capsys.readouterr().err)
    assert len(err) == 1 and reason in err[0], err
    assert not (tmp_path / "rep").exists()
    assert not (tmp_path / "cells").exists()


def test_train_and_demo_refuse_to_write_over_their_inputs(tmp_path, images, capsys):
    argv = ["train", "--images", str(tmp_path), "--loss", "mse", "-o", str(tmp_path)]
    assert main([*argv, "--steps", "1", "--crop", "64", "--batch-size", "1"]) == 1
    assert "model.pt is in the input folder" in capsys.readouterr().err
    d = tmp_path / "d"
    d.mkdir()
    (d / "original.png").write_bytes(images[0].read_bytes())
    assert main(["demo", str(d / "original.png"), "-o", str(d)]) == 1
    assert "overwrite the input" in capsys.readouterr().err
    assert (d / "original.png").read_bytes() == images[0].read_bytes()
    assert sorted(p.name for p in d.iterdir()) == ["original.png"]


def test_unexpected_errors_are_one_line():
    import pickle

    from saicm.cli import _describe, _one_line

    assert _describe(MemoryError()).startswith("out of memory")
    assert _describe(AssertionError()) == (
        "unexpected AssertionError: AssertionError (SAICM_DEBUG=1 shows the traceback)"
    )
    text = _describe(pickle.UnpicklingError("Weights only load failed.\nplease\n\nrerun"))
    assert "\n" not in text and "Weights only load failed. (...)" in text
    assert _one_line("\n\n  first  \nsecond") == "first (...)"


def test_an_error_does_not_share_the_line_of_a_progress_bar(capsys):
    import sys as _sys

    from tqdm import tqdm

    from saicm.cli import _say_error

    bar = tqdm(total=10, file=_sys.stderr, desc="training")
    bar.update(3)
    _say_error("loss became nan")
    err = capsys.readouterr().err
    assert err.endswith("\nsaicm: error: loss became nan\n") or err.rsplit("\r", 1)[-1] == (
        "saicm: error: loss became nan\n"
    )
    assert bar.disable or bar.n == 3


def test_sigterm_is_one_error_line_and_restores_the_handler(monkeypatch, capsys):
    """SIGTERM (timeout, kill) stops a command as Ctrl-C does: the atomic writes' clean-up runs
    (before, `timeout 15 saicm video decode` left a hidden .part file), one line, status 143."""
    import os
    import signal

    import saicm.cli as cli

    before = signal.getsignal(signal.SIGTERM)

    def killed(args):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the command")

    real = cli.build_parser

    def parser():
        p = real()
        parse = p.parse_args

        def parse_args(argv):
            args = parse(argv)
            args.func = killed
            return args

        p.parse_args = parse_args
        return p

    monkeypatch.setattr(cli, "build_parser", parser)
    assert main(["models"]) == 143
    assert capsys.readouterr().err.strip() == "saicm: error: terminated"
    assert signal.getsignal(signal.SIGTERM) == before


def test_inputs_that_share_a_name_are_refused_before_the_folder_is_made(tmp_path, capsys):
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / d / "x.png")
    out = tmp_path / "coded"
    inputs = [str(tmp_path / "d1/x.png"), str(tmp_path / "d2/x.png")]
    assert main(["encode", *inputs, "-o", str(out)]) == 1
    assert "inputs share a file name" in capsys.readouterr().err
    assert not out.exists()


def test_commands_that_fail_on_every_input_leave_no_folder(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    masks, report = str(tmp_path / "m"), str(tmp_path / "r")
    assert main(["masks", str(bad), "-o", masks, "--source", "felzenszwalb"]) == 1
    assert main(["eval", "--images", str(bad), "--codec", "jpeg:10", "-o", report]) == 1
    assert "none of the images can be read" in capsys.readouterr().err
    assert not (tmp_path / "m").exists() and not (tmp_path / "r").exists()


def test_repeated_list_options_add_up_not_replace():
    from saicm import cli

    args = cli.build_parser().parse_args(["encode", "a.png", "-o", "x", "-m", "A", "-m", "B", "C"])
    assert args.model == ["A", "B", "C"]
    ev = ["eval", "-o", "r", "--images", "i", "--images", "j"]
    ev += ["--codec", "jpeg", "--codec", "saicm"]
    args = cli.build_parser().parse_args(ev)
    assert args.images == ["i", "j"] and args.codec == ["jpeg", "saicm"]
    assert args.anchor == ["vvc"] and args.task == ["detection"]


def test_two_models_named_with_two_flags_need_bpp(tmp_path, capsys):
    # -m A -m B used to keep B alone and encode with it at exit 0
    src = tmp_path / "p.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src)
    out = tmp_path / "p.sic"
    rc = main(["encode", str(src), "-o", str(out), "-m", "mse-mbt-0.0018", "-m", "mse-mbt-0.013"])
    assert rc != 0 and "need --bpp" in capsys.readouterr().err
    assert not out.exists()


def _modules_after(code: str) -> set[str]:
    """The heavy modules a fresh interpreter has imported after running ``code``."""
    probe = (
        "import sys\n" + code + "\nprint(' '.join(m for m in ('torch', 'compressai', 'numpy', "
        "'PIL', 'cv2', 'matplotlib') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["eval", "--help"],
        ["video", "train", "--help"],
        ["encode"],  # -o missing
        ["eval", "--images", "i", "--codec", "jpeg", "--bootstrap", "-1", "-o", "r"],
        ["train", "-o", "r", "--steps", "-3"],
        ["video", "train", "c.mp4", "-o", "r", "--size", "Q"],
        ["video", "train", "c.mp4", "-o", "r", "--frame-size", "5"],
        ["video", "train", "c.mp4", "-o", "r", "--max-frames", "0"],
        ["masks", "--edge-width", "99", "-o", "m"],
    ],
)
def test_help_and_bad_arguments_import_nothing_heavy(argv):
    # torch alone takes 2.7 s to import (docs/BENCHMARKS.md, start-up): no parser may need it
    code = (
        "import contextlib, io\nfrom saicm.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    main({argv!r})"
    )
    assert _modules_after(code) == set()


def test_eval_help_lists_every_codec_form_and_task():
    from saicm.cli import EVAL_TASKS, build_parser
    from saicm.eval.codecs import CODECS
    from saicm.eval.tasks import TASKS

    assert list(EVAL_TASKS) == list(TASKS)
    sub = build_parser()._subparsers._group_actions[0].choices["eval"]  # type: ignore[union-attr]
    text = " ".join(sub.format_help().split())
    for name in [*CODECS, *TASKS]:
        assert f" {name}" in text, name
    for form in ("NAME:S1,S2", "LABEL=SPEC", "MODEL@LAMBDA", "family name", "folder of model"):
        assert form in text, form


def test_decoding_a_trained_runs_file_says_how_to_find_its_model(
    tmp_path, images, tiny_model, monkeypatch, capsys
):
    # saicm train writes runs/x/model.pt, which is not installed: the README's flow
    monkeypatch.setenv("SAICM_MODELS", str(tmp_path / "models"))
    sic = tmp_path / "a.sic"
    assert main(["encode", str(images[0]), "-o", str(sic), "--model", str(tiny_model.path)]) == 0
    capsys.readouterr()
    assert main(["decode", str(sic), "-o", str(tmp_path / "a.png")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "no installed model named 'tiny'" in err[0]
    folder = tmp_path / "models"
    how = "give its file with --model FILE (a trained run's model.pt), or copy that file into "
    how += str(folder)
    assert how in err[0]
    assert not (tmp_path / "a.png").exists()
    argv = ["decode", str(sic), "-o", str(tmp_path / "a.png"), "--model", str(tiny_model.path)]
    assert main(argv) == 0
    (tmp_path / "models").mkdir()  # the other way: copied into a model folder, found by name
    (tmp_path / "models" / "model.pt").write_bytes(tiny_model.path.read_bytes())
    assert main(["decode", str(sic), "-o", str(tmp_path / "b.png")]) == 0


@pytest.mark.parametrize(
    "argv",
    [["encode", "x.png", "-o", ""], ["video", "decode", "c.snv", "-o", " "],
     ["eval", "--images", "i", "--codec", "png", "-o", ""]],
)  # fmt: skip
def test_an_empty_output_path_is_a_usage_error(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "argument -o/--output: an empty path" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

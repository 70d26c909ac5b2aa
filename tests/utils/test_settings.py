"""Settings files read as they look: YAML 1.2's core schema, not PyYAML's YAML 1.1 surprises."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import yaml

from saicm.utils.settings import read_yaml


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("off", "off"), ("on", "on"), ("yes", "yes"), ("no", "no"), ("y", "y"),  # 1.1: booleans
        ("true", True), ("False", False), ("TRUE", True),
        ("010", 10), ("0o17", 15), ("0x1F", 31), ("-3", -3), ("+7", 7),  # 1.1: 010 is 8
        ("1:30", "1:30"), ("1_000", "1_000"),  # 1.1: 90 (base 60) and 1000
        ("1e-4", 1e-4), ("1.0e+4", 1e4), ("5.", 5.0), (".5", 0.5), ("-2.5", -2.5),  # 1.1: 1e-4 str
        (".inf", math.inf), ("-.Inf", -math.inf), ("null", None), ("~", None),
        ("'1'", "1"), ("bf16", "bf16"),
    ],
)  # fmt: skip
def test_plain_scalars_follow_yaml_1_2(tmp_path, text, value):
    path = tmp_path / "c.yaml"
    path.write_text(f"key: {text}\n")
    got = read_yaml(path)["key"]
    assert got == value and type(got) is type(value)


def test_nan_and_what_saicm_writes_read_back(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("key: .nan\n")
    assert math.isnan(read_yaml(path)["key"])
    data = {"amp": "off", "lr": 1e-05, "steps": 10, "milestones": [0.9, 0.96], "ok": True}
    path.write_text(yaml.safe_dump(data))  # how saicm writes config.yaml
    assert read_yaml(path) == data


def test_a_config_with_amp_off_trains_and_yes_for_a_choice_is_refused(tmp_path):
    from saicm.errors import SaicmError
    from saicm.train import TrainConfig

    path = tmp_path / "c.yaml"
    path.write_text("amp: off\nsteps: 3\n")
    assert TrainConfig.from_file(path).amp == "off"
    path.write_text("amp: yes\n")
    with pytest.raises(SaicmError, match="amp 'yes': choose from off, bf16, fp16"):
        TrainConfig.from_file(path).validate()


def test_strings_that_look_like_numbers_are_written_quoted():
    from saicm.utils.settings import dump_yaml

    data = {
        "video": "1e5", "images": "2e3", "name": "0o17", "a": "off", "b": "010", "c": "1:30",
        "d": "yes", "e": ".inf", "f": "plain", "n": 3, "x": 1e-5, "t": True,
    }  # fmt: skip
    text = dump_yaml(data)
    assert yaml.safe_load(text) == data  # a YAML 1.1 reader
    path = Path(tempfile.mkdtemp()) / "c.yaml"
    path.write_text(text)
    assert read_yaml(path) == data  # saicm's YAML 1.2 reader
    assert list(read_yaml(path)) == list(data)  # order kept


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("amp: bf16\namp: off\n", "'amp' is given twice"),
        ("a: &x [1, 2]\nb: *x\n", "aliases (*name) are not allowed"),
        ("card: " + "&a [" * 1 + "]\n" + "x: [*a, *a]\n", "aliases"),
        ("1: 5\n", "the key 1 is not a name"),
        ("~: 5\n", "the key None is not a name"),
        ("steps: " + "9" * 5000 + "\n", "Exceeds the limit (4300 digits)"),
        ("card: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ],
)  # fmt: skip
def test_settings_that_are_not_plain_are_refused(tmp_path, text, why):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(yaml.YAMLError) as info:
        read_yaml(path)
    assert why in str(info.value)


def test_yaml_1_1_leftovers_are_strings_and_bytes_must_be_utf8(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: 2024-01-01\nother: =\nb:\n  <<: {y: 2}\n")
    assert read_yaml(path) == {"name": "2024-01-01", "other": "=", "b": {"<<": {"y": 2}}}
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(yaml.YAMLError, match="not UTF-8 text"):
        read_yaml(path)


def test_a_bad_config_is_one_line_naming_the_file(tmp_path, capsys):
    from saicm.cli import main

    path = tmp_path / "c.yaml"
    path.write_text("steps: 5\nsteps: 7\n")
    assert main(["train", "--config", str(path), "-o", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "'steps' is given twice" in err[0], err
    assert not (tmp_path / "run").exists()

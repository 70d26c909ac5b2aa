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

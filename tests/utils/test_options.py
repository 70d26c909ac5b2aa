"""The shared option checkers: values in range pass, everything else is one clear error."""

from __future__ import annotations

import argparse

import pytest

from saicm.errors import SaicmError
from saicm.utils.options import (
    OptionError,
    check,
    choice,
    finite_float,
    fraction,
    int_range,
    nonnegative_int,
    positive_float,
    positive_int,
    safe_name,
)


@pytest.mark.parametrize(
    ("checker", "value", "expected"),
    [
        (positive_int, "8", 8),
        (positive_int, 3, 3),
        (nonnegative_int, "0", 0),
        (int_range(1, 99), " 99 ", 99),
        (positive_float, "1e-4", 1e-4),
        (positive_float, 0.5, 0.5),
        (fraction, "1", 1.0),
        (fraction, "0", 0.0),
        (finite_float(0, 1, lo_open=True, hi_open=True), "0.5", 0.5),
        (choice("a", "b"), "b", "b"),
        (safe_name, "sa-icm_0.05", "sa-icm_0.05"),
    ],
)
def test_values_in_range_pass(checker, value, expected):
    assert checker(value) == expected


@pytest.mark.parametrize(
    ("checker", "value", "reason"),
    [
        (positive_int, "0", "expected an integer >= 1"),
        (positive_int, "-3", "expected an integer >= 1"),
        (positive_int, "2.5", "expected an integer >= 1"),
        (positive_int, "1e3", "expected an integer >= 1"),
        (positive_int, True, "expected an integer >= 1"),
        (positive_int, 4.0, "expected an integer >= 1"),
        (positive_int, "9" * 40, "expected an integer >= 1"),
        (int_range(1, 99), "100", "<= 99"),
        (int_range(1, 100), "\u0663", "expected an integer"),  # Arabic-Indic 3: jpeg:٣ coded
        (positive_float, "\u0660.\u0660\u0665", "finite"),  # Arabic-Indic 0.05
        (positive_float, "0", "> 0"),
        (positive_float, "-0.05", "> 0"),
        (positive_float, "nan", "finite"),
        (positive_float, "inf", "finite"),
        (positive_float, float("nan"), "finite"),
        (positive_float, "abc", "finite"),
        (positive_float, None, "finite"),
        (fraction, "1.5", "<= 1"),
        (fraction, "-0.1", ">= 0"),
        (finite_float(0, 1, lo_open=True, hi_open=True), "1", "< 1"),
        (finite_float(0, 1, lo_open=True, hi_open=True), "0", "> 0"),
        (choice("a", "b"), "c", "choose from a, b"),
        (safe_name, "a/b", "expected a name"),
        (safe_name, "..", "expected a name"),
        (safe_name, "", "expected a name"),
        (safe_name, "-x", "expected a name"),
        (safe_name, "a\nb", "expected a name"),
        (safe_name, 5, "expected a name"),
    ],
)
def test_bad_values_are_one_line_errors(checker, value, reason):
    with pytest.raises(OptionError) as info:
        checker(value)
    message = str(info.value)
    assert reason in message
    assert "\n" not in message
    assert isinstance(info.value, SaicmError)


def test_check_names_the_setting():
    with pytest.raises(SaicmError, match=r"^lmbda -0\.05: expected a finite number > 0$"):
        check("lmbda", -0.05, positive_float)
    assert check("steps", 10, positive_int) == 10


def test_argparse_prints_the_reason():
    p = argparse.ArgumentParser(exit_on_error=False)
    p.add_argument("--lr", type=positive_float)
    assert p.parse_args(["--lr", "0.001"]).lr == 0.001
    with pytest.raises(argparse.ArgumentError, match="nan: expected a finite number > 0"):
        p.parse_args(["--lr", "nan"])

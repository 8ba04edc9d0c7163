"""The shared scalar checks: accepted values come back converted, rejected ones name label and value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmray.checks import choice, flag, integer, real


def test_accepted_values_are_converted() -> None:
    assert real("x", 3) == 3.0 and isinstance(real("x", 3), float)
    assert real("x", np.float32(0.5), gt=0, lt=1) == 0.5
    assert integer("n", np.int64(4), ge=1) == 4 and type(integer("n", np.int64(4))) is int
    assert flag("f", np.bool_(True)) is True
    assert choice("c", "a", ("a", "b")) == "a"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: real("MarketParams.sigma", -1, gt=0), "MarketParams.sigma must be a finite number > 0, got -1"),
        (lambda: real("x", math.nan), "x must be a finite number, got nan"),
        (lambda: real("x", True), "x must be a finite number, got True"),
        (lambda: real("x", "1", ge=0), "x must be a finite number >= 0, got '1'"),
        (lambda: real("tol", 1.0, gt=0, lt=1), "tol must be a finite number in (0, 1), got 1.0"),
        (lambda: integer("n", 2.0, ge=1), "n must be an integer >= 1, got 2.0"),
        (lambda: integer("n", False), "n must be an integer, got False"),
        (lambda: integer("n", 0, ge=1), "n must be an integer >= 1, got 0"),
        (lambda: flag("f", 1), "f must be True or False, got 1"),
        (lambda: choice("c", "z", ("a", "b")), "c must be one of a, b; got 'z'"),
        (lambda: choice("c", ["a"], ("a", "b")), "c must be one of a, b; got ['a']"),
    ],
)
def test_rejections_name_label_and_value(call, message: str) -> None:
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message

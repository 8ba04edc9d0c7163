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


@pytest.mark.parametrize(("method", "options", "message"), [
    ("exact", {"n_times": 1}, "exact option n_times must be an integer >= 2, got 1"),
    ("exact", {"rtol": -1.0}, r"exact option rtol must be a number >= 0 \(0: always the stepping path"),
    ("fd", {"scheme": "rk4"}, "fd option scheme must be one of explicit, implicit, cn; got 'rk4'"),
    ("pi", {"horizon": "average"}, "pi horizon='average' needs objective B"),
    ("pi", {"tick": 0.5, "n_levels": 0}, "option n_levels must be an integer >= 1, got 0"),
    ("csp", {"tick": 0.5}, "csp needs objective B"),
    ("fd", {"n_levelz": 3}, r"solver 'fd' does not take option\(s\) \['n_levelz'\]"),
])
def test_check_options_raises_what_solve_raises(method, options, message):
    """``check_options`` runs the code each solver starts with, so both refuse with one message."""
    from mmray.params import MarketParams, ProblemParams
    from mmray.solvers import check_options, solve

    market, problem = MarketParams(), ProblemParams(T=10.0, q_max=3)
    for call in (check_options, solve):
        with pytest.raises(ValueError, match=message):
            call(market, problem, method, **options)


def test_check_options_accepts_what_solve_accepts():
    from mmray.params import MarketParams, ProblemParams
    from mmray.solvers import check_options

    market, problem = MarketParams(), ProblemParams(T=10.0, q_max=3, objective="B")
    check_options(market, problem, "exact", rtol=0.0)  # the stepping path everywhere
    check_options(market, problem, "exact", rtol=float("inf"))
    check_options(market, problem, "csp", tick=0.5, n_steps=10, formulation="direct")


def test_refusals_keep_their_parts_for_other_wordings() -> None:
    """A sweep file words the same refusal as ``<path>: expected <what>, got <value>``."""
    from mmray.checks import CheckError, string

    with pytest.raises(CheckError) as err:
        real("x", 0, gt=0)
    assert (err.value.label, err.value.value, err.value.expected, err.value.within) == ("x", 0, "a finite number > 0",
                                                                                      "a number > 0")
    with pytest.raises(CheckError) as err:
        real("x", "a", gt=0)
    assert (err.value.expected, err.value.within) == ("a finite number > 0", None)  # not a number at all
    with pytest.raises(CheckError) as err:
        integer("n", 2.5, ge=1, integral_floats=True)
    assert str(err.value) == "n must be an integer >= 1, got 2.5" and err.value.within is None
    assert integer("n", 10.0, integral_floats=True) == 10 and type(integer("n", 10.0, integral_floats=True)) is int
    with pytest.raises(CheckError, match=r"^s must be a string, got 1$"):
        string("s", 1)

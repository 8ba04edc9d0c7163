"""The policy contract: one registry of kinds and strategies (code or entry points), no solver
imported by the core, features declared in checkpoints and checked on load."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pytest

from mmray import ProblemParams, SimConfig, load_policy, make_strategy, save_policy
from mmray.checkpoint import META_FILE, CheckpointError, meta_digest
from mmray.registry import POLICY_KINDS, STRATEGIES, Registry, register_policy_kind
from mmray.sim import simulate_chunk


@dataclass(frozen=True, eq=False)
class MomentumPolicy:
    """A third-party kind: a half-spread skewed against the last mid move (reads ``mid_return``)."""

    half_spread: float
    lean: float
    provenance: dict[str, Any] = field(default_factory=dict)

    kind: ClassVar[str] = "test_momentum"
    features: ClassVar[tuple[str, ...]] = ("mid_return",)
    array_spec: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {"lean": ("f", ("one",))}

    def quotes(self, t, q, s, rng=None, features=None):
        r = features["mid_return"]
        return self.half_spread + self.lean * r, self.half_spread - self.lean * r

    def to_checkpoint(self):
        return ({"market": None, "problem": None, "params": {"half_spread": self.half_spread},
                 "provenance": self.provenance}, {"lean": np.array([self.lean])})

    @classmethod
    def from_checkpoint(cls, meta, arrays):
        return cls(meta["params"]["half_spread"], float(arrays["lean"][0]), dict(meta["provenance"]))


def test_a_third_party_kind_registers_saves_loads_and_runs_in_the_simulator(tmp_path, glft_market):
    register_policy_kind(MomentumPolicy)
    try:
        pol = MomentumPolicy(1.5, 0.2)
        path = save_policy(pol, tmp_path / "mom")
        meta = json.loads((path / META_FILE).read_text())
        assert meta["kind"] == "test_momentum" and meta["features"] == ["mid_return"]
        loaded = load_policy(path)
        assert isinstance(loaded, MomentumPolicy) and (loaded.half_spread, loaded.lean) == (1.5, 0.2)
        problem = ProblemParams(T=10.0, q_max=5)
        a = simulate_chunk(pol, glft_market, problem, SimConfig(dt=0.5), 100, 1)
        b = simulate_chunk(loaded, glft_market, problem, SimConfig(dt=0.5), 100, 1)
        np.testing.assert_array_equal(a.pnl, b.pnl)
        # the lean matters: without it the paths differ (the feature reaches the policy)
        c = simulate_chunk(MomentumPolicy(1.5, 0.0), glft_market, problem, SimConfig(dt=0.5), 100, 1)
        assert not np.array_equal(a.pnl, c.pnl)
    finally:
        POLICY_KINDS._items.pop("test_momentum", None)


def test_a_checkpoint_whose_declared_features_differ_from_its_policy_is_refused(tmp_path):
    register_policy_kind(MomentumPolicy)
    try:
        path = save_policy(MomentumPolicy(1.5, 0.2), tmp_path / "mom")
        meta = json.loads((path / META_FILE).read_text())
        meta["features"] = ["mid_return", "spread"]
        meta["meta_sha256"] = meta_digest(meta)
        (path / META_FILE).write_text(json.dumps(meta))
        with pytest.raises(CheckpointError, match=r"field 'features' is \['mid_return', 'spread'\], but the "
                                                  r"'test_momentum' policy it holds reads \['mid_return'\]"):
            load_policy(path)
        meta["features"] = "mid_return"
        meta["meta_sha256"] = meta_digest(meta)
        (path / META_FILE).write_text(json.dumps(meta))
        with pytest.raises(CheckpointError, match="field 'features' must be an array"):
            load_policy(path)
    finally:
        POLICY_KINDS._items.pop("test_momentum", None)


def test_an_unknown_kind_names_the_known_ones_and_how_to_register(tmp_path, glft_market):
    path = save_policy(make_strategy("as", glft_market, ProblemParams()), tmp_path / "as")
    meta = json.loads((path / META_FILE).read_text())
    meta["kind"] = "nope"
    meta["meta_sha256"] = meta_digest(meta)
    (path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"unknown policy kind 'nope'; known: \[.*'closed_form'.*'random_table'.*"
                                              r"register_policy_kind or an 'mmray.policy_kinds' entry point"):
        load_policy(path)


def test_the_solver_made_parts_come_from_entry_points_and_the_core_imports_no_solver():
    """``optimal`` and ``random_table`` are declared in pyproject.toml; importing the core (and
    listing the names) does not import mmray.solvers; building ``optimal`` does."""
    code = (
        "import sys, mmray, mmray.strategies, mmray.checkpoint, mmray.policy, mmray.sim, mmray.backtest\n"
        "from mmray.registry import POLICY_KINDS, STRATEGIES\n"
        "assert 'optimal' in STRATEGIES.names() and 'random_table' in POLICY_KINDS.names()\n"
        "assert mmray.strategies.STRATEGIES[0] == 'optimal'\n"
        "assert not [m for m in sys.modules if m.startswith('mmray.solvers')], 'core imported a solver'\n"
        "p = mmray.make_strategy('optimal', mmray.MarketParams(), mmray.ProblemParams(T=10.0, q_max=3))\n"
        "assert type(p).__name__ == 'TablePolicy' and 'mmray.solvers.exact' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_registries_register_in_code_and_refuse_unknown_names(glft_market):
    reg: Registry[int] = Registry("mmray.test_nothing_declared", "widget")
    reg.register("a", 1)
    assert reg.get("a") == 1 and "a" in reg and "b" not in reg and reg.names() == ("a",)
    with pytest.raises(KeyError, match="unknown widget 'b'; known: a"):
        reg.get("b")
    with pytest.raises(ValueError, match="a widget name must be a non-empty string"):
        reg.register("", 2)
    problem = ProblemParams(T=10.0, q_max=3)
    STRATEGIES.register("test_wide", lambda market, problem: make_strategy("constant", market, problem,
                                                                           half_spread=9.0))
    try:
        assert make_strategy("test_wide", glft_market, problem).half_spread == 9.0
        with pytest.raises(ValueError, match=r"strategy 'test_wide' does not take \['skew'\]"):
            make_strategy("test_wide", glft_market, problem, skew=1.0)
    finally:
        STRATEGIES._items.pop("test_wide")
    with pytest.raises(ValueError, match="unknown strategy 'nope'; choose from optimal, as, symmetric"):
        make_strategy("nope", glft_market, problem)

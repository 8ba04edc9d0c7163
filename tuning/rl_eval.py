"""How far an agent is from optimal in its own environment: the optimality figures of issue 9.

The env steps in discrete time (``dt``, fill model, price model), where the continuous-time exact
solution is not optimal. The figures compare an agent with three policies of the env's own dynamics:

* the **reference optimum**: ``pi`` (backward induction of :mod:`mmray.solvers.discrete`'s tick-grid
  MDP, whose fill probabilities are :func:`mmray.model.fill_probability`) at the env's ``dt`` and
  models, over the env's offset range ``[offset_low, offset_high]`` with no "no quote" choice (the
  env's agent always quotes both sides; the bound forbids one at ``|q| = Q``, in the simulator as in
  ``pi``). Discrete env: the quote grid *is* the env's action grid, so ``pi`` is exactly optimal.
  Continuous env: a grid of step :attr:`ReferenceSpec.tick`, halved (on the offsets the previous
  solution uses, with a margin) until one halving changes the value by less than
  :attr:`ReferenceSpec.tolerance`; the finest solution is the reference and the last change is
  reported (``refinement_change``);
* the **inventory-blind baseline**: the symmetric constant half-spread (``ClosedFormPolicy("constant")``)
  with the half-spread maximising the exact value (bounded Brent search, ``xatol`` 1e-6);
* the **continuous exact policy** (``make_strategy("optimal")``), reported beside them: a baseline an
  agent can and should beat in discrete time.

Evaluation of a policy (:func:`exact_value`): an agent that observes only ``(t, q)`` is evaluated
*exactly* by forward propagation of its inventory distribution: at each step the policy is asked for
its quotes on the whole inventory grid through :func:`mmray.policy.ask_quotes` (the simulator's one
call), the inventory bound of :func:`mmray.sim.market_step` is applied, each side fills with
:func:`mmray.model.fill_probability` (the simulator's and ``pi``'s probability), and the distribution
moves as :meth:`mmray.solvers.occupation.OccupationModel.forward` moves it (up ``p_b (1 - p_a)``,
down ``p_a (1 - p_b)``). Objective B's expected value accumulates the expected spread income, the
running term ``mu dt q' - (gamma sigma^2 / 2) q'^2 dt`` of the post-trade inventory (as
:func:`mmray.objectives.step_reward_b`) and ``-E ell(q_T)``. A policy that reads features, draws
random numbers or quotes differently at another mid, or a market with a tick (rounding depends on
the mid), is evaluated by Monte Carlo instead: :mod:`mmray.backtest` with ``n_paths`` paths (default
20,000) on the same seeds for the agent, the reference and the baseline (common random numbers), with
paired standard errors from :func:`mmray.objectives.influence`.

Figures (:class:`OptimalityFigures`): ``optimality_ratio = agent / reference`` and
``gap_closed = (agent - baseline) / (reference - baseline)``; exact evaluation has no sampling
error (``*_se = 0``). The ratio alone flatters agents (the constant spread scores ~0.98 at the
default parameters); the gap closed says whether the agent learned inventory control.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmray.backtest import backtest
from mmray.checkpoint import load_policy
from mmray.checks import CheckError, choice, integer, real
from mmray.envs.config import EnvConfig
from mmray.features import policy_features
from mmray.model import fill_probability, inventory_transition
from mmray.objectives import expected_spread_income, influence, penalty_rate
from mmray.params import SimConfig, inventory_grid
from mmray.policy import ClosedFormPolicy, Policy, TablePolicy, ask_quotes, simulation_market

Method = Literal["auto", "exact", "monte_carlo"]
METHODS = ("auto", "exact", "monte_carlo")
DEFAULT_PATHS = 20_000
BENCHMARK_FILE = "benchmark.json"


class NotExact(ValueError):
    """The policy (or the market) cannot be evaluated by propagating the inventory distribution."""


class _NoDraws:
    """Stands in for the generator: a policy that draws random numbers is randomised, not exact here."""

    def __getattr__(self, name: str) -> Any:
        raise NotExact("the policy draws random numbers (a randomised policy): evaluate it by Monte Carlo")


# ----------------------------------------------------------------------------------------------- exact
@dataclass(frozen=True)
class PropagatedValue:
    """Exact objective-B value of a ``(t, q)`` policy from :func:`exact_value`.

    Attributes
    ----------
    value : float
        Expected ``value_B`` of an episode (currency).
    q_grid : ndarray (n,)
        Inventory levels ``-Q..Q``.
    distribution : ndarray (N+1, n)
        Probability of each inventory at each step time ``j dt`` (row ``j``).
    income : float
        Expected spread income ``Delta sum 1_fill delta`` (currency).
    penalty : float
        Expected running penalty ``(gamma sigma^2 / 2) int q^2 dt`` (currency).
    """

    value: float
    q_grid: np.ndarray
    distribution: np.ndarray
    income: float
    penalty: float


def same_problem(a: EnvConfig, b: EnvConfig) -> bool:
    """Whether two env configs have the same optimality benchmark: equal but for the reward's variant,
    scale and offset (``reward``, ``reward_scale``, ``reward_offset``), which change no policy's objective
    value (the offset moves every return by the same amount), and the observation (``features``,
    ``inventory_scale``: an agent's own; the reference, the baseline and the exact policy read none)."""
    return a.replace(reward=b.reward, reward_scale=b.reward_scale, reward_offset=b.reward_offset,
                     features=b.features, inventory_scale=b.inventory_scale) == b


def exact_refusal(policy: Policy, env: EnvConfig) -> str | None:
    """Why ``policy`` cannot be evaluated exactly in ``env`` (``None`` when it can, as far as can be
    told without asking it for quotes: randomisation and mid dependence are found by :func:`exact_value`)."""
    names = policy_features(policy)
    if names:
        return f"the policy observes features {list(names)} beyond (t, q)"
    if simulation_market(policy, env.market).tick > 0:
        return f"the market has a tick ({env.market.tick:g}): quotes are rounded relative to the mid"
    return None


def exact_value(policy: Policy, env: EnvConfig) -> PropagatedValue:
    """Objective B's expected value of ``policy`` in ``env``'s dynamics, by forward propagation of the
    inventory distribution (see the module docstring). Raises :class:`NotExact` when the policy is
    not a deterministic function of ``(t, q)`` in a tick-free market."""
    why = exact_refusal(policy, env)
    if why is not None:
        raise NotExact(why)
    market, problem, dt = simulation_market(policy, env.market), env.problem, env.dt
    q = inventory_grid(problem, market)
    n, d, q_max = q.size, market.trade_size, float(problem.q_max)  # type: ignore[arg-type]
    no_bid, no_ask = q + d > q_max + 1e-9, q - d < -q_max - 1e-9  # as mmray.sim.market_step
    i0 = int(np.argmin(np.abs(q - env.q0)))
    steps = env.n_steps
    rho = np.zeros((steps + 1, n))
    rho[0, i0] = 1.0
    pen = penalty_rate(market, problem) * dt * q * q
    drift = market.drift * dt * q
    s, s_other = np.full(n, market.s0), np.full(n, market.s0 + 1.0 + 0.1 * market.sigma)
    income = penalty = drift_total = 0.0
    draws = _NoDraws()
    for j in range(steps):
        t = j * dt
        bid, ask = (np.array(np.broadcast_to(x, (n,)), dtype=float) for x in ask_quotes(policy, t, q, s, draws))
        bid2, ask2 = ask_quotes(policy, t, q, s_other, draws)
        if not (np.array_equal(bid, np.broadcast_to(bid2, (n,))) and np.array_equal(ask, np.broadcast_to(ask2, (n,)))):
            raise NotExact("the policy's quotes depend on the mid price, not on (t, q) alone")
        if np.any(np.isnan(bid)) or np.any(np.isnan(ask)):
            raise ValueError(f"the policy quotes NaN at t={t:g} (use inf for a side not quoted)")
        bid[no_bid], ask[no_ask] = np.inf, np.inf
        pb = fill_probability(bid, market, dt, env.fill_model)
        pa = fill_probability(ask, market, dt, env.fill_model)
        gain = expected_spread_income(bid, ask, pb, pa, d)
        nxt = rho[j + 1] = inventory_transition(rho[j], pb * (1.0 - pa), pa * (1.0 - pb))
        income += float(rho[j] @ gain)
        penalty += float(nxt @ pen)
        drift_total += float(nxt @ drift)
    terminal = float(rho[-1] @ problem.terminal(q))
    rho.setflags(write=False)
    return PropagatedValue(income + drift_total - penalty - terminal, q, rho, income, penalty)


def inventory_rms(policy: Policy, env: EnvConfig) -> float:
    """Root mean square inventory of ``policy`` in ``env`` over an episode, ``sqrt(mean_j E[q_j^2])`` over the
    step times ``j dt``, ``j = 0..N`` (exact, from :func:`exact_value`'s propagated distribution)."""
    propagated = exact_value(policy, env)
    return float(np.sqrt(np.mean(propagated.distribution @ propagated.q_grid**2)))


DYNAMICS = ("market", "problem", "dt", "fill_model", "price_model", "q0")
"""The :class:`EnvConfig` fields that make the env's dynamics and objective (the rest is the agent's interface)."""


def check_dynamics(policy: Policy, env: EnvConfig) -> None:
    """Refuse an agent trained in another market, problem or step than ``env`` (a policy carrying its own
    ``env``, like :class:`mmray.envs.MLPPolicy`; its observation and action mapping may differ)."""
    own = getattr(policy, "env", None)
    if not isinstance(own, EnvConfig):
        return
    diff = [name for name in DYNAMICS if getattr(own, name) != getattr(env, name)]
    if diff:
        raise ValueError(f"the agent was trained in another env than the one evaluated: {', '.join(diff)} differ "
                         f"({ {n: (getattr(own, n), getattr(env, n)) for n in diff} })")


# ----------------------------------------------------------------------------------------------- Monte Carlo
def sim_config(env: EnvConfig, n_paths: int, seed: int) -> SimConfig:
    """The backtest settings of ``env`` (its ``dt``, models and ``q0``) with ``n_paths`` paths from ``seed``."""
    return SimConfig(dt=env.dt, n_paths=n_paths, price_model=env.price_model, fill_model=env.fill_model,  # type: ignore[arg-type]
                     seed=seed, q0=env.q0)


def path_values(policy: Policy, env: EnvConfig, n_paths: int, seed: int) -> np.ndarray:
    """Per-path objective-B values (:func:`mmray.objectives.influence` of ``value_B``) of ``n_paths``
    simulated episodes of ``policy`` in ``env`` from ``seed``: the same seed gives every policy the
    same fill and price variates, path for path (common random numbers)."""
    res = backtest(policy, env.market, env.problem, sim_config(env, n_paths, seed))
    return influence("value_B", res.per_path, res.market, env.problem)  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------- figures
@dataclass(frozen=True)
class OptimalityFigures:
    """An agent's value against the optimum of its env (see the module docstring).

    Attributes
    ----------
    agent_value, agent_value_se : float
        The agent's objective-B value (currency) and its standard error (0 when exact).
    reference_value, baseline_value, exact_policy_value : float
        Values of the reference optimum (``pi``), of the best constant half-spread, and of the
        continuous-time exact policy, on the same evaluation (exact, or the same Monte Carlo paths).
    optimality_ratio, optimality_ratio_se : float
        ``agent / reference`` and its paired standard error (delta method).
    gap_closed, gap_closed_se : float
        ``(agent - baseline) / (reference - baseline)`` and its paired standard error.
    method : {"exact", "monte_carlo"}
        How the agent was evaluated; ``n_paths``/``seed`` are 0/None for exact evaluation.
    """

    agent_value: float
    agent_value_se: float
    reference_value: float
    baseline_value: float
    exact_policy_value: float
    optimality_ratio: float
    optimality_ratio_se: float
    gap_closed: float
    gap_closed_se: float
    method: str
    n_paths: int = 0
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ReferenceSpec:
    """How the reference optimum of a continuous-action env is computed.

    Parameters
    ----------
    tick : float
        First quote-grid step (price units), default 0.05 (the issue's "fine grid").
    tolerance : float
        Halve the step until one halving changes the value by less than this (currency; default
        0.01, i.e. ~5e-4 of the reference-minus-baseline gap at the default parameters, far below the
        paired Monte Carlo standard error of 20,000 paths).
    max_refinements : int
        At most this many halvings (the last change is reported either way, with ``converged``).
    margin_ticks : int
        A refined grid spans the offsets the previous solution quotes plus this many previous steps
        on each side (clipped to the env's range); widened to the full range if the solution touches
        an inner edge.
    """

    tick: float = 0.05
    tolerance: float = 0.01
    max_refinements: int = 3
    margin_ticks: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "tick", real("ReferenceSpec.tick", self.tick, gt=0))
        object.__setattr__(self, "tolerance", real("ReferenceSpec.tolerance", self.tolerance, gt=0))
        object.__setattr__(self, "max_refinements", integer("ReferenceSpec.max_refinements", self.max_refinements,
                                                            ge=0))
        object.__setattr__(self, "margin_ticks", integer("ReferenceSpec.margin_ticks", self.margin_ticks, ge=1))


def _levels(low: float, high: float, tick: float) -> np.ndarray:
    """Integer levels ``l`` with ``low <= l tick <= high`` (1e-9 tolerance)."""
    first, last = math.ceil(low / tick - 1e-9), math.floor(high / tick + 1e-9)
    return np.arange(first, last + 1)


def _solve_pi(env: EnvConfig, tick: float, levels: np.ndarray) -> Any:
    from mmray.solvers import solve

    return solve(env.market, env.problem, method="pi", dt=env.dt, fill_model=env.fill_model,
                 price_model=env.price_model, tick=tick, levels=levels, allow_no_quote=False)


def _value_at_q0(solution: Any, env: EnvConfig) -> float:
    i0 = int(np.argmin(np.abs(solution.q_grid - env.q0)))
    return float(solution.theta[0, i0])


def reference_optimum(env: EnvConfig, spec: ReferenceSpec | None = None) -> tuple[TablePolicy, float, dict[str, Any]]:
    """The reference optimum of ``env``'s own dynamics: ``(policy, value, info)`` (see the module
    docstring). ``info`` records each grid solved (``tick``, offset range, value, seconds), the last
    ``refinement_change`` and whether it met the tolerance (``converged``)."""
    spec = spec or ReferenceSpec()
    if env.market.tick > 0:
        raise ValueError(f"the reference optimum needs a tick-free market (MarketParams.tick = {env.market.tick:g}): "
                         "the env then rounds quotes relative to the mid, which the tick-grid MDP does not model")
    low, high = env.offset_low, env.offset_high
    grids: list[dict[str, Any]] = []

    def solve_on(tick: float, levels: np.ndarray) -> Any:
        start = time.perf_counter()
        sol = _solve_pi(env, tick, levels)
        grids.append({"tick": tick, "offset_low": float(levels[0] * tick), "offset_high": float(levels[-1] * tick),
                      "levels": int(levels.size), "value": _value_at_q0(sol, env),
                      "seconds": round(time.perf_counter() - start, 3)})
        return sol

    if env.action_mode == "discrete":
        step = env.offset_step
        first = low / step
        if abs(first - round(first)) > 1e-9 * max(1.0, abs(first)):
            raise ValueError(f"the discrete env's reference needs offset_low ({low:g}) to be a multiple of "
                             f"offset_step ({step:g})")
        sol = solve_on(step, round(first) + np.arange(env.action_spec().levels))
        info = {"kind": "pi on the env's action grid (exact)", "grids": grids, "refinement_change": 0.0,
                "converged": True}
        return sol.policy(), grids[-1]["value"], info

    tick = spec.tick
    sol = solve_on(tick, _levels(low, high, tick))
    change, converged = math.nan, False
    for _ in range(spec.max_refinements):
        quoted = np.concatenate([sol.bid[np.isfinite(sol.bid)], sol.ask[np.isfinite(sol.ask)]])
        lo = max(low, float(quoted.min()) - spec.margin_ticks * tick)
        hi = min(high, float(quoted.max()) + spec.margin_ticks * tick)
        tick /= 2.0
        finer = solve_on(tick, _levels(lo, hi, tick))
        fq = np.concatenate([finer.bid[np.isfinite(finer.bid)], finer.ask[np.isfinite(finer.ask)]])
        inner_edge = (lo > low and fq.min() <= lo + 1e-9) or (hi < high and fq.max() >= hi - 1e-9)
        if inner_edge:  # the restricted grid truncates the optimum: solve on the env's whole range
            finer = solve_on(tick, _levels(low, high, tick))
        change = grids[-1]["value"] - _value_at_q0(sol, env)
        sol = finer
        if abs(change) < spec.tolerance:
            converged = True
            break
    info = {"kind": "pi on a refined quote grid", "grids": grids, "refinement_change": float(change),
            "tolerance": spec.tolerance, "converged": converged or spec.max_refinements == 0}
    return sol.policy(), grids[-1]["value"], info


def best_constant(env: EnvConfig, xatol: float = 1e-6) -> tuple[ClosedFormPolicy, float]:
    """The symmetric constant half-spread with the largest exact value in ``env`` (bounded Brent search
    over ``[max(offset_low, 1e-6), offset_high]``): ``(policy, value)``."""
    from scipy.optimize import minimize_scalar

    def build(h: float) -> ClosedFormPolicy:
        return ClosedFormPolicy("constant", env.market, env.problem, half_spread=float(h),
                                provenance={"strategy": "constant", "role": "best constant half-spread"})

    res = minimize_scalar(lambda h: -exact_value(build(h), env).value, bounds=(max(env.offset_low, 1e-6),
                          env.offset_high), method="bounded", options={"xatol": xatol})
    policy = build(float(res.x))
    return policy, exact_value(policy, env).value


def exact_policy(env: EnvConfig) -> TablePolicy:
    """The continuous-time exact solution (``make_strategy("optimal")``) of ``env``'s market and problem."""
    from mmray.strategies import make_strategy

    return make_strategy("optimal", env.market, env.problem)  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class OptimalityBenchmark:
    """The reference optimum, the best constant half-spread and the continuous exact policy of one env,
    computed once (:meth:`build`) and used to evaluate any number of agents (:meth:`evaluate`).

    Attributes
    ----------
    env : EnvConfig
        The environment (tick-free market).
    reference, baseline, exact : Policy
        The three policies; ``*_value`` their exact values (currency).
    reference_info : dict
        From :func:`reference_optimum` (grids solved, ``refinement_change``, ``converged``).
    baseline_half_spread : float
        The best constant half-spread (price units).
    seconds : float
        Time spent building.
    """

    env: EnvConfig
    reference: TablePolicy
    reference_value: float
    reference_info: dict[str, Any]
    baseline: ClosedFormPolicy
    baseline_value: float
    exact: TablePolicy
    exact_value: float
    seconds: float = 0.0
    _mc_cache: dict[tuple[int, int], dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, env: EnvConfig, spec: ReferenceSpec | None = None) -> OptimalityBenchmark:
        start = time.perf_counter()
        reference, ref_value, info = reference_optimum(env, spec)
        baseline, base_value = best_constant(env)
        exact = exact_policy(env)
        exact_val = exact_value(exact, env).value
        return cls(env, reference, ref_value, info, baseline, base_value, exact, exact_val,
                   time.perf_counter() - start)

    @property
    def baseline_half_spread(self) -> float:
        return float(self.baseline.half_spread)  # type: ignore[arg-type]

    def evaluate(self, policy: Policy, method: Method = "auto", n_paths: int = DEFAULT_PATHS,
                 seed: int = 0) -> OptimalityFigures:
        """The optimality figures of ``policy`` in this env. ``method``: ``"exact"`` (forward propagation;
        :class:`NotExact` if impossible), ``"monte_carlo"`` (``n_paths`` paths from ``seed`` for the
        agent, the reference, the baseline and the exact policy alike), ``"auto"`` (exact when possible)."""
        choice("method", method, METHODS)
        check_dynamics(policy, self.env)
        if method != "monte_carlo":
            try:
                value = exact_value(policy, self.env).value
            except NotExact:
                if method == "exact":
                    raise
            else:
                return self._figures(value, 0.0, self.reference_value, self.baseline_value, self.exact_value,
                                     None, "exact", 0, None)
        n_paths = integer("n_paths", n_paths, ge=2)
        seed = integer("seed", seed, ge=0)
        ref = self.monte_carlo_values(n_paths, seed)
        return self._figures(path_values(policy, self.env, n_paths, seed), None, ref["reference"], ref["baseline"],
                             ref["exact"], ref, "monte_carlo", n_paths, seed)

    def monte_carlo_values(self, n_paths: int, seed: int) -> dict[str, np.ndarray]:
        """Per-path values of ``reference``, ``baseline`` and ``exact`` on ``n_paths`` paths from ``seed``
        (:func:`path_values`; kept, so that every agent evaluated on those paths reuses them)."""
        key = (n_paths, seed)
        if key not in self._mc_cache:
            self._mc_cache[key] = {name: path_values(getattr(self, name), self.env, n_paths, seed)
                                   for name in ("reference", "baseline", "exact")}
        return self._mc_cache[key]

    @staticmethod
    def _figures(agent: Any, agent_se: float | None, ref: Any, base: Any, exact: Any,
                 paths: Mapping[str, np.ndarray] | None, method: str, n_paths: int, seed: int | None,
                 ) -> OptimalityFigures:
        if paths is None:
            a, r, b = float(agent), float(ref), float(base)
            return OptimalityFigures(a, float(agent_se or 0.0), r, b, float(exact), a / r, 0.0,
                                     (a - b) / (r - b), 0.0, method)
        av, rv, bv = np.asarray(agent), np.asarray(ref), np.asarray(base)
        a, r, b = float(av.mean()), float(rv.mean()), float(bv.mean())
        root = math.sqrt(av.size)
        ratio, gap = a / r, (a - b) / (r - b)
        ratio_se = float(np.std((av - ratio * rv) / r, ddof=1)) / root
        gap_se = float(np.std(((av - bv) - gap * (rv - bv)) / (r - b), ddof=1)) / root
        return OptimalityFigures(a, float(av.std(ddof=1)) / root, r, b, float(np.mean(exact)), ratio, ratio_se, gap,
                                 gap_se, method, n_paths, seed)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``benchmark.json`` and the reference policy checkpoint (``reference/``) under ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.reference.save(directory / "reference")
        doc = {"env": self.env.to_dict(), "reference_value": self.reference_value,
               "reference_info": self.reference_info, "baseline_half_spread": self.baseline_half_spread,
               "baseline_value": self.baseline_value, "exact_policy_value": self.exact_value,
               "seconds": self.seconds}
        (directory / BENCHMARK_FILE).write_text(json.dumps(doc, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path, env: EnvConfig | None = None) -> OptimalityBenchmark:
        """Read a saved benchmark (the exact policy is solved again, the values are checked against the
        saved ones); with ``env``, refuse a benchmark of another env."""
        directory = Path(directory)
        doc = json.loads((directory / BENCHMARK_FILE).read_text())
        saved_env = EnvConfig.from_dict(doc["env"])
        if env is not None:
            if not same_problem(saved_env, env):
                raise ValueError(f"{directory}: the benchmark was computed for another env ({saved_env}), not {env}")
            saved_env = env  # differs at most in the reward's variant or scale, which no figure depends on
        reference = load_policy(directory / "reference")
        if not isinstance(reference, TablePolicy):
            raise CheckError(f"{directory}/reference", type(reference).kind, "a table policy (pi's solution)")
        baseline = ClosedFormPolicy("constant", saved_env.market, saved_env.problem,
                                    half_spread=doc["baseline_half_spread"],
                                    provenance={"strategy": "constant", "role": "best constant half-spread"})
        exact = exact_policy(saved_env)
        for name, policy, key in (("reference", reference, "reference_value"), ("baseline", baseline, "baseline_value"),
                                  ("exact policy", exact, "exact_policy_value")):
            value = exact_value(policy, saved_env).value  # milliseconds: forward propagation
            if not math.isclose(value, float(doc[key]), rel_tol=1e-9, abs_tol=1e-9):
                raise ValueError(f"{directory}: the saved {name} value {doc[key]} is not what the {name} scores "
                                 f"({value:.12g}): a stale or edited benchmark; build it again")
        return cls(saved_env, reference, float(doc["reference_value"]), doc["reference_info"], baseline,
                   float(doc["baseline_value"]), exact, float(doc["exact_policy_value"]), float(doc["seconds"]))

    def inventory_rms(self) -> float:
        """:func:`inventory_rms` of the reference optimum: the typical size of the inventories an agent near
        the optimum sees (4.35 at the default env, where ``Q = 30``)."""
        return inventory_rms(self.reference, self.env)

    def summary(self) -> dict[str, Any]:
        """The benchmark's numbers (JSON-ready)."""
        return {"reference_value": self.reference_value, "baseline_value": self.baseline_value,
                "baseline_half_spread": self.baseline_half_spread, "exact_policy_value": self.exact_value,
                "refinement_change": self.reference_info.get("refinement_change"),
                "reference_converged": self.reference_info.get("converged"), "seconds": self.seconds}


__all__ = ["DEFAULT_PATHS", "DYNAMICS", "NotExact", "OptimalityBenchmark", "OptimalityFigures", "PropagatedValue",
           "ReferenceSpec", "best_constant", "check_dynamics", "exact_policy", "exact_refusal", "exact_value",
           "inventory_rms", "path_values", "reference_optimum", "same_problem", "sim_config"]

"""Benchmarks of the numerical solvers (fd, pi, csp) against the exact solver.

Prints, measured in this run:

1. ``fd``: wall time and max quote / value error vs the exact solution for the three time
   schemes over grid sizes, and the observed order of convergence (GLFT 2013 parameters);
2. ``pi``: wall time and max quote error vs exact as tick and dt shrink together, finite horizon
   and long-run average; and the tick-grid optimum vs the exact policy rounded to ticks, both
   evaluated exactly on the MDP and on the simulator (common random numbers);
3. ``csp``: LP size (full occupation LP and Dantzig-Wolfe master) and solve time for
   Q = 20 x 200 steps x 15 tick levels, unconstrained and with each constraint;
4. the worked example of docs/solvers.md: an exchange obligation and what it costs.

Usage::

    .venv/bin/python benchmarks/solvers.py                 # everything (~1-2 minutes)
    .venv/bin/python benchmarks/solvers.py --plots docs/img  # also write the convergence plots
    .venv/bin/python benchmarks/solvers.py --only csp      # one section
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

from mmray.backtest import backtest
from mmray.params import MarketParams, ProblemParams, SimConfig
from mmray.policy import TablePolicy
from mmray.solvers.constraints import Constraints
from mmray.solvers.csp import solve_csp
from mmray.solvers.discrete import TickGrid
from mmray.solvers.exact import generator, solve_exact, stationary_quotes
from mmray.solvers.fd import solve_fd
from mmray.solvers.intensity import Logistic, PowerLaw
from mmray.solvers.pi import solve_pi

GLFT = MarketParams(sigma=0.3, A=0.9, k=0.3)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def quote_err(sol, ref) -> float:
    return float(max(np.nanmax(np.abs(sol.bid - ref.bid)), np.nanmax(np.abs(sol.ask - ref.ask))))


# ---------------------------------------------------------------------------- fd
def bench_fd(plots: Path | None) -> None:
    problem = ProblemParams(gamma=0.01, T=600.0, q_max=30, objective="A")
    print("== fd: GLFT 2013 parameters (sigma=0.3, A=0.9, k=0.3, gamma=0.01, T=600, Q=30, objective A)")
    print(f"{'scheme':>9} {'n_steps':>8} {'dt':>7} {'seconds':>8} {'max|quote err|':>15} {'max|theta err|':>15} "
          f"{'order':>6}")
    steps = [300, 600, 1200, 2400, 4800, 9600]
    results: dict[str, tuple[list[float], list[float]]] = {}
    for scheme in ("explicit", "implicit", "cn"):
        dts, errs, prev = [], [], None
        for n in steps:
            try:
                sol, sec = timed(solve_fd, GLFT, problem, n_steps=n, scheme=scheme)
            except ValueError as exc:  # the explicit stability limit of the whole solve
                advice = re.search(r"n_steps >= \d+ \([^)]*\)", str(exc))
                print(f"{scheme:>9} {n:>8} {problem.T / n:>7.4f}   refused: {str(exc)[:50]}... "
                      f"{advice.group(0) if advice else ''}")
                continue
            ex = solve_exact(GLFT, problem, times=sol.times)
            qe, te = quote_err(sol, ex), float(np.max(np.abs(sol.theta - ex.theta)))
            order = f"{np.log2(prev / qe):6.2f}" if prev else "     -"
            print(f"{scheme:>9} {n:>8} {problem.T / n:>7.4f} {sec:>8.3f} {qe:>15.3e} {te:>15.3e} {order}")
            prev = qe
            dts.append(problem.T / n)
            errs.append(qe)
        results[scheme] = (dts, errs)
    sol = solve_fd(GLFT, problem, n_steps=4800)
    i0 = 30
    print(f"   check value (GLFT 2013): cn, 4800 steps, t=0, q=0: bid {sol.bid[0, i0]:.4f} (reference 3.3130)")
    print("-- general intensities (cn, 1200 steps, objective A and B)")
    for lam in (PowerLaw(0.9, 0.3, 3.0), Logistic(0.9, 0.5, 0.3)):
        for obj in ("A", "B"):
            pr = problem.replace(objective=obj)
            sol, sec = timed(solve_fd, GLFT, pr, n_steps=1200, intensity=lam)
            how = "closed form" if lam.closed_form_delta(np.zeros(1), 0.0 if obj == "B" else 0.01, 1.0) is not None \
                else "Illinois on the first-order condition"
            print(f"   {lam.name:>9} objective {obj}: {sec:6.2f} s (sup over delta by {how}); "
                  f"t=0, q=0 bid {sol.bid[0, i0]:.4f}")
    if plots is not None:
        _plot_fd(results, plots / "fd_convergence.png")


def _plot_fd(results: dict[str, tuple[list[float], list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
    for scheme, (dts, errs) in results.items():
        if dts:
            ax.loglog(dts, errs, "o-", label=scheme)
    dt = np.array(results["implicit"][0])
    e1 = np.array(results["implicit"][1])
    e2 = np.array(results["cn"][1])
    ax.loglog(dt, e1[0] * (dt / dt[0]), "k:", lw=0.8, label="slope 1")
    ax.loglog(dt, e2[0] * (dt / dt[0]) ** 2, "k--", lw=0.8, label="slope 2")
    ax.set_xlabel("dt")
    ax.set_ylabel("max |quote error| vs exact")
    ax.set_title("fd vs exact, GLFT 2013 parameters (objective A)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    print(f"   wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


# ---------------------------------------------------------------------------- pi
def bench_pi(plots: Path | None) -> None:
    market = MarketParams(sigma=0.3, A=0.9, k=0.3)
    problem = ProblemParams(gamma=0.01, T=60.0, q_max=10, objective="B", terminal_penalty=0.01)
    print("\n== pi: finite horizon, objective B (T=60, Q=10), quote error at t=0 vs exact")
    print(f"{'tick':>7} {'dt':>7} {'levels':>7} {'seconds':>8} {'max|quote err|':>15} {'|value err| q=0':>16}")
    ex_full = solve_exact(market, problem, n_times=2)
    lo = float(np.nanmin([ex_full.bid, ex_full.ask])) - 0.5
    hi = float(np.nanmax([ex_full.bid, ex_full.ask])) + 1.0
    rows = []
    for tick, dt in [(0.4, 1.0), (0.2, 0.5), (0.1, 0.25), (0.05, 0.125), (0.025, 0.0625)]:
        levels = list(range(int(np.floor(lo / tick)), int(np.ceil(hi / tick)) + 1))
        sol, sec = timed(solve_pi, market, problem, dt=dt, tick=tick, levels=levels)
        ex = solve_exact(market, problem, times=sol.times[:1])
        qe = float(max(np.nanmax(np.abs(sol.bid[0] - ex.bid[0])), np.nanmax(np.abs(sol.ask[0] - ex.ask[0]))))
        ve = abs(sol.theta[0, 10] - ex.theta[0, 10])
        print(f"{tick:>7} {dt:>7} {len(levels):>7} {sec:>8.3f} {qe:>15.4f} {ve:>16.4f}")
        rows.append((dt, qe, ve))
    print("-- long-run average (policy iteration) vs the exact ground state")
    _, bid_ex, ask_ex = stationary_quotes(market, problem)
    from scipy.linalg import eigh_tridiagonal

    diag, off, _ = generator(market, problem)
    gain_ex = -eigh_tridiagonal(diag, off, eigvals_only=True)[0] * market.trade_size / market.k
    for tick, dt in [(0.2, 0.5), (0.1, 0.25), (0.05, 0.125), (0.025, 0.0625)]:
        levels = list(range(int(np.floor(lo / tick)), int(np.ceil(hi / tick)) + 1))
        sol, sec = timed(solve_pi, market, problem, dt=dt, tick=tick, levels=levels, horizon="average")
        qe = float(max(np.nanmax(np.abs(sol.bid[0] - bid_ex)), np.nanmax(np.abs(sol.ask[0] - ask_ex))))
        print(f"   tick {tick:<6} dt {dt:<7} {sec:6.3f} s  {sol.info['iterations']} iterations  quote err {qe:.4f}  "
              f"gain {sol.info['gain_per_time']:.4f} (exact {gain_ex:.4f})")
    if plots is not None:
        _plot_pi(rows, plots / "pi_convergence.png")
    _pi_vs_rounded(market)


def _pi_vs_rounded(market: MarketParams) -> None:
    problem = ProblemParams(gamma=0.01, T=60.0, q_max=10, objective="B", terminal_penalty=0.05)
    print("-- pi vs the exact continuous policy rounded to the tick grid (T=60, Q=10, dt=1, 15 levels)")
    print(f"{'tick':>6} {'pi (MDP)':>10} {'rounded (MDP)':>14} {'gain':>8} {'MC pi':>10} {'MC rounded':>11} "
          f"{'MC paired diff':>18}")
    for tick in (0.25, 0.5, 1.0):
        opts = {"n_steps": 60, "tick": tick, "n_levels": 15}
        sol = solve_pi(market, problem, **opts)
        mdp = TickGrid(**opts).mdp(market, problem)
        ex = solve_exact(market, problem, times=mdp.times)
        b_idx, a_idx = mdp.nearest_levels(ex.bid[:-1], "bid"), mdp.nearest_levels(ex.ask[:-1], "ask")
        v_round = mdp.evaluate(b_idx, a_idx)[0, 10]
        bid, ask = mdp.offsets(b_idx, a_idx)
        rounded = TablePolicy.from_offsets(mdp.times, mdp.q, np.vstack([bid, bid[-1:]]), np.vstack([ask, ask[-1:]]))
        cfg = SimConfig(dt=1.0, n_paths=100_000, seed=1)
        r1, r2 = backtest(sol.policy(), market, problem, cfg), backtest(rounded, market, problem, cfg)
        pen = 0.5 * problem.gamma * market.sigma**2
        d = (r1.per_path["pnl"] - pen * r1.per_path["q2_integral"]) - (
            r2.per_path["pnl"] - pen * r2.per_path["q2_integral"])
        print(f"{tick:>6} {sol.theta[0, 10]:>10.3f} {v_round:>14.3f} {sol.theta[0, 10] - v_round:>8.3f} "
              f"{r1.metrics['value_B']:>10.3f} {r2.metrics['value_B']:>11.3f} "
              f"{d.mean():>9.3f} +- {d.std(ddof=1) / np.sqrt(d.size):.3f}")


def _plot_pi(rows: list[tuple[float, float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dt, qe, ve = (np.array(c) for c in zip(*rows, strict=True))
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
    ax.loglog(dt, qe, "o-", label="max |quote error| at t=0")
    ax.loglog(dt, ve, "s-", label="|value error| at q=0")
    ax.loglog(dt, ve[0] * dt / dt[0], "k:", lw=0.8, label="slope 1")
    ax.set_xlabel("dt  (tick = 0.4 dt)")
    ax.set_ylabel("error vs exact")
    ax.set_title("pi (tick grid, discrete time) vs exact, objective B")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"   wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


# ---------------------------------------------------------------------------- csp
def bench_csp() -> None:
    market = MarketParams(sigma=0.3, A=0.9, k=0.3)
    problem = ProblemParams(gamma=0.01, T=200.0, q_max=20, objective="B", terminal_penalty=0.01)
    opts = {"n_steps": 200, "tick": 0.5, "n_levels": 15}
    print("\n== csp: Q=20 (41 levels) x 200 steps x 15 tick levels (+ no quote) per side, objective B")
    pi, sec_pi = timed(solve_pi, market, problem, **opts)
    print(f"   pi (backward induction) {sec_pi:.3f} s, value {pi.info['value_q0']:.6f}")
    cases = {
        "none": Constraints(),
        "max_spread=5": Constraints(max_spread=5.0),
        "min_two_sided=0.999": Constraints(min_two_sided=0.999),
        "max_limit_prob=1e-5": Constraints(max_limit_prob=1e-5),
        "max_terminal_q2=2": Constraints(max_terminal_q2=2.0),
        "bid/ask ticks [7,8]": Constraints(bid_min_ticks=7, ask_max_ticks=8),
        "all four": Constraints(max_spread=6.0, min_two_sided=0.99, max_limit_prob=1e-5, max_terminal_q2=4.0),
    }
    print(f"{'constraints':>22} {'full LP cols x rows':>22} {'master':>10} {'CG it':>6} {'solve s':>8} "
          f"{'+costs s':>9} {'objective':>12} {'rel. to pi':>11}")
    for label, cons in cases.items():
        fast, sec = timed(solve_csp, market, problem, cons, constraint_costs=False, **opts)
        _, sec_all = timed(solve_csp, market, problem, cons, **opts)
        full, master = fast.info["lp_full"], fast.info["lp_master"]
        rel = fast.info["objective"] / pi.info["value_q0"] - 1.0
        print(f"{label:>22} {full['columns']:>12,} x {full['rows']:>6,} {master['columns']:>4} x {master['rows']:<3} "
              f"{fast.info['cg_iterations_total']:>6} {sec:>8.3f} {sec_all:>9.3f} {fast.info['objective']:>12.4f} "
              f"{rel:>11.2e}")


def bench_obligation() -> None:
    """Worked example of docs/solvers.md: an exchange's market-maker obligation.

    The same problem as the script in the docs (terminal penalty 0.01 included: without it the
    numbers differ in the third decimal) and the same numbers.
    """
    market = MarketParams(sigma=0.3, A=0.9, k=0.3)
    problem = ProblemParams(gamma=0.01, T=300.0, q_max=10, objective="B", terminal_penalty=0.01)
    opts = {"n_steps": 300, "tick": 0.5, "n_levels": 15}
    print("\n== worked example: obligation max_spread = 3.0 (6 ticks) and quote both sides >= 99% of the time")
    free = solve_pi(market, problem, **opts)
    cons = Constraints(max_spread=3.0, min_two_sided=0.99)
    sol, sec = timed(solve_csp, market, problem, cons, **opts)
    print(f"   unconstrained value {free.info['value_q0']:.3f}; constrained {sol.info['objective']:.3f} "
          f"({sec:.2f} s); randomised states: {sol.info['randomised_states']}")
    for name, rep in sol.info["constraints"].items():
        print(f"   {name:>14}: bound {rep['bound']}, activity {rep['activity']:.4f}, binding {rep['binding']}, "
              f"shadow price {rep['shadow_price']:.4f} ({rep['shadow_price_units']}), cost {rep['cost']:.3f}")
    spread_free = np.nanmean((free.bid + free.ask)[:-1])
    print(f"   mean two-sided spread without the obligation: {spread_free:.3f}")
    n = 50_000
    res = backtest(sol.policy(), market, problem, SimConfig(dt=1.0, n_paths=n, seed=3))
    res_free = backtest(free.policy(), market, problem, SimConfig(dt=1.0, n_paths=n, seed=3))
    print(f"   simulator: value_B {res.metrics['value_B']:.3f} +- {res.metrics['value_B_se']:.3f} (LP "
          f"{sol.info['objective']:.3f}); free policy {res_free.metrics['value_B']:.3f} +- "
          f"{res_free.metrics['value_B_se']:.3f}; mean spread {res.metrics['spread_mean']:.3f} vs "
          f"{res_free.metrics['spread_mean']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plots", type=Path, default=None, help="directory for the convergence plots")
    parser.add_argument("--only", choices=("fd", "pi", "csp", "example"), default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    if args.only in (None, "fd"):
        bench_fd(args.plots)
    if args.only in (None, "pi"):
        bench_pi(args.plots)
    if args.only in (None, "csp"):
        bench_csp()
    if args.only in (None, "example"):
        bench_obligation()
    print(f"\ntotal {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()

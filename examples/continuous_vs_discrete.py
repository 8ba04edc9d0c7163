"""When is the continuous-time optimum a good proxy in a simulator that steps in ``dt``?

How to run::

    python examples/continuous_vs_discrete.py                 # table (markdown) and docs/img/continuous_gap.png
    python examples/continuous_vs_discrete.py --smoke         # two coarse steps, seconds (the tests run it)

What to expect: for objective B at the GLFT 2013 figure parameters (σ=0.3, A=0.9, k=0.3, γ=0.01,
T=600, Q=30, Poisson fills), the value of three policies *in the simulator's own discrete-time
dynamics*, computed exactly by forward propagation of the inventory distribution
(:func:`mmray.tuning.rl_eval.exact_value`), for several ``dt``: the discrete-time optimum (``pi`` on
a quote grid refined until a halving moves the value by < 0.01), the continuous-time exact policy
(``optimal``) and the best constant half-spread. The gap between the first two grows with the fill
probability per step ``p = 1 - exp(-A dt e^{-k δ̃})`` (δ̃ = 1/k for objective B): at dt = 1 (p ≈ 0.28)
it is ≈ 12.5 (1131.7 vs 1119.2), and it vanishes as dt → 0.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from mmray.envs.config import EnvConfig
from mmray.tuning.rl_eval import OptimalityBenchmark

DTS = (0.25, 0.5, 1.0, 2.0, 3.0)


def run(dts: tuple[float, ...], T: float) -> list[dict[str, float]]:
    """One row per ``dt``: fill probability per step at δ̃, the three values and the gap."""
    rows = []
    for dt in dts:
        env = EnvConfig(dt=dt, problem=EnvConfig().problem.replace(T=T))
        start = time.perf_counter()
        bench = OptimalityBenchmark.build(env)
        m = env.market
        p = -math.expm1(-m.A * dt * math.exp(-m.k * (1.0 / m.k)))
        rows.append({"dt": dt, "A_dt": m.A * dt, "p_fill": p, "discrete": bench.reference_value,
                     "continuous": bench.exact_value, "constant": bench.baseline_value,
                     "gap": bench.reference_value - bench.exact_value, "seconds": time.perf_counter() - start})
        print(f"dt={dt:g}: discrete {bench.reference_value:.2f}, continuous {bench.exact_value:.2f}, "
              f"constant {bench.baseline_value:.2f} ({rows[-1]['seconds']:.0f} s)", flush=True)
    return rows


def markdown(rows: list[dict[str, float]]) -> str:
    head = ("| dt | A·dt | P(fill) per step at δ̃ | discrete-time optimum | continuous-time optimum | gap | "
            "best constant spread |\n|---|---|---|---|---|---|---|")
    body = [f"| {r['dt']:g} | {r['A_dt']:.3g} | {r['p_fill']:.3f} | {r['discrete']:.2f} | {r['continuous']:.2f} | "
            f"{r['gap']:.2f} ({100 * r['gap'] / r['discrete']:.2f}%) | {r['constant']:.2f} |" for r in rows]
    return "\n".join([head, *body])


def plot(rows: list[dict[str, float]], path: Path, T: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    p = [r["p_fill"] for r in rows]
    for key, label, style in (("discrete", "discrete-time optimum (pi, exact in the simulator's dynamics)", "o-"),
                              ("continuous", "continuous-time optimum (exact solution)", "s--"),
                              ("constant", "best constant half-spread", "^:")):
        ax1.plot([r["dt"] for r in rows], [r[key] for r in rows], style, label=label)
    ax1.set_xlabel("time step dt [time]")
    ax1.set_ylabel("value_B in the simulator [currency]")
    ax1.set_title("value of each policy in the simulator (exact)", fontsize=10)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.plot(p, [100 * r["gap"] / r["discrete"] for r in rows], "o-", color="C3")
    for r, x in zip(rows, p, strict=True):
        ax2.annotate(f"dt={r['dt']:g}", (x, 100 * r["gap"] / r["discrete"]), textcoords="offset points",
                     xytext=(4, -10), fontsize=8)
    ax2.set_xlabel("fill probability per step at the myopic quote δ̃ = 1/k")
    ax2.set_ylabel("shortfall of the continuous optimum [%]")
    ax2.set_title("(discrete − continuous) / discrete optimum", fontsize=10)
    ax2.grid(alpha=0.3)
    fig.suptitle(f"Continuous- vs discrete-time optimum: σ=0.3, A=0.9, k=0.3, γ=0.01, T={T:g}, Q=30, "
                 "objective B, Poisson fills", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="two coarse steps on a short horizon (seconds)")
    parser.add_argument("--out", type=Path, default=Path("docs/img/continuous_gap.png"),
                        help="figure path (default: %(default)s)")
    args = parser.parse_args(argv)
    dts, T = ((1.0, 2.0), 60.0) if args.smoke else (DTS, 600.0)
    rows = run(dts, T)
    print(markdown(rows))
    if not args.smoke:
        print(f"wrote {plot(rows, args.out, T)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Reproduce the simulation table of Avellaneda & Stoikov (2008), §3.3.

How to run::

    python examples/reproduce_as2008.py                 # 10,000 paths per row, ~2 s
    python examples/reproduce_as2008.py --paths 1000    # the paper's sample size
    python examples/reproduce_as2008.py --markdown      # the table as Markdown (docs/reproductions.md)

What to expect: for gamma = 0.1, 0.01 and 1, the "inventory" strategy (mmray's ``as``) and the
"symmetric" strategy, the average spread, mean profit, std of profit, mean and std of the final
inventory, next to the published numbers (1000 paths in the paper); mmray's numbers carry
standard errors, and agree with the paper within a few of them. Below the table, the symmetric
strategy's exact moments (:func:`mmray.model.constant_quote_moments`: a constant quote has a closed
form) next to the paper and the simulation.

Setup (the paper's): s = 100, T = 1, sigma = 2, dt = 0.005, k = 1.5, A = 140, q0 = 0; the mid moves
+-sigma sqrt(dt) with probability 1/2; a quote at distance delta is hit with probability
A exp(-k delta) dt in each step; no inventory bound.
"""

from __future__ import annotations

import argparse

from mmray import MarketParams, ProblemParams, SimConfig, backtest, make_strategy
from mmray.model import as_mean_spread, constant_quote_moments

# (spread, profit, std(profit), final q, std(final q)) from AS 2008 §3.3
PUBLISHED = {
    (0.1, "as"): (1.49, 65.0, 6.6, 0.08, 2.9),
    (0.1, "symmetric"): (1.49, 68.4, 12.7, 0.26, 8.4),
    (0.01, "as"): (1.35, 68.6, 8.7, 0.12, 5.1),
    (0.01, "symmetric"): (1.35, 68.8, 12.8, 0.09, 8.7),
    (1.0, "as"): (3.02, 31.4, 5.0, 0.02, 1.7),
    (1.0, "symmetric"): (3.02, 44.0, 11.0, 0.00, 5.1),
}
LABEL = {"as": "inventory", "symmetric": "symmetric"}


def run(paths: int, seed: int) -> list[dict[str, object]]:
    """One backtest per (gamma, strategy); returns rows with published and simulated numbers."""
    market = MarketParams(sigma=2.0, A=140.0, k=1.5, s0=100.0)
    config = SimConfig(dt=0.005, n_paths=paths, price_model="binomial", fill_model="linear", seed=seed)
    rows = []
    for (gamma, name), published in PUBLISHED.items():
        problem = ProblemParams(gamma=gamma, T=1.0, q_max=None)
        m = backtest(make_strategy(name, market, problem), market, problem, config).metrics
        ours = (m["spread_mean"], m["pnl_mean"], m["pnl_std"], m["q_final_mean"], m["q_final_std"])
        se = (None, m["pnl_mean_se"], m["pnl_std_se"], m["q_final_mean_se"], m["q_final_std_se"])
        row = {"gamma": gamma, "strategy": LABEL[name], "published": published, "mmray": ours, "se": se}
        if name == "symmetric":
            half = 0.5 * as_mean_spread(market, problem)
            row["exact"] = constant_quote_moments(market, half, problem.T, config)
        rows.append(row)
    return rows


def exact_lines(rows: list[dict[str, object]], markdown: bool) -> list[str]:
    """The symmetric strategy: exact profit mean/std and final-inventory std vs paper and simulation."""
    head = ("| γ | profit exact / paper / mmray | std(profit) exact / paper / mmray "
            "| std(final q) exact / paper / mmray |")
    lines = [head, "|---|---|---|---|"] if markdown else ["symmetric strategy, exact moments / paper / mmray:"]
    for r in rows:
        if "exact" not in r:
            continue
        ex, pub, ours = r["exact"], r["published"], r["mmray"]
        cells = [f"{e:.2f} / {pub[i]:.2f} / {ours[i]:.2f}"  # type: ignore[index]
                 for e, i in ((ex.pnl_mean, 1), (ex.pnl_std, 2), (ex.q_final_std, 4))]  # type: ignore[attr-defined]
        lines.append(f"| {r['gamma']:g} | " + " | ".join(cells) + " |" if markdown
                     else f"  gamma {r['gamma']:g}: profit {cells[0]}, std {cells[1]}, std q_T {cells[2]}")
    return lines


def markdown(rows: list[dict[str, object]], paths: int, seed: int) -> str:
    cols = ("spread", "profit", "std(profit)", "final q", "std(final q)")
    head = "| γ | strategy | " + " | ".join(f"{c} paper / mmray" for c in cols) + " |"
    lines = [f"mmray: {paths} paths per row, seed {seed}; ± is one standard error.", "", head,
             "|" + "---|" * (2 + len(cols))]
    for r in rows:
        cells = []
        for pub, ours, se in zip(r["published"], r["mmray"], r["se"], strict=True):  # type: ignore[call-overload]
            cells.append(f"{pub:.2f} / {ours:.2f}" + (f" ± {se:.2f}" if se is not None else ""))
        lines.append(f"| {r['gamma']:g} | {r['strategy']} | " + " | ".join(cells) + " |")
    lines += ["", "Symmetric strategy: exact moments (`mmray.model.constant_quote_moments`), the paper, mmray.", ""]
    return "\n".join(lines + exact_lines(rows, markdown=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Reproduce the AS 2008 simulation table.")
    parser.add_argument("--paths", type=int, default=10_000, help="paths per row [%(default)s]")
    parser.add_argument("--seed", type=int, default=2008)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    rows = run(args.paths, args.seed)
    if args.markdown:
        print(markdown(rows, args.paths, args.seed))
        return 0
    print(f"{'gamma':>6} {'strategy':>10} | {'spread':>13} {'profit':>13} {'std':>13} {'q_T':>13} {'std q_T':>13}")
    for r in rows:
        pairs = " ".join(f"{p:6.2f}/{o:6.2f}" for p, o in zip(r["published"], r["mmray"], strict=True))  # type: ignore[call-overload]
        print(f"{r['gamma']:>6g} {r['strategy']:>10} | {pairs}")
    print("(paper / mmray)")
    print("\n".join(exact_lines(rows, markdown=False)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

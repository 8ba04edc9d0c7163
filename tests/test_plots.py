"""Figure content, asserted on the matplotlib Figure objects of mmray.plots (not on file sizes):
titles carry the run's settings, every axis and colour bar its unit, legends name what is drawn,
no curve hides another, tick-grid quotes are step functions with the unquoted side marked, the
comparison draws 95% intervals from the metrics' standard errors, robustness panels have their
own y-scales."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.patches import Polygon, Rectangle

from mmray import plots
from mmray.backtest import BacktestResult, backtest
from mmray.params import MarketParams, ProblemParams, SimConfig
from mmray.solvers import solve
from mmray.strategies import make_strategy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MARKET = MarketParams()  # GLFT 2013: sigma 0.3, A 0.9, k 0.3


def _title(fig: Figure) -> str:
    return fig.get_suptitle()


def _curves(ax):
    """Lines drawn as curves (not marker-only rows, not single points)."""
    return [ln for ln in ax.get_lines() if ln.get_linestyle() not in ("None", "none", "") and len(ln.get_xdata()) > 1]


def _assert_no_curve_hidden(ax) -> None:
    """No two curves of ``ax`` coincide at plot resolution (those are drawn once, labelled by both)."""
    curves = _curves(ax)
    ys = [np.asarray(ln.get_ydata(), dtype=float) for ln in curves]
    finite = np.concatenate([y[np.isfinite(y)] for y in ys])
    tol = 1e-3 * np.ptp(finite) + 1e-12
    for (a, ya), (b, yb) in itertools.combinations(zip(curves, ys, strict=True), 2):
        same_x = np.array_equal(np.asarray(a.get_xdata(), dtype=float), np.asarray(b.get_xdata(), dtype=float))
        assert not (same_x and np.allclose(ya, yb, rtol=0, atol=tol, equal_nan=True)), \
            f"{a.get_label()!r} hides under / over {b.get_label()!r}"


def _png(path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(scope="module")
def backtests() -> dict[str, BacktestResult]:
    problem = ProblemParams(T=20.0, q_max=4)
    config = SimConfig(n_paths=300, seed=4)
    return {name: backtest(make_strategy(name, MARKET, problem), MARKET, problem, config, record=6)
            for name in ("as", "constant")}


# --------------------------------------------------------------------------- settings


def test_run_settings_order_symbols_and_neutral_values_left_out():
    problem = ProblemParams(gamma=0.05, T=60.0, q_max=None, objective="B")
    s = plots.run_settings(MarketParams(tick=0.1), problem, SimConfig(n_paths=500, seed=9, dt=0.5), method="fd")
    assert list(s)[:5] == ["method", "n_paths", "seed", "gamma", "objective"]
    assert "drift" not in s and "trade_size" not in s and "q0" not in s and "chunk_size" not in s
    text = plots.settings_text(s)
    for part in ("solver=fd", "paths=500", "seed=9", "γ=0.05", "objective=B", "σ=0.3", "A=0.9", "k=0.3", "tick=0.1",
                 "T=60", "Q=∞", "dt=0.5", "fills=poisson", "prices=gaussian"):
        assert part in text
    assert all(len(line) <= 40 for line in plots.settings_text(s, width=40).splitlines())
    assert plots.settings_text(None) == ""


def test_labels_carry_units():
    assert plots.metric_label("ce_A").endswith("[currency]")
    assert plots.metric_label("q_final_std").endswith("[shares]")
    assert plots.metric_label("sharpe").endswith("[dimensionless]")
    assert plots.param_label("gamma") == "gamma: γ [1/currency]"
    assert plots.param_label("tick") == "tick [price]"
    assert plots.param_label("fill_model", categorical=True).endswith("[category]")
    assert plots.plus_minus(1122.6431, 0.97) == "1122.64 ± 0.97"
    assert plots.plus_minus(6.1357, 0.066) == "6.136 ± 0.066"
    assert plots.plus_minus(3.0, float("nan")) == "3"


# --------------------------------------------------------------------------- backtests


def test_paths_figure(backtests, tmp_path):
    result = backtests["as"]
    fig = plots.paths_figure(result, title="as: sample paths", n=5)
    title = _title(fig)
    assert title.startswith("as: sample paths (first 5 of 300 simulated paths)")
    for part in ("paths=300", "seed=4", "γ=0.01", "objective=A", "σ=0.3", "T=20", "Q=4", "dt=1", "fills=poisson"):
        assert part in title
    ax_s, ax_q, ax_w = fig.axes
    assert ax_s.get_ylabel() == "mid price S [price]"
    assert ax_q.get_ylabel() == "inventory q [shares]"
    assert ax_w.get_ylabel() == "PnL marked to mid [currency]"
    assert ax_w.get_xlabel() == "time t [time]"
    assert len(ax_s.get_lines()) == 5
    assert np.abs(result.paths["q"][:5]).max() >= 2  # near the bound Q = 4: it is drawn
    assert len(ax_q.get_lines()) == 5 + 2  # paths, then the bounds ±Q
    assert sorted(ln.get_ydata()[0] for ln in ax_q.get_lines()[5:]) == [-4, 4]
    assert [ln.get_drawstyle() for ln in ax_q.get_lines()[:5]] == ["steps-post"] * 5
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [f"path {i}" for i in range(5)] + ["inventory bound ±Q = ±4"]
    # the same colour for the same path in every panel; earlier paths wider and underneath
    for i in range(5):
        assert len({ax.get_lines()[i].get_color() for ax in fig.axes}) == 1
    widths = [ln.get_linewidth() for ln in ax_s.get_lines()]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
    _png(plots.plot_paths(result, tmp_path / "paths.png", title="as"))


def test_paths_figure_names_a_far_inventory_bound_without_squashing_the_paths(backtests):
    r = backtests["as"]
    far = BacktestResult(r.metrics, r.per_path, r.paths, r.config, r.market, ProblemParams(T=20.0, q_max=100))
    fig = plots.paths_figure(far, n=3)
    ax_q = fig.axes[1]
    assert ax_q.get_ylim()[1] < 50
    assert [len(ln.get_xdata()) > 0 for ln in ax_q.get_lines()] == [True] * 3 + [False]
    assert [t.get_text() for t in fig.legends[0].get_texts()][-1] == "inventory bound ±Q = ±100 (beyond the axis)"
    assert _title(fig).startswith("First 3 of 300 simulated paths") and "Q=100" in _title(fig)


def test_paths_figure_needs_recorded_paths(backtests):
    r = backtests["as"]
    with pytest.raises(ValueError, match="record > 0"):
        plots.paths_figure(BacktestResult(r.metrics, r.per_path, None, r.config, r.market, r.problem))


def test_pnl_distribution_outlines_and_side_by_side_bars(backtests, tmp_path):
    fig = plots.pnl_distribution_figure(backtests)
    title = _title(fig)
    assert "as, constant over 300 paths each" in title and "seed=4" in title and "γ=0.01" in title
    ax_w, ax_q = fig.axes
    assert ax_w.get_xlabel() == "terminal PnL W [currency]" and ax_w.get_ylabel() == "density [1/currency]"
    assert ax_q.get_xlabel() == "terminal inventory q_T [shares]" and ax_q.get_ylabel() == "share of paths [fraction]"
    # one unfilled outline per strategy (readable where they overlap), in different line styles
    outlines = [p for p in ax_w.patches if isinstance(p, Polygon)]
    assert len(outlines) == 2 and not any(p.get_fill() for p in outlines)
    assert len({p.get_linestyle() for p in outlines}) == 2
    means = [ln.get_xdata()[0] for ln in ax_w.get_lines()]
    assert means == pytest.approx([backtests[n].per_path["pnl"].mean() for n in ("as", "constant")])
    labels = [t.get_text() for t in ax_w.get_legend().get_texts()]
    assert labels[0].startswith("as: mean ") and "95% CI" in labels[0] and labels[1].startswith("constant: ")
    # inventory: one bar per strategy and level, side by side (no bar hides another)
    levels = np.unique(np.concatenate([backtests[n].per_path["q_final"] for n in backtests]))
    grid = np.arange(levels.min(), levels.max() + 1)
    bars = [p for p in ax_q.patches if isinstance(p, Rectangle)]
    assert len(bars) == 2 * grid.size
    lefts = [round(b.get_x(), 9) for b in bars]
    assert len(set(lefts)) == len(lefts)
    heights = np.array([b.get_height() for b in bars]).reshape(2, grid.size)
    assert heights.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert [t.get_text().split(":")[0] for t in ax_q.get_legend().get_texts()] == ["as", "constant"]
    _png(plots.plot_pnl_distribution(backtests, tmp_path / "pnl.png"))


def test_settings_that_differ_between_strategies_say_whose_they_are(backtests):
    r = backtests["as"]
    ticked = BacktestResult(r.metrics, r.per_path, r.paths, r.config, MarketParams(tick=0.5), r.problem)
    title = _title(plots.pnl_distribution_figure({"as": r, "pi": ticked}))
    assert "tick=0 (as); 0.5 (pi)" in title and "paths=300" in title


# --------------------------------------------------------------------------- quotes


def _colorbar(fig: Figure):
    """The one colour bar of the two quote maps (they share one scale)."""
    (bar,) = [c.colorbar for ax in fig.axes for c in ax.collections if isinstance(c, QuadMesh) and c.colorbar]
    return bar


def _colorbar_label(fig: Figure) -> str:
    return _colorbar(fig).ax.get_ylabel()


def test_quote_surface_of_a_continuous_solution(tmp_path):
    market, problem = MARKET, ProblemParams(T=600.0, q_max=4)
    s = solve(market, problem, method="exact")
    fig = plots.quote_surface_figure(s.times, s.q_grid, s.bid, s.ask, title="exact solution",
                                     settings=plots.run_settings(market, problem, method="exact"))
    title = _title(fig)
    assert "exact solution: bid and ask offsets (continuous time)" in title
    for part in ("solver=exact", "γ=0.01", "σ=0.3", "A=0.9", "k=0.3", "T=600", "Q=4"):
        assert part in title
    ax_b, ax_a, ax_q, ax_t = fig.axes[:4]
    assert _colorbar_label(fig) == "offset from mid δ [price]"
    for ax in (ax_b, ax_a):
        (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
        assert mesh.get_array().shape == (s.times.size, s.q_grid.size)  # one cell per grid point
        assert ax.get_xlabel() == "inventory q [shares]" and ax.get_ylabel() == "time t [time]"
        assert "grey: not quoted" in ax.get_title()  # no bid at q = Q, no ask at q = -Q
    for ax in (ax_q, ax_t):
        assert ax.get_ylabel() == "offset from mid δ [price]"
        assert all(ln.get_drawstyle() == "default" for ln in _curves(ax))
        _assert_no_curve_hidden(ax)
    assert ax_q.get_xlabel() == "inventory q [shares]" and ax_t.get_xlabel() == "time t [time]"
    # with Q = 4 the quotes at t = 0, T/2 and 0.9 T are the same: drawn once, labelled by all; at t = T bid = ask
    legends = [c for c in ax_q.get_children() if isinstance(c, Legend)]  # colour: time; style: side
    texts = [t.get_text() for lg in legends for t in lg.get_texts()]
    assert "t=0, 300, 540 (identical)" in texts and "t=600, bid = ask" in texts
    assert {"bid δᵇ", "ask δᵃ", "bid not quoted (at the axis foot)", "ask not quoted (at the axis foot)"} <= set(texts)
    # by symmetry bid at q equals ask at -q: one curve, both named
    t_labels = [t.get_text() for t in ax_t.get_legend().get_texts()]
    assert "bid at q=0 = ask at q=0" in t_labels and "bid at q=2 = ask at q=-2" not in t_labels
    assert any(" = " in lab for lab in t_labels)
    _png(plots.plot_quote_surface(s.times, s.q_grid, s.bid, s.ask, tmp_path / "quotes.png", title="exact"))


@pytest.fixture(scope="module")
def pi_solution():
    return solve(MARKET, ProblemParams(T=10.0, q_max=3), method="pi", tick=0.5, dt=1.0)


def test_quote_surface_of_a_tick_grid_policy_is_steps_with_no_quote_marked(pi_solution, tmp_path):
    s = pi_solution
    fig = plots.quote_surface_figure(s.times, s.q_grid, s.bid, s.ask, title="pi solution",
                                     settings=plots.run_settings(s.market, s.problem, method="pi"),
                                     solved_for=s.solved_for)
    title = _title(fig)
    assert "pi solution: bid and ask offsets on a tick grid of 0.5 (step functions)" in title
    for part in ("solver=pi", "γ=0.01", "T=10", "Q=3", "dt=1", "fills=poisson", "prices=gaussian"):
        assert part in title  # the discrete problem's dt and models come from solved_for
    ax_b, ax_a, ax_q, ax_t = fig.axes[:4]
    assert _colorbar_label(fig) == "offset from mid δ [price] (tick 0.5)"
    for ax, on in ((ax_b, np.isfinite(s.bid)), (ax_a, np.isfinite(s.ask))):
        (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
        data = mesh.get_array()
        assert data.shape == (s.times.size - 1, s.q_grid.size)  # one cell per decision interval
        assert np.array_equal(np.ma.getmaskarray(data), ~on[:-1])  # unquoted cells masked (drawn grey)
        assert "grey: not quoted" in ax.get_title()
    # the colour bar: one colour per offset level on the tick grid, ticks at the levels
    bar = _colorbar(fig)
    levels = np.unique(np.concatenate([s.bid[:-1][np.isfinite(s.bid[:-1])], s.ask[:-1][np.isfinite(s.ask[:-1])]]))
    assert bar.norm.Ncmap == levels.size
    assert all(c.norm is bar.norm for ax in (ax_b, ax_a) for c in ax.collections)  # one scale for both maps
    ticks = np.asarray(bar.get_ticks()) / 0.5
    assert ticks.size and np.allclose(ticks, np.round(ticks))
    # step functions, never interpolated: in inventory (cells centred on q) and in time (row j holds on [t_j, t_j+1))
    assert _curves(ax_q) and all(ln.get_drawstyle() == "steps-mid" for ln in _curves(ax_q))
    assert _curves(ax_t) and all(ln.get_drawstyle() == "steps-post" for ln in _curves(ax_t))
    for ax in (ax_q, ax_t):
        _assert_no_curve_hidden(ax)
    # not quoted: crosses at the axis foot where the bid (q = Q) and the ask (q = -Q) are missing
    marks = [ln for ln in ax_q.get_lines() if ln.get_linestyle() == "None"]
    assert {ln.get_marker() for ln in marks} == {"x", "+"}
    assert {float(x) for ln in marks if ln.get_marker() == "x" for x in ln.get_xdata()} == {3.0}
    assert {float(x) for ln in marks if ln.get_marker() == "+" for x in ln.get_xdata()} == {-3.0}
    _png(plots.plot_quote_surface(s.times, s.q_grid, s.bid, s.ask, tmp_path / "q.png", solved_for=s.solved_for))


def test_interpolation_previous_alone_gives_steps_and_policy_figure_reads_the_policy(pi_solution, tmp_path):
    s = pi_solution
    fig = plots.quote_surface_figure(s.times, s.q_grid, s.bid, s.ask, interpolation="previous")
    assert all(ln.get_drawstyle() == "steps-mid" for ln in _curves(fig.axes[2]))
    assert "Quotes: bid and ask offsets on a tick grid (step functions)" in _title(fig)
    policy = s.policy()
    fig = plots.policy_figure(policy, title="pi policy")
    title = _title(fig)
    assert "tick grid of 0.5" in title and "solver=pi" in title and "γ=0.01" in title and "dt=1" in title
    assert all(ln.get_drawstyle() == "steps-post" for ln in _curves(fig.axes[3]))
    _png(plots.plot_policy(policy, tmp_path / "policy.png"))


# --------------------------------------------------------------------------- comparison


def _metrics(backtests):
    return {name: r.metrics for name, r in backtests.items()}


def test_comparison_figure_draws_means_with_95_percent_intervals(backtests, tmp_path):
    metrics = _metrics(backtests)
    keys = ("pnl_mean", "pnl_std", "sharpe", "q_final_std", "spread_mean")
    settings = plots.run_settings(MARKET, ProblemParams(T=20.0, q_max=4), SimConfig(n_paths=300, seed=4))
    fig = plots.comparison_figure(metrics, keys, settings)
    title = _title(fig)
    assert "Strategy comparison: as, constant" in title and "95% CI" in title
    assert "paths=300" in title and "seed=4" in title and "γ=0.01" in title
    panels = fig.axes[:3]
    for ax, key in zip(panels, ("pnl_mean", "value_B", "ce_A"), strict=True):
        assert ax.get_xlabel() == plots.metric_label(key) and ax.get_xlabel().endswith("[currency]")
        containers = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(containers) == 2
        for container, name in zip(containers, metrics, strict=True):
            (segments,) = [lc.get_segments() for lc in container.lines[2]]
            (x0, _), (x1, _) = segments[0]
            assert (x0 + x1) / 2 == pytest.approx(metrics[name][key])
            assert (x1 - x0) / 2 == pytest.approx(1.96 * metrics[name][f"{key}_se"])
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["as", "constant"]
    assert [t.get_text() for t in panels[0].get_legend().get_texts()] == ["as", "constant"]
    table = fig.axes[3].tables[0]
    headers = [table[0, j].get_text().get_text() for j in range(len(keys))]
    assert headers == ["pnl_mean [currency]", "pnl_std [currency]", "sharpe [dimensionless]", "q_final_std [shares]",
                       "spread_mean [price]"]
    _png(plots.plot_comparison_table(metrics, tmp_path / "comparison.png", keys))


def test_comparison_figure_without_a_value_says_so(backtests):
    metrics = {n: dict(m) for n, m in _metrics(backtests).items()}
    metrics["constant"]["ce_A"] = float("nan")
    fig = plots.comparison_figure(metrics)
    ax_ce = fig.axes[2]
    assert len([c for c in ax_ce.containers if isinstance(c, ErrorbarContainer)]) == 1
    assert [t.get_text() for t in ax_ce.texts if t.get_text() == "n/a"] == ["n/a"]
    assert "paths=300" in _title(fig) and len(fig.axes) == 3  # no table without keys


# --------------------------------------------------------------------------- sweeps


def _sweep_table() -> pd.DataFrame:
    rows = []
    for s, strategy in enumerate(("optimal", "as")):
        for g, gamma in enumerate((0.001, 0.01, 0.1)):
            rows.append({"strategy": strategy, "gamma": gamma, "seed": 5, "status": "ok",
                         "pnl_mean": 100.0 - 10 * g - 5 * s, "pnl_mean_se": 0.5, "pnl_std": 30.0 - 5 * g,
                         "pnl_std_se": 0.3, "q_final_std": 6.0 - g, "sharpe": 3.0 + g, "sharpe_se": 0.05,
                         "n_paths_done": 1000})
    rows.append({**rows[0], "gamma": 0.5, "status": "error", "pnl_mean": np.nan})
    return pd.DataFrame(rows)


SWEEP_SETTINGS = plots.run_settings(MARKET, ProblemParams(), SimConfig())


def test_frontier_figure(tmp_path):
    table = _sweep_table()
    fig = plots.frontier_figure(table, ("optimal", "as"), "ra", SWEEP_SETTINGS)
    title = _title(fig)
    assert "Efficient frontier over risk aversion γ [1/currency] (sweep 'ra')" in title
    assert "paths=1000 per trial" in title and "seed=5 (every trial)" in title and "σ=0.3" in title
    assert "γ=0.01," not in title  # swept: not a setting of the figure
    ax_w, ax_q = fig.axes[:2]
    assert ax_w.get_xlabel() == "pnl_std: terminal PnL std [currency]"
    assert ax_q.get_xlabel() == "q_final_std: terminal inventory std [shares]"
    assert ax_w.get_ylabel() == "pnl_mean: mean terminal PnL [currency]"
    for ax in (ax_w, ax_q):
        containers = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert [c.get_label() for c in containers] == ["optimal", "as"]
        assert [len(c.lines[0].get_xdata()) for c in containers] == [3, 3]  # the error row is not drawn
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["optimal", "as"]
    # γ at both ends of each line, labels never on top of each other
    renderer = fig.canvas.get_renderer()
    for ax in (ax_w, ax_q):
        texts = [t.get_text() for t in ax.texts]
        assert texts.count("γ=0.001") >= 2 and texts.count("γ=0.1") >= 2
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    _png(plots.plot_frontier(table, ("optimal", "as"), "ra", tmp_path / "frontier.png", SWEEP_SETTINGS))
    assert plots.frontier_figure(table[table["status"] == "error"], ("optimal",), "ra") is None
    assert plots.plot_frontier(table.iloc[:0], ("optimal",), "ra", tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_metric_vs_params_figure_categories_side_by_side():
    rows = []
    for strategy in ("optimal", "inventory"):
        for fill in ("poisson", "linear"):
            for tick in (0.0, 0.5):
                stopped = strategy == "inventory" and tick == 0.5
                rows.append({"strategy": strategy, "fill_model": fill, "tick": tick, "seed": 1,
                             "status": "stopped" if stopped else "ok", "ce_A": 10.0 + tick, "ce_A_se": 0.1,
                             "n_paths_done": 2000 if stopped else 8000})
    table = pd.DataFrame(rows)
    fig = plots.metric_vs_params_figure(table, ("optimal", "inventory"), ("fill_model", "tick"), "ce_A", (), "hp",
                                        SWEEP_SETTINGS)
    title = _title(fig)
    assert "ce_A vs each swept parameter (sweep 'hp'" in title and "paths=2000–8000 per trial" in title
    assert "tick=" not in title and "fills=" not in title and "prices=gaussian" in title
    ax_tick, ax_fill = fig.axes[:2]  # numeric parameters first
    assert ax_tick.get_xlabel() == "tick [price]"
    assert ax_fill.get_xlabel() == "fill_model: fills [category]"
    for ax in (ax_tick, ax_fill):
        assert ax.get_ylabel() == "ce_A: certainty equivalent, objective A [currency]"
        containers = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert [c.get_label() for c in containers] == ["optimal", "inventory"]
        xs = [set(np.round(np.asarray(c.lines[0].get_xdata(), dtype=float), 9)) for c in containers]
        assert not xs[0] & xs[1]  # strategies side by side: no point on top of another
    assert [t.get_text() for t in ax_fill.get_xticklabels()] == ["poisson", "linear"]
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["optimal", "inventory", "stopped early by ASHA (fewer paths)"]


def test_metric_vs_params_single_log_parameter(tmp_path):
    table = _sweep_table()
    fig = plots.metric_vs_params_figure(table, ("optimal", "as"), ("gamma",), "sharpe", ("gamma",), "ra")
    (ax,) = [a for a in fig.axes if a.get_xlabel()]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "gamma: γ [1/currency]"
    assert ax.get_ylabel() == "sharpe: Sharpe ratio per episode [dimensionless]"
    assert "sharpe vs gamma (sweep 'ra')" in _title(fig)
    _png(plots.plot_metric_vs_params(table, ("optimal",), ("gamma",), "sharpe", ("gamma",), "ra", tmp_path / "m.png"))
    assert plots.metric_vs_params_figure(table, ("optimal",), ("absent",), "sharpe", (), "ra") is None


def test_robustness_panels_have_their_own_y_scales(tmp_path):
    rows = []
    for strategy, scale in (("optimal", 1.0), ("as", 3.0)):
        for param, size in (("sigma", 1.0), ("k", 100.0)):
            for f in (0.5, 1.0, 2.0):
                factors = {"sigma_factor": 1.0, "k_factor": 1.0, f"{param}_factor": f}
                rows.append({"strategy": strategy, **factors, "seed": 2, "status": "ok",
                             "loss": scale * size * abs(math.log(f)), "loss_se": 0.1 * size, "n_paths_done": 400})
    table = pd.DataFrame(rows).drop_duplicates(subset=["strategy", "sigma_factor", "k_factor"])
    fig = plots.robustness_figure(table, ("optimal", "as"), ("sigma", "k"), "ce_A", "rob", SWEEP_SETTINGS)
    title = _title(fig)
    assert "Model misspecification (sweep 'rob')" in title and "paths=400 per trial" in title and "σ=0.3" in title
    ax_s, ax_k = fig.axes[:2]
    for ax in (ax_s, ax_k):
        assert ax.get_shared_y_axes().get_siblings(ax) == [ax]
        assert ax.get_ylabel() == "loss in ce_A: true optimum − strategy [currency]"
        assert "[ratio, log scale]" in ax.get_xlabel() and ax.get_xscale() == "log"
        containers = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert [c.get_label() for c in containers] == ["optimal", "as"]
        assert [len(c.lines[0].get_xdata()) for c in containers] == [3, 3]
    assert ax_k.get_ylim()[1] > 20 * ax_s.get_ylim()[1]  # k's losses are 100x larger: its own scale
    assert ax_s.get_xlabel() == "true σ / assumed σ [ratio, log scale]"
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["optimal", "as", "no loss (the true optimum)",
                                                          "model right (factor 1)"]
    _png(plots.plot_robustness(table, ("optimal", "as"), ("sigma", "k"), "ce_A", "rob", tmp_path / "r.png"))

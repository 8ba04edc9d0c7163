"""Simulated events with known σ, A and k: the oracle of the calibration tests."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from mmray.data.schema import event_batch, kind_codes

__all__ = ["simulate_events"]


def simulate_events(sigma: float, A: float, k: float, *, duration: float = 3600.0,
                    seed: int | np.random.SeedSequence | None = None, quote_rate: float = 2.0, s0: float = 100.0,
                    half_spread: float = 0.0, tick: float = 0.0, start: str = "2024-01-02T00:00:00",
                    venue: str = "sim", symbol: str = "SIM",
                    sigma_shape: Callable[[np.ndarray], np.ndarray] | None = None) -> pa.Table:
    """Events (:data:`mmray.data.EVENT_SCHEMA`) of a market with known σ, A and k.

    The mid is a Brownian motion with volatility `sigma` (price/√s) observed at Poisson times
    (rate `quote_rate` per second) as ``ticker`` rows with bid/ask = mid ∓ `half_spread`. On each
    side, market orders arrive as a Poisson process of rate A·e^(−k·half_spread) and reach
    D = half_spread + Exp(k) from the mid in force just before them (then Λ(δ) = A e^(−kδ) for
    δ ≥ half_spread); with `tick` > 0 the reach is floored to the half-tick lattice above the
    half-spread (which keeps Λ exact at the lattice points). Trades are ``trade`` rows, price
    = mid ± D, no quotes. Rows are sorted by time (ns, from `start`, UTC).

    `sigma_shape` (a function of the fraction u ∈ [0, 1] of the duration) makes the volatility
    σ·shape(u)/‖shape‖ (an intraday pattern), normalised so that the mean of σ² over the
    duration stays σ² (the integrated variance a daily estimate targets).
    """
    rng = np.random.default_rng(seed)
    t0 = int(np.datetime64(start, "ns").astype(np.int64))
    nq = rng.poisson(quote_rate * duration)
    tq = np.sort(rng.uniform(0, duration, nq))
    tq_ns = np.concatenate([[t0], t0 + np.round(tq * 1e9).astype(np.int64)])
    dtq = np.diff(tq_ns) / 1e9
    vol = np.full(nq, sigma)
    if sigma_shape is not None:
        norm = math.sqrt(float(np.mean(np.asarray(sigma_shape(np.linspace(0, 1, 100_001)), float) ** 2)))
        centre = ((tq_ns[1:] + tq_ns[:-1]) / 2 - t0) / 1e9 / duration
        vol = sigma * np.asarray(sigma_shape(centre), float) / norm
    mid = s0 + np.concatenate([[0.0], np.cumsum(vol * np.sqrt(dtq) * rng.standard_normal(nq))])
    rate = A * math.exp(-k * half_spread)
    n_buy, n_sell = rng.poisson(rate * duration, 2)
    side = np.concatenate([np.ones(n_buy, np.int8), -np.ones(n_sell, np.int8)])
    tt_ns = t0 + np.round(rng.uniform(0, duration, side.size) * 1e9).astype(np.int64)
    reach = rng.exponential(1 / k, side.size)
    if tick > 0:
        w = tick / 2
        reach = np.floor(reach / w) * w
    reach = half_spread + reach
    before = np.searchsorted(tq_ns, tt_ns, side="left") - 1
    before = np.maximum(before, 0)
    price = mid[before] + side * reach
    n = tq_ns.size + side.size
    ts = np.concatenate([tq_ns, tt_ns])
    is_trade = np.concatenate([np.zeros(tq_ns.size, bool), np.ones(side.size, bool)])
    order = np.argsort(ts, kind="stable")
    kind = np.where(is_trade, kind_codes("trade"), kind_codes("ticker")).astype(np.int8)[order]
    bid = pa.array(np.concatenate([mid - half_spread, np.zeros(side.size)])[order], mask=is_trade[order])
    ask = pa.array(np.concatenate([mid + half_spread, np.zeros(side.size)])[order], mask=is_trade[order])
    px = pa.array(np.concatenate([np.zeros(tq_ns.size), price])[order], mask=~is_trade[order])
    sides = np.concatenate([np.zeros(tq_ns.size, np.int8), side])[order]
    size = pa.array(np.ones(n), mask=~is_trade[order])
    batch = event_batch(n, {"ts": ts[order], "venue": venue, "symbol": symbol, "kind": kind, "side": sides,
                            "price": px, "size": size, "bid_px": bid, "ask_px": ask})
    return pa.Table.from_batches([batch])

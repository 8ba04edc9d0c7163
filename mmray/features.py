"""Market features: what a policy may read beyond ``(t, q, s)``, and who can provide each.

A policy declares the names it reads in its ``features`` attribute (saved in its checkpoint's
``features`` field); a driver, i.e. the Monte Carlo simulator, the replay engine or an
environment, states the names it can provide and checks them before it starts
(:func:`check_features`), so that a mismatch is a clear error naming both sides rather than a
``KeyError`` mid-run. The driver then passes one float array per path for each declared name
(:func:`mmray.policy.ask_quotes`).

Vocabulary (:data:`FEATURES`: name -> meaning and units). Names are shared by every driver: a
feature means the same thing in simulation and on real data, or it has two names.

==================  =========================================================  ============
name                meaning                                                    provided by
==================  =========================================================  ============
``mid_return``      last step's mid change over ``sigma sqrt(dt)`` (0 at t=0)  simulator
``bid_offset_prev`` bid offset applied at the previous step (0 if none/off)    simulator
``ask_offset_prev`` ask offset applied at the previous step (0 if none/off)    simulator
``spread``          market bid-ask spread before the event, price units        LOB data
``imbalance``       ``(bid_sz - ask_sz) / (bid_sz + ask_sz)`` at the touch      LOB data
``return_1s``       log mid return over the last second                        LOB data
==================  =========================================================  ============
"""

from __future__ import annotations

from collections.abc import Collection

FEATURES: dict[str, str] = {
    "mid_return": "last step's mid change divided by sigma*sqrt(dt) (0 before the first step)",
    "bid_offset_prev": "bid offset applied at the previous step, price units (0 if not quoted or t=0)",
    "ask_offset_prev": "ask offset applied at the previous step, price units (0 if not quoted or t=0)",
    "spread": "market bid-ask spread before the event, price units",
    "imbalance": "(bid_sz - ask_sz) / (bid_sz + ask_sz) at the touch, in [-1, 1]",
    "return_1s": "log mid return over the last second",
}

SIM_FEATURES: tuple[str, ...] = ("mid_return", "bid_offset_prev", "ask_offset_prev")
"""The features the Monte Carlo simulator provides (:mod:`mmray.sim`)."""


def policy_features(policy: object) -> tuple[str, ...]:
    """The features ``policy`` reads beyond ``(t, q, s)``: its ``features`` attribute, ``()`` if none."""
    return tuple(getattr(policy, "features", ()) or ())


def check_features(policy: object, available: Collection[str], driver: str) -> None:
    """Raise ``ValueError`` unless ``driver`` (e.g. ``"the simulator"``) provides every feature
    ``policy`` reads; the message names the missing ones and what the driver offers."""
    needed = policy_features(policy)
    unknown = [n for n in needed if n not in FEATURES]
    if unknown:
        raise ValueError(f"policy of kind {type(policy).kind!r} reads unknown feature(s) {unknown}; "
                         f"known features: {sorted(FEATURES)}")
    missing = [n for n in needed if n not in available]
    if missing:
        raise ValueError(f"policy of kind {type(policy).kind!r} reads feature(s) {missing} that {driver} does "
                         f"not provide (it provides {sorted(available) or 'none'})")

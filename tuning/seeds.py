"""Deterministic trial seeds derived from the sweep seed with :class:`numpy.random.SeedSequence`.

A trial's Monte Carlo seed depends only on the sweep seed and (unless the sweep uses common
random numbers) on the trial's parameters, never on trial order, trial ids, workers or
restarts, so a sweep run twice, resumed, or spread over a cluster gives the same numbers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

_MASK63 = (1 << 63) - 1


def derive_seed(root: int, *keys: int) -> int:
    """A 63-bit seed from ``SeedSequence(root, spawn_key=keys)``."""
    state = np.random.SeedSequence(root, spawn_key=tuple(int(k) for k in keys)).generate_state(1, dtype=np.uint64)
    return int(state[0]) & _MASK63


def params_key(params: Mapping[str, Any]) -> int:
    """A stable 64-bit key of a parameter dict (canonical JSON, SHA-256)."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def trial_seed(sweep_seed: int, params: Mapping[str, Any], common_random_numbers: bool) -> int:
    """Monte Carlo seed of the trial with ``params``.

    With common random numbers every trial gets ``derive_seed(sweep_seed, 0)`` (paired
    comparisons: differences between trials are not sampling noise); otherwise the seed also
    depends on the parameters.
    """
    if common_random_numbers:
        return derive_seed(sweep_seed, 0)
    return derive_seed(sweep_seed, 1, params_key(params))

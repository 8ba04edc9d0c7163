"""Hard constraints on quoting, for the constrained solver (``csp``) and, in part, ``pi``.

Market-maker obligations and risk limits that closed forms cannot handle. All are optional
(``None`` = inactive). Quotes are offsets from the mid in price units; "ticks" means
``offset / tick`` on the tick grid of the discrete problem.

Per-state restrictions (they remove quote pairs at every state; ``pi`` honours them too):

* ``max_spread`` - whenever both sides are quoted, ``delta_b + delta_a <= max_spread``;
* ``bid_min_ticks``, ``bid_max_ticks``, ``ask_min_ticks``, ``ask_max_ticks`` - when a side is
  quoted, its offset in ticks lies within these bounds.

Global constraints on the occupation measure (expectations over paths, Altman 1999 ch. 3;
``csp`` only):

* ``min_two_sided`` - expected fraction of the decision steps at which both sides are quoted
  ``>= min_two_sided``; the fraction is over all ``N`` decision steps: a step at ``|q| = Q``
  (where one side is forbidden) stays in the denominator and counts as not two-sided, so time
  at the bound uses up the allowance ``1 - min_two_sided``;
* ``max_limit_prob`` - ``P(|q_j| = Q) <= max_limit_prob`` at every time ``t_j``, ``j = 1..N``
  (not at ``t_0``: the initial inventory is given and may be ``+-Q``);
* ``max_terminal_q2`` - ``E[q_T^2] <= max_terminal_q2`` (shares^2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from mmray.checks import integer, real

PER_STATE = ("max_spread", "bid_min_ticks", "bid_max_ticks", "ask_min_ticks", "ask_max_ticks")
GLOBAL = ("min_two_sided", "max_limit_prob", "max_terminal_q2")
TICK_FIELDS = PER_STATE[1:]


@dataclass(frozen=True)
class Constraints:
    """Obligations and risk limits (see module docstring); every field ``None`` = inactive.

    Parameters
    ----------
    max_spread : float, optional
        Largest two-sided quoted spread ``delta_b + delta_a`` (price units), > 0.
    min_two_sided : float, optional
        Minimum expected fraction of all ``N`` decision steps quoting both sides (steps at
        ``|q| = Q`` included, as one-sided ones), in ``[0, 1]``.
    max_limit_prob : float, optional
        ``epsilon`` in ``P(|q_j| = Q) <= epsilon`` for every ``j = 1..N``, in ``[0, 1]``.
    max_terminal_q2 : float, optional
        Bound on ``E[q_T^2]`` (shares^2), >= 0.
    bid_min_ticks, bid_max_ticks, ask_min_ticks, ask_max_ticks : int, optional
        Per-side offset limits in ticks (Python or numpy integers, not floats; min <= max).
    """

    max_spread: float | None = None
    min_two_sided: float | None = None
    max_limit_prob: float | None = None
    max_terminal_q2: float | None = None
    bid_min_ticks: int | None = None
    bid_max_ticks: int | None = None
    ask_min_ticks: int | None = None
    ask_max_ticks: int | None = None

    def __post_init__(self) -> None:
        bounds: dict[str, dict[str, float]] = {"max_spread": {"gt": 0.0}, "max_terminal_q2": {"ge": 0.0}}
        for name in ("max_spread", "min_two_sided", "max_limit_prob", "max_terminal_q2"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, real(f"Constraints.{name}", value, **bounds.get(name, {})))
        for name in ("min_two_sided", "max_limit_prob"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"Constraints.{name} must be a probability in [0, 1], got {value!r}")
        for name in TICK_FIELDS:  # Python or numpy integers, as every integer option (mmray.checks)
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, integer(f"Constraints.{name}", value))
        for side in ("bid", "ask"):
            lo, hi = getattr(self, f"{side}_min_ticks"), getattr(self, f"{side}_max_ticks")
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"Constraints.{side}_min_ticks={lo} exceeds {side}_max_ticks={hi}")

    def active(self) -> list[str]:
        """Names of the active (not ``None``) constraints, in field order."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def per_state_active(self) -> list[str]:
        return [n for n in self.active() if n in PER_STATE]

    def global_active(self) -> list[str]:
        return [n for n in self.active() if n in GLOBAL]

    def without(self, *names: str) -> Constraints:
        """A copy with the named constraints switched off."""
        return Constraints(**{k: (None if k in names else v) for k, v in asdict(self).items()})

    def only(self, *names: str) -> Constraints:
        """A copy with only the named constraints kept."""
        return Constraints(**{k: (v if k in names else None) for k, v in asdict(self).items()})

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Constraints:
        data = dict(data or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"Constraints: unknown field(s) {unknown}; expected a subset of {sorted(names)}")
        return cls(**data)

    def describe(self, name: str) -> str:
        """``name=value`` with the constraint's meaning, for messages."""
        meaning = {
            "max_spread": "two-sided spread <= {v} (price units)",
            "min_two_sided": "fraction of all decision steps quoting both sides >= {v}",
            "max_limit_prob": "P(|q_t| = Q) <= {v} at every time after the start",
            "max_terminal_q2": "E[q_T^2] <= {v}",
            "bid_min_ticks": "bid offset >= {v} ticks",
            "bid_max_ticks": "bid offset <= {v} ticks",
            "ask_min_ticks": "ask offset >= {v} ticks",
            "ask_max_ticks": "ask offset <= {v} ticks",
        }[name]
        value = getattr(self, name)
        return f"{name}={value!r} ({meaning.format(v=value)})"

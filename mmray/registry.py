"""Plug-in registries: policy kinds (for checkpoints) and strategy builders (by name).

Each registry maps a name to an object and is filled three ways, looked up in this order:

1. a call of :meth:`Registry.register` (e.g. the ``@register_policy_kind`` decorator of
   :mod:`mmray.policy` for the kinds mmray ships, or a user's own code before loading);
2. a Python entry point of the registry's group, declared by any installed package, loaded on
   first use (mmray declares its own solver-made kinds and the ``optimal`` strategy this way,
   so that the core modules never import a solver)::

       # pyproject.toml of a third-party package
       [project.entry-points."mmray.policy_kinds"]
       my_kind = "my_package.policies:MyPolicy"

       [project.entry-points."mmray.strategies"]
       my_strategy = "my_package.strategies:build"   # build(market, problem, **options) -> Policy

3. nothing else: an unknown name is a ``KeyError`` listing the known ones.

Policy kinds need ``kind``, ``array_spec``, ``to_checkpoint`` and ``from_checkpoint`` (see
:mod:`mmray.checkpoint`); strategy builders are callables
``build(market, problem, **options) -> Policy``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import distributions
from typing import Any, Generic, TypeVar

T = TypeVar("T")

POLICY_KINDS_GROUP = "mmray.policy_kinds"
STRATEGIES_GROUP = "mmray.strategies"


class Registry(Generic[T]):
    """Names to objects: registered in code or declared as entry points of ``group``."""

    def __init__(self, group: str, what: str) -> None:
        self.group = group
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        """Register ``item`` under ``name`` (replacing an earlier registration); returns ``item``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.what} name must be a non-empty string, got {name!r}")
        self._items[name] = item
        return item

    def _entry_points(self) -> dict[str, Any]:
        # every distribution's, not importlib's de-duplicated view: a stale ``mmray.egg-info`` in the
        # working directory (left by an editable install) would otherwise hide the installed metadata
        found: dict[str, Any] = {}
        for dist in distributions():
            for ep in dist.entry_points.select(group=self.group):
                found.setdefault(ep.name, ep)
        return found

    def names(self) -> tuple[str, ...]:
        """Every known name: entry points in their declared order (none is imported), then names
        registered in code."""
        declared = list(self._entry_points())
        return (*declared, *(n for n in self._items if n not in declared))

    def get(self, name: str) -> T:
        """The object registered as ``name``, loading its entry point on first use."""
        if name not in self._items:
            ep = self._entry_points().get(name)
            if ep is None:
                raise KeyError(f"unknown {self.what} {name!r}; known: {', '.join(self.names()) or 'none'}")
            self._items[name] = ep.load()
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._items or name in self._entry_points())


POLICY_KINDS: Registry[type] = Registry(POLICY_KINDS_GROUP, "policy kind")
STRATEGIES: Registry[Callable[..., Any]] = Registry(STRATEGIES_GROUP, "strategy")


def register_policy_kind(cls: type) -> type:
    """Class decorator: register a policy class under its ``kind`` for :func:`mmray.load_policy`."""
    return POLICY_KINDS.register(cls.kind, cls)


def register_strategy(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``build(market, problem, **options) -> Policy`` as strategy ``name``."""
    def deco(build: Callable[..., Any]) -> Callable[..., Any]:
        return STRATEGIES.register(name, build)

    return deco

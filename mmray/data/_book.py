"""A price-level book (one side per sorted list) for rebuilding books from depth diffs."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable

__all__ = ["LevelBook"]


class LevelBook:
    """Aggregated price levels: absolute quantity per price, best levels read in O(levels).

    ``update(bid, prices, qtys)`` replaces the quantity at each price (``qty == 0`` removes the
    level), as Binance diff-depth and snapshot levels do.
    """

    def __init__(self) -> None:
        self.qty: tuple[dict[float, float], dict[float, float]] = ({}, {})  # (bids, asks)
        self._prices: tuple[list[float], list[float]] = ([], [])  # ascending

    def clear(self) -> None:
        for d in self.qty:
            d.clear()
        for p in self._prices:
            p.clear()

    def update(self, bid: bool, prices: Iterable[float], qtys: Iterable[float]) -> None:
        """Set the quantity at each price of one side, in order (``qty == 0`` removes the level)."""
        side = 0 if bid else 1
        levels, ladder = self.qty[side], self._prices[side]
        for price, qty in zip(prices, qtys, strict=True):
            if qty == 0.0:
                if levels.pop(price, None) is not None:
                    del ladder[bisect_left(ladder, price)]
            else:
                if price not in levels:
                    insort(ladder, price)
                levels[price] = qty

    def top(self) -> tuple[float | None, float | None, float | None, float | None]:
        """(bid price, bid size, ask price, ask size) of the best levels; ``None`` when empty."""
        bids, asks = self._prices
        bp = bids[-1] if bids else None
        ap = asks[0] if asks else None
        return (bp, None if bp is None else self.qty[0][bp], ap, None if ap is None else self.qty[1][ap])

    def levels(self, n: int) -> tuple[list[float], list[float], list[float], list[float]]:
        """Best `n` levels per side, best first: (bid prices, bid sizes, ask prices, ask sizes)."""
        bids = self._prices[0][:-n - 1:-1] if n else []
        asks = self._prices[1][:n]
        return bids, [self.qty[0][p] for p in bids], asks, [self.qty[1][p] for p in asks]

    def __bool__(self) -> bool:
        return bool(self.qty[0] or self.qty[1])

"""LOBSTER orderbook rows → book checks, top of book and occupied-level lists, in one pass.

A row holds ``level`` groups ``(ask price, ask size, bid price, bid size)`` of ×10⁴ integer
prices; a price of ±``dummy`` marks an empty level. :func:`book_columns` is the compiled kernel,
:func:`book_columns_numpy` its whole-array numpy twin (tests check they agree). Both return:

* ``first_bad``: int64[3], the first row with a negative size, with an occupied level after an
  empty one, and with levels out of order (asks not rising, bids not falling), or −1 each;
* ``top``: float64[4, n], best bid price, bid size, ask price, ask size (prices in dollars);
* ``empty``: bool[2, n], the bid side / ask side is empty (its top price is then meaningless);
* ``offsets``: int32[2, n + 1] and ``values``: float64[4, m], the occupied levels per row, best
  first (bid prices, bid sizes over the bid offsets; ask prices, ask sizes over the ask offsets;
  ``m`` ≥ the larger side's total).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["book_columns", "book_columns_numpy"]

BookColumns = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@njit(cache=True, nogil=True)
def book_columns(book: np.ndarray, level: int, dummy: int) -> BookColumns:
    """One pass over `book` (rows × 4·`level` int64); see the module docstring."""
    n = book.shape[0]
    first_bad = np.full(3, -1, dtype=np.int64)
    top = np.empty((4, n), dtype=np.float64)
    empty = np.empty((2, n), dtype=np.bool_)
    offsets = np.zeros((2, n + 1), dtype=np.int32)
    values = np.empty((4, n * level), dtype=np.float64)
    nb = na = 0
    for r in range(n):
        neg = disorder = order = False
        bid_open = ask_open = True  # no empty level seen yet on that side
        for j in range(level):
            ap, asz, bp, bsz = book[r, 4 * j], book[r, 4 * j + 1], book[r, 4 * j + 2], book[r, 4 * j + 3]
            neg |= asz < 0 or bsz < 0
            ask_ok, bid_ok = ap != dummy, bp != -dummy
            disorder |= (ask_ok and not ask_open) or (bid_ok and not bid_open)
            ask_open &= ask_ok
            bid_open &= bid_ok
            if j:
                order |= (ask_ok and ap - book[r, 4 * j - 4] <= 0) or (bid_ok and bp - book[r, 4 * j - 2] >= 0)
            if ask_ok:
                values[2, na] = ap / 1e4
                values[3, na] = asz
                na += 1
            if bid_ok:
                values[0, nb] = bp / 1e4
                values[1, nb] = bsz
                nb += 1
        for k, hit in enumerate((neg, disorder, order)):
            if hit and first_bad[k] < 0:
                first_bad[k] = r
        offsets[0, r + 1], offsets[1, r + 1] = nb, na
        top[0, r], top[1, r], top[2, r], top[3, r] = book[r, 2] / 1e4, book[r, 3], book[r, 0] / 1e4, book[r, 1]
        empty[0, r], empty[1, r] = book[r, 2] == -dummy, book[r, 0] == dummy
    return first_bad, top, empty, offsets, values


def book_columns_numpy(book: np.ndarray, level: int, dummy: int) -> BookColumns:
    """:func:`book_columns` with whole-array numpy operations (same result)."""
    n = book.shape[0]
    ap, asz, bp, bsz = (book[:, i::4] for i in range(4))  # row × level
    ask_ok, bid_ok = ap != dummy, bp != -dummy

    def first(bad: np.ndarray) -> int:
        hit = np.flatnonzero(bad)
        return int(hit[0]) if hit.size else -1

    first_bad = np.array([
        first(((asz < 0) | (bsz < 0)).any(axis=1)),
        first((np.diff(ask_ok.astype(np.int8), axis=1) > 0).any(axis=1)
              | (np.diff(bid_ok.astype(np.int8), axis=1) > 0).any(axis=1)),
        first(((np.diff(ap, axis=1) <= 0) & ask_ok[:, 1:]).any(axis=1)
              | ((np.diff(bp, axis=1) >= 0) & bid_ok[:, 1:]).any(axis=1)),
    ], dtype=np.int64)
    top = np.stack([bp[:, 0] / 1e4, bsz[:, 0], ap[:, 0] / 1e4, asz[:, 0]]).astype(np.float64)
    empty = np.stack([~bid_ok[:, 0], ~ask_ok[:, 0]])
    offsets = np.zeros((2, n + 1), dtype=np.int32)
    values = np.zeros((4, n * level), dtype=np.float64)
    for side, (ok, prices, sizes) in enumerate(((bid_ok, bp, bsz), (ask_ok, ap, asz))):
        offsets[side, 1:] = np.cumsum(ok.sum(axis=1))
        m = offsets[side, -1]
        values[2 * side, :m] = prices[ok] / 1e4
        values[2 * side + 1, :m] = sizes[ok]
    return first_bad, top, empty, offsets, values

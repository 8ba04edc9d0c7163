"""Binance capture book rebuild and row building over columnar blocks: a numba kernel and its twin.

The loader (:mod:`mmray.data.binance`) parses a block of capture lines into *records* (one per
stored line, the columns ``REC_*`` of an int64 matrix) and one float64 array of the decimal
values they carry (depth/snapshot levels as price, quantity pairs, bids first; bookTicker
``b, B, a, A``; trade ``p, q``). :func:`capture_pass` walks the records once: it applies depth
events to the book by Binance's sequence rules, compares bookTickers with the rebuilt top of
book and writes the event rows into fixed-size output buffers. It stops and returns a status
whenever Python has to act (a full buffer, an event to hold until the snapshot, a gap, a
mismatch example, a snapshot whose held events must be replayed), and is resumed from there.

State lives in numpy arrays owned by the caller (:class:`KernelState`), so a capture is one
long run of the same state across blocks and files. :func:`capture_pass_plain` is the same
source run by the Python interpreter (the plain twin; tests check both give the same tables,
statistics and errors). The helpers are ``register_jitable``: compiled inside the kernel,
plain Python functions in the twin.

Book: per side a sorted array of keys (bids: the price, asks: minus the price, so both ascend
towards the best level at the end, where most updates land and inserts shift little) with their
quantities; a quantity of 0 removes the level. The bookTicker comparison remembers the last :data:`MATCH_WINDOW` applied
depth events (update id ``u`` → top of book) and the last :data:`MATCH_WINDOW` bookTickers
received while in sync and ahead of the book, in rings searched by bisection while their ids
keep increasing (linearly otherwise).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.extending import register_jitable

__all__ = ["MATCH_WINDOW", "KernelState", "capture_pass", "capture_pass_plain", "parse_decimals",
           "parse_decimals_plain"]

# record kinds (REC_KIND)
R_DEPTH, R_SNAPSHOT, R_TICKER, R_TRADE, R_SKIP = 0, 1, 2, 3, 4
# record columns: depth (U, u, pu, bid levels, ask levels); snapshot (lastUpdateId, -, -, bids, asks);
# ticker (u); trade (trade id, maker order id, side, has maker id); skip: only times (latency)
REC_KIND, REC_LINE, REC_TS, REC_LOCAL, REC_X, REC_Y, REC_Z, REC_NB, REC_NA = range(9)
REC_COLUMNS = 9
NO_TS = -(2**63)  # a line without exchange time
# statuses: (status, record index) is returned; DONE index = number of records
DONE, FLUSH, GROW_BOOK, BUFFER, SNAPSHOT, GAP, MISMATCH = range(7)
# gap codes (S_INFO)
GAP_JOIN, GAP_PU, GAP_U = 1, 2, 3
# state slots
(S_FUTURES, S_SYNCED, S_HAS_JOIN, S_JOIN, S_HAS_LAST, S_LAST, S_ROWS, S_DEPTH_ROWS, S_SNAPSHOT_ROWS, S_TICKER_ROWS,
 S_TRADE_ROWS, S_SNAPSHOTS, S_IGNORED, S_DROPPED, S_SKIPPED, S_COMPARED, S_MISMATCHES, S_TOPS_N, S_TOPS_SORTED,
 S_WAIT_N, S_WAIT_SORTED, S_INFO, S_INFO1, S_INFO2, S_INFO3, S_INFO4, S_INFO5) = range(27)
STATE_SLOTS = 27
# output rows: int64 columns, float64 columns, int8 columns
O_TS, O_LOCAL, O_ORDER, O_SEQ, O_LINE = range(5)
O_PRICE, O_SIZE, O_BID_PX, O_BID_SZ, O_ASK_PX, O_ASK_SZ = range(6)
O_KIND, O_SIDE, O_FLAGS = range(3)
# flags: which nullable values a row has
F_ORDER, F_PRICE, F_BID, F_ASK, F_DEEP = 1, 2, 4, 8, 16
MATCH_WINDOW = 8192


class KernelState:
    """The arrays :func:`capture_pass` reads and writes: book, sync state, counters, match rings,
    and the output buffers of one batch (`rows` rows, `deep` list values per side).

    Parameters
    ----------
    futures : bool
        Futures sequence rules (``pu``) instead of spot's (``U == previous u + 1``).
    rows : int
        Rows per output batch.
    levels : int
        Book levels per side written to the list columns.
    """

    def __init__(self, futures: bool, rows: int, levels: int) -> None:
        self.book_px = np.zeros((2, 4096))
        self.book_sz = np.zeros((2, 4096))
        self.book_n = np.zeros(2, np.int64)
        self.st = np.zeros(STATE_SLOTS, np.int64)
        self.st[S_FUTURES] = futures
        self.st[S_TOPS_SORTED] = self.st[S_WAIT_SORTED] = 1
        self.fi = np.zeros(8)  # mismatch example: bookTicker top, book top
        self.tops_u = np.zeros(MATCH_WINDOW, np.int64)
        self.tops_v = np.zeros((MATCH_WINDOW, 4))
        self.wait_u = np.zeros(MATCH_WINDOW, np.int64)
        self.wait_v = np.zeros((MATCH_WINDOW, 4))
        self.wait_meta = np.zeros((MATCH_WINDOW, 2), np.int64)  # line, file index
        self.wait_alive = np.zeros(MATCH_WINDOW, np.bool_)
        self.levels = levels
        self.alloc(rows)

    def alloc(self, rows: int) -> None:
        """(Re)allocate the output buffers for `rows` rows (empties them)."""
        deep = max(rows // 8, 1) * max(self.levels, 1)
        self.oi = np.zeros((5, rows), np.int64)
        self.of = np.zeros((6, rows))
        self.ob = np.zeros((3, rows), np.int8)
        self.doff = np.zeros((2, rows + 1), np.int32)
        self.dv = np.zeros((4, deep))
        self.st[S_ROWS] = 0

    def grow_book(self) -> None:
        """Double the book's capacity."""
        for name in ("book_px", "book_sz"):
            old = getattr(self, name)
            new = np.zeros((2, 2 * old.shape[1]))
            new[:, :old.shape[1]] = old
            setattr(self, name, new)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The state and output arrays in :func:`capture_pass`'s argument order."""
        return (self.book_px, self.book_sz, self.book_n, self.st, self.fi, self.tops_u, self.tops_v, self.wait_u,
                self.wait_v, self.wait_meta, self.wait_alive, self.oi, self.of, self.ob, self.doff, self.dv)


@register_jitable
def _find(keys: np.ndarray, n: int, ordered: int, u: int) -> int:
    """Slot of the newest entry with key `u` among a ring's last entries (`n` ever written), or -1."""
    w = keys.shape[0]
    m = min(n, w)
    first = n - m
    if ordered:
        lo, hi = 0, m
        while lo < hi:
            mid = (lo + hi) // 2
            if keys[(first + mid) % w] <= u:
                lo = mid + 1
            else:
                hi = mid
        if lo > 0 and keys[(first + lo - 1) % w] == u:
            return (first + lo - 1) % w
        return -1
    for k in range(m - 1, -1, -1):
        if keys[(first + k) % w] == u:
            return (first + k) % w
    return -1


@register_jitable
def _set_level(px: np.ndarray, sz: np.ndarray, n: np.ndarray, side: int, price: float, qty: float) -> None:
    """Set the quantity at `price` on `side` (0 bids, 1 asks); 0 removes the level."""
    if side:
        price = -price
    k = n[side]
    lo, hi = 0, k
    while lo < hi:
        mid = (lo + hi) // 2
        if px[side, mid] < price:
            lo = mid + 1
        else:
            hi = mid
    hit = lo < k and px[side, lo] == price
    if qty == 0.0:
        if hit:
            for j in range(lo, k - 1):
                px[side, j] = px[side, j + 1]
                sz[side, j] = sz[side, j + 1]
            n[side] = k - 1
    elif hit:
        sz[side, lo] = qty
    else:
        for j in range(k, lo, -1):
            px[side, j] = px[side, j - 1]
            sz[side, j] = sz[side, j - 1]
        px[side, lo] = price
        sz[side, lo] = qty
        n[side] = k + 1


@register_jitable
def _apply_levels(px: np.ndarray, sz: np.ndarray, n: np.ndarray, vals: np.ndarray, o: int, nb: int,
                  na: int, top: np.ndarray) -> None:
    """Apply `nb` bid then `na` ask (price, quantity) pairs from ``vals[o:]``; `top` gets the
    best bid price, size, ask price, size after them (NaN for an empty side)."""
    for j in range(nb):
        _set_level(px, sz, n, 0, vals[o + 2 * j], vals[o + 2 * j + 1])
    o += 2 * nb
    for j in range(na):
        _set_level(px, sz, n, 1, vals[o + 2 * j], vals[o + 2 * j + 1])
    nbid, nask = n[0], n[1]
    top[0] = px[0, nbid - 1] if nbid else np.nan
    top[1] = sz[0, nbid - 1] if nbid else np.nan
    top[2] = -px[1, nask - 1] if nask else np.nan
    top[3] = sz[1, nask - 1] if nask else np.nan


@register_jitable
def _compare(st: np.ndarray, fi: np.ndarray, u: int, ticker: np.ndarray, book: np.ndarray, line: int,
             file: int) -> bool:
    """Count one bookTicker comparison; True when it is a mismatch worth an example (first five)."""
    st[S_COMPARED] += 1
    same = True
    for k in range(4):
        same = same and ticker[k] == book[k]
    if same:
        return False
    st[S_MISMATCHES] += 1
    if st[S_MISMATCHES] > 5:
        return False
    for k in range(4):
        fi[k] = ticker[k]
        fi[4 + k] = book[k]
    st[S_INFO], st[S_INFO1], st[S_INFO2] = u, line, file
    return True


@register_jitable
def _emit_levels(rec: np.ndarray, i: int, vals: np.ndarray, o: int, nb: int, na: int, kind: int, seq: int,
                 top: np.ndarray, levels: int, px: np.ndarray, sz: np.ndarray, n: np.ndarray, st: np.ndarray,
                 oi: np.ndarray, of: np.ndarray, ob: np.ndarray, doff: np.ndarray, dv: np.ndarray) -> None:
    """One row per level of record `i` (bids then asks), the book's best `levels` on the last."""
    r = st[S_ROWS]
    flags = F_PRICE | (F_BID if n[0] else 0) | (F_ASK if n[1] else 0)
    for j in range(nb + na):
        oi[O_TS, r], oi[O_LOCAL, r], oi[O_ORDER, r] = rec[i, REC_TS], rec[i, REC_LOCAL], 0
        oi[O_SEQ, r], oi[O_LINE, r] = seq, rec[i, REC_LINE]
        of[O_PRICE, r], of[O_SIZE, r] = vals[o + 2 * j], vals[o + 2 * j + 1]
        for k in range(4):
            of[O_BID_PX + k, r] = top[k]
        ob[O_KIND, r], ob[O_SIDE, r], ob[O_FLAGS, r] = kind, 1 if j < nb else -1, flags
        doff[0, r + 1], doff[1, r + 1] = doff[0, r], doff[1, r]
        r += 1
    st[S_ROWS] = r
    if levels and r:
        last = r - 1
        ob[O_FLAGS, last] |= F_DEEP
        d = doff[0, last]
        m = min(levels, n[0])
        for k in range(m):
            dv[0, d + k], dv[1, d + k] = px[0, n[0] - 1 - k], sz[0, n[0] - 1 - k]
        doff[0, r] = d + m
        d = doff[1, last]
        m = min(levels, n[1])
        for k in range(m):
            dv[2, d + k], dv[3, d + k] = -px[1, n[1] - 1 - k], sz[1, n[1] - 1 - k]
        doff[1, r] = d + m


@register_jitable
def _one_row(rec: np.ndarray, i: int, kind: int, side: int, seq: int, order: int, flags: int, st: np.ndarray,
             oi: np.ndarray, ob: np.ndarray, doff: np.ndarray) -> int:
    """The shared fields of a one-row record (ticker, trade); returns the row."""
    r = st[S_ROWS]
    oi[O_TS, r], oi[O_LOCAL, r], oi[O_ORDER, r] = rec[i, REC_TS], rec[i, REC_LOCAL], order
    oi[O_SEQ, r], oi[O_LINE, r] = seq, rec[i, REC_LINE]
    ob[O_KIND, r], ob[O_SIDE, r], ob[O_FLAGS, r] = kind, side, flags
    doff[0, r + 1], doff[1, r + 1] = doff[0, r], doff[1, r]
    st[S_ROWS] = r + 1
    return r


def _capture_pass(rec: np.ndarray, voff: np.ndarray, vals: np.ndarray, file: int, start: int, replay: bool,
                  levels: int, kinds: np.ndarray, px: np.ndarray, sz: np.ndarray, n: np.ndarray, st: np.ndarray,
                  fi: np.ndarray, tops_u: np.ndarray, tops_v: np.ndarray, wait_u: np.ndarray, wait_v: np.ndarray,
                  wait_meta: np.ndarray, wait_alive: np.ndarray, oi: np.ndarray, of: np.ndarray, ob: np.ndarray,
                  doff: np.ndarray, dv: np.ndarray) -> tuple[int, int]:
    """Process records ``start:`` of a block; returns ``(status, record index)``.

    Parameters
    ----------
    rec, voff, vals
        The block: records (``REC_*`` columns), the offset of each record's values in `vals`.
    file : int
        Index of the file the block comes from (kept with waiting bookTickers).
    start : int
        First record to process.
    replay : bool
        The records are depth events held until a snapshot: apply them by the sequence rules
        even when out of sync (as they were before the snapshot arrived).
    levels : int
        Book levels per side for the list columns.
    kinds : numpy.ndarray
        Schema kind codes of depth, snapshot, ticker, trade.
    px, sz, n, st, fi, tops_u, tops_v, wait_u, wait_v, wait_meta, wait_alive, oi, of, ob, doff, dv
        :meth:`KernelState.arrays`.

    Returns
    -------
    tuple of int
        ``DONE`` (index = records), ``FLUSH`` / ``GROW_BOOK`` (record `i` not processed: empty or
        enlarge the buffers and resume at `i`), ``BUFFER`` (depth event `i` arrived before the
        snapshot: hold it, resume at `i` + 1), ``SNAPSHOT`` (applied; replay the held events,
        resume at `i` + 1), ``GAP`` (sequence gap at `i`, code and values in ``st[S_INFO:]``; book
        dropped, resume at `i` + 1), ``MISMATCH`` (an example in ``st[S_INFO:]`` and `fi`;
        resume at `i` + 1).
    """
    nrec = rec.shape[0]
    cap, dcap, bcap = oi.shape[1], dv.shape[1], px.shape[1]
    top = np.empty(4)
    i = start
    while i < nrec:
        kind = rec[i, REC_KIND]
        if kind == R_SKIP:
            i += 1
            continue
        nb, na = rec[i, REC_NB], rec[i, REC_NA]
        need = nb + na if kind <= R_SNAPSHOT else 1
        rows = st[S_ROWS]
        if rows + need > cap or doff[0, rows] + levels > dcap or doff[1, rows] + levels > dcap:
            return FLUSH, i
        if kind <= R_SNAPSHOT and (n[0] + nb > bcap or n[1] + na > bcap):
            return GROW_BOOK, i
        o = voff[i]
        if kind == R_DEPTH:
            if not replay and not st[S_SYNCED]:
                return BUFFER, i
            U, u, pu = rec[i, REC_X], rec[i, REC_Y], rec[i, REC_Z]
            futures = st[S_FUTURES] != 0
            gap = 0
            if st[S_HAS_JOIN]:
                last = st[S_JOIN]
                if (u < last) if futures else (u <= last):
                    st[S_DROPPED] += 1
                    i += 1
                    continue
                if (U <= last and last <= u) if futures else (U <= last + 1 and last + 1 <= u):
                    st[S_HAS_JOIN] = 0
                else:
                    gap = GAP_JOIN
                    st[S_INFO1], st[S_INFO2], st[S_INFO3] = U, u, last
            elif futures and (not st[S_HAS_LAST] or pu != st[S_LAST]):
                gap = GAP_PU
                st[S_INFO1], st[S_INFO2], st[S_INFO3] = pu, st[S_HAS_LAST], st[S_LAST]
            elif not futures and (not st[S_HAS_LAST] or U != st[S_LAST] + 1):
                gap = GAP_U
                st[S_INFO1], st[S_INFO2], st[S_INFO3] = U, st[S_HAS_LAST], st[S_LAST]
            if gap:
                st[S_INFO] = gap
                st[S_SYNCED] = st[S_HAS_JOIN] = 0
                n[0] = n[1] = 0
                st[S_SKIPPED] += 1
                return GAP, i
            _apply_levels(px, sz, n, vals, o, nb, na, top)
            st[S_HAS_LAST], st[S_LAST] = 1, u
            slot = _find(tops_u, st[S_TOPS_N], st[S_TOPS_SORTED], u)
            if slot < 0:
                w = tops_u.shape[0]
                if st[S_TOPS_N] and tops_u[(st[S_TOPS_N] - 1) % w] >= u:
                    st[S_TOPS_SORTED] = 0
                slot = st[S_TOPS_N] % w
                tops_u[slot] = u
                st[S_TOPS_N] += 1
            tops_v[slot, :] = top
            example = False
            slot = _find(wait_u, st[S_WAIT_N], st[S_WAIT_SORTED], u)
            if slot >= 0 and wait_alive[slot]:
                wait_alive[slot] = False
                example = _compare(st, fi, u, wait_v[slot], top, wait_meta[slot, 0], wait_meta[slot, 1])
            _emit_levels(rec, i, vals, o, nb, na, kinds[0], u, top, levels, px, sz, n, st, oi, of, ob, doff, dv)
            st[S_DEPTH_ROWS] += nb + na
            if example:
                return MISMATCH, i
        elif kind == R_TICKER:
            u = rec[i, REC_X]
            r = _one_row(rec, i, kinds[2], 0, u, 0, F_BID | F_ASK, st, oi, ob, doff)
            for k in range(4):
                of[O_BID_PX + k, r] = vals[o + k]
            st[S_TICKER_ROWS] += 1
            ticker = vals[o:o + 4]
            example = False
            slot = _find(tops_u, st[S_TOPS_N], st[S_TOPS_SORTED], u)
            if slot >= 0:
                example = _compare(st, fi, u, ticker, tops_v[slot], rec[i, REC_LINE], file)
            elif st[S_SYNCED] and (not st[S_HAS_LAST] or u > st[S_LAST]):
                slot = _find(wait_u, st[S_WAIT_N], st[S_WAIT_SORTED], u)
                if slot < 0 or not wait_alive[slot]:
                    w = wait_u.shape[0]
                    if st[S_WAIT_N] and wait_u[(st[S_WAIT_N] - 1) % w] > u:
                        st[S_WAIT_SORTED] = 0
                    slot = st[S_WAIT_N] % w
                    wait_u[slot], wait_alive[slot] = u, True
                    st[S_WAIT_N] += 1
                wait_v[slot, :] = ticker
                wait_meta[slot, 0], wait_meta[slot, 1] = rec[i, REC_LINE], file
            if example:
                return MISMATCH, i
        elif kind == R_TRADE:
            flags = F_PRICE | (F_ORDER if rec[i, REC_NB] else 0)
            r = _one_row(rec, i, kinds[3], rec[i, REC_Z], rec[i, REC_X], rec[i, REC_Y], flags, st, oi, ob, doff)
            of[O_PRICE, r], of[O_SIZE, r] = vals[o], vals[o + 1]
            for k in range(4):
                of[O_BID_PX + k, r] = np.nan
            st[S_TRADE_ROWS] += 1
        else:  # snapshot
            if st[S_SYNCED]:
                st[S_IGNORED] += 1
                i += 1
                continue
            n[0] = n[1] = 0
            last = rec[i, REC_X]
            _apply_levels(px, sz, n, vals, o, nb, na, top)
            _emit_levels(rec, i, vals, o, nb, na, kinds[1], last, top, levels, px, sz, n, st, oi, of, ob, doff, dv)
            st[S_SNAPSHOT_ROWS] += nb + na
            st[S_SNAPSHOTS] += 1
            st[S_SYNCED], st[S_HAS_JOIN], st[S_JOIN], st[S_HAS_LAST] = 1, 1, last, 0
            return SNAPSHOT, i
        i += 1
    return DONE, nrec


#: The compiled kernel (releases the GIL).
capture_pass = njit(cache=True, nogil=True)(_capture_pass)
#: The plain twin: the same source run by the interpreter.
capture_pass_plain = _capture_pass


_POW10 = np.array([float(10**k) for k in range(23)])  # exact in float64


def _parse_decimals(buf: np.ndarray, out: np.ndarray, ok: np.ndarray) -> None:
    """Parse newline-terminated decimal strings (``-?digits[.digits]``) from `buf` into `out`.

    The value equals Python's ``float()`` of the string: with at most 15 digits the mantissa
    and the power of ten are exact doubles and one division rounds correctly. ``ok[k]`` is
    False for a string outside that grammar (exponent, ``nan``, more digits, ...): the caller
    converts those with ``float()``.
    """
    i = k = 0
    n = buf.size
    while i < n:
        neg = buf[i] == 45
        if neg:
            i += 1
        m = digits = dec = 0
        seen_dot, good = False, True
        while buf[i] != 10:
            c = np.int64(buf[i])  # not uint8 arithmetic (the plain twin would wrap)
            if 48 <= c <= 57:
                if digits < 18:
                    m = m * 10 + (c - 48)
                digits += 1
                if seen_dot:
                    dec += 1
            elif c == 46 and not seen_dot:
                seen_dot = True
            else:
                good = False
            i += 1
        i += 1
        good = good and 0 < digits <= 15 and dec <= 22
        v = m / _POW10[dec] if good else 0.0
        out[k] = -v if neg else v
        ok[k] = good
        k += 1


#: Decimal strings to float64, compiled.
parse_decimals = njit(cache=True, nogil=True)(_parse_decimals)
#: The plain twin: the same source run by the interpreter.
parse_decimals_plain = _parse_decimals

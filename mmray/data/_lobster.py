"""LOBSTER message + orderbook lines → event columns in one pass: a numba kernel and its plain twin.

:func:`lobster_pass` walks a block of message-file bytes and a block of orderbook-file bytes in
lockstep, one row (one line of each) at a time: it parses both lines by the strict grammar of
:func:`mmray.data._parse.parse_line`, checks them and writes the row's event columns straight into
the output arrays of one batch (:class:`Columns`): time, kind, side, price, size, order id, the
top of book, and the occupied levels per side (best first) for files with more than one level.
It stops and returns a status whenever Python has to act: a block is used up (read more of that
file), a line is declined (Python reads it with the general CSV reader and hands the values back
through ``mpre``/``bpre``), or the batch is full. State that carries over a stop lives in the
``pos`` array, so the kernel resumes exactly where it stopped.

Checks (first bad row of the batch per check, reported in this order): time negative, event type
outside 1–7, negative size, direction not ±1, halt price not −1/0/1, a dummy price in a message;
in the book: a negative size, an occupied level after an empty one, levels out of order.

:func:`lobster_pass_plain` is the same source run by the Python interpreter (the plain twin; a
test checks both give the same columns, positions and checks).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import njit

from mmray.data._parse import parse_line

__all__ = ["CHECKS", "Columns", "lobster_pass", "lobster_pass_plain"]

# statuses
NEED_MESSAGE, NEED_BOOK, FULL, DECLINED_MESSAGE, DECLINED_BOOK = range(5)
# pos slots: byte offsets into the blocks, rows used of mpre/bpre, rows filled, lines parsed ahead,
# 1-based line number of each file's next line (the kernel counts the lines it parses)
P_MSG, P_BOOK, P_MPRE, P_BPRE, P_ROWS, P_HAVE, P_MLINE, P_BLINE = range(8)
POS_SLOTS = 8
HAVE_MESSAGE, HAVE_BOOK = 1, 2  # P_HAVE bits: mrow / brow hold the next row's parsed line
MESSAGE_COLUMNS = 6
#: What each check means, in the order they are reported (index = the check's slot in ``bad``).
CHECKS = (
    ("message", "column 1 (time): expected finite seconds after midnight"),
    ("message", "column 2 (event type): unknown type; expected 1-7"),
    ("message", "column 4 (size): negative size; expected >= 0"),
    ("message", "column 6 (direction): expected -1 or 1"),
    ("message", "type-7 halt: price must be -1 (halt), 0 (quoting resumes) or 1 (trading resumes)"),
    ("message", "column 5 (price): dummy price in a message"),
    ("orderbook", "negative size in the book; expected >= 0"),
    ("orderbook", "an occupied level after an empty (dummy) one; expected empty levels last"),
    ("orderbook", "book levels out of order; expected asks rising and bids falling"),
)
(BAD_TIME, BAD_TYPE, BAD_SIZE, BAD_DIRECTION, BAD_HALT, BAD_DUMMY, BAD_BOOK_SIZE, BAD_EMPTY_ORDER,
 BAD_LEVEL_ORDER) = range(len(CHECKS))


def _arrow_array(n: int, dtype: type) -> tuple[pa.Buffer, np.ndarray]:
    """A buffer from Arrow's memory pool and a writable numpy view of it (`n` items)."""
    buf = pa.allocate_buffer(max(n, 1) * np.dtype(dtype).itemsize)
    return buf, np.frombuffer(buf, dtype)[:n]


class Columns:
    """The output arrays of one batch (`rows` rows), allocated from Arrow's memory pool so that the
    batch's columns are these buffers, not copies.

    Parameters
    ----------
    rows : int
        Batch capacity.
    level : int
        Levels in the orderbook file; the level lists are only filled when it is above 1.
    """

    def __init__(self, rows: int, level: int) -> None:
        deep = rows * level if level > 1 else 0
        self.buffers: dict[str, pa.Buffer] = {}
        self.ts = self._new("ts", rows, np.int64)
        self.kind = self._new("kind", rows, np.int8)
        self.side = self._new("side", rows, np.int8)
        self.price = self._new("price", rows, np.float64)
        self.size = self._new("size", rows, np.float64)
        self.oid = self._new("order_id", rows, np.int64)
        self.top = [self._new(name, rows, np.float64) for name in ("bid_px", "bid_sz", "ask_px", "ask_sz")]
        self.ok = np.zeros((3, rows), np.bool_)  # order id known, bid side occupied, ask side occupied
        self.offsets = [self._new(f"{name}_offsets", rows + 1, np.int32) for name in ("bid", "ask")]
        self.values = [self._new(name, deep, np.float64) for name in ("bid_pxs", "bid_szs", "ask_pxs", "ask_szs")]
        for off in self.offsets:
            off[0] = 0

    def _new(self, name: str, n: int, dtype: type) -> np.ndarray:
        self.buffers[name], view = _arrow_array(n, dtype)
        return view

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays in :func:`lobster_pass`'s argument order."""
        return (self.ts, self.kind, self.side, self.price, self.size, self.oid, *self.top, self.ok, *self.offsets,
                *self.values)


def _lobster_pass(mbuf: np.ndarray, bbuf: np.ndarray, mpre: np.ndarray, bpre: np.ndarray, pos: np.ndarray,
                  level: int, dummy: int, shift: int, kind_of_type: np.ndarray, side_sign: np.ndarray,
                  mscales: np.ndarray, bscales: np.ndarray, mrow: np.ndarray, brow: np.ndarray, bad: np.ndarray,
                  ts: np.ndarray, kind: np.ndarray, side: np.ndarray, price: np.ndarray, size: np.ndarray,
                  oid: np.ndarray, bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray,
                  ok: np.ndarray, bid_off: np.ndarray, ask_off: np.ndarray, bid_pxs: np.ndarray,
                  bid_szs: np.ndarray, ask_pxs: np.ndarray, ask_szs: np.ndarray) -> int:
    """Fill rows ``pos[P_ROWS]:`` of the output arrays from the blocks; returns the status.

    Parameters
    ----------
    mbuf, bbuf : numpy.ndarray
        uint8 blocks of whole lines (each ends with a newline, or is empty) of the message and the
        orderbook file; parsing starts at ``pos[P_MSG]`` / ``pos[P_BOOK]``.
    mpre, bpre : numpy.ndarray
        Rows already parsed by the general reader (message: rows × 6, book: rows × 4·`level`),
        used before the blocks from ``pos[P_MPRE]`` / ``pos[P_BPRE]`` on.
    pos : numpy.ndarray
        int64[``POS_SLOTS``], read and updated (see the ``P_*`` slots).
    level, dummy : int
        Book levels; the dummy price magnitude of empty levels.
    shift : int
        Added to the time (ns after midnight) to give ``ts``.
    kind_of_type, side_sign : numpy.ndarray
        Kind code and side sign per event type (index 0 unused).
    mscales, bscales : numpy.ndarray
        Decimals per column of each file.
    mrow, brow : numpy.ndarray
        Scratch rows (int64) where a parsed line lands; they carry a line parsed before a stop.
    bad : numpy.ndarray
        int64[``len(CHECKS)``]: the first bad row of the batch per check (−1: none), updated.
    ts ... ask_szs
        :meth:`Columns.arrays`.

    Returns
    -------
    int
        ``NEED_MESSAGE`` / ``NEED_BOOK`` (that block is used up), ``FULL`` (the batch is full),
        ``DECLINED_MESSAGE`` / ``DECLINED_BOOK`` (the line at ``pos[P_MSG]`` / ``pos[P_BOOK]`` is
        not in the grammar).
    """
    cap = ts.shape[0]
    r, have = pos[P_ROWS], pos[P_HAVE]
    lists = level > 1
    ncols = 4 * level
    status = FULL
    while r < cap:
        if not have & HAVE_MESSAGE:
            if pos[P_MPRE] < mpre.shape[0]:
                for j in range(MESSAGE_COLUMNS):
                    mrow[j] = mpre[pos[P_MPRE], j]
                pos[P_MPRE] += 1
            elif pos[P_MSG] >= mbuf.shape[0]:
                status = NEED_MESSAGE
                break
            else:
                end = parse_line(mbuf, pos[P_MSG], MESSAGE_COLUMNS, mscales, mrow)
                if end < 0:
                    status = DECLINED_MESSAGE
                    break
                pos[P_MSG] = end
                pos[P_MLINE] += 1
            have |= HAVE_MESSAGE
        if not have & HAVE_BOOK:
            if pos[P_BPRE] < bpre.shape[0]:
                for j in range(ncols):
                    brow[j] = bpre[pos[P_BPRE], j]
                pos[P_BPRE] += 1
            elif pos[P_BOOK] >= bbuf.shape[0]:
                status = NEED_BOOK
                break
            else:
                end = parse_line(bbuf, pos[P_BOOK], ncols, bscales, brow)
                if end < 0:
                    status = DECLINED_BOOK
                    break
                pos[P_BOOK] = end
                pos[P_BLINE] += 1
            have |= HAVE_BOOK
        # the message: time, type, order id, size, price, direction
        t, typ, o, sz, px, d = mrow[0], mrow[1], mrow[2], mrow[3], mrow[4], mrow[5]
        ts[r] = t + shift
        if t < 0 and bad[BAD_TIME] < 0:
            bad[BAD_TIME] = r
        known = 1 <= typ <= 7
        if not known and bad[BAD_TYPE] < 0:
            bad[BAD_TYPE] = r
        if sz < 0 and bad[BAD_SIZE] < 0:
            bad[BAD_SIZE] = r
        if d != 1 and d != -1 and bad[BAD_DIRECTION] < 0:
            bad[BAD_DIRECTION] = r
        halt = typ == 7
        if halt and (px < -1 or px > 1) and bad[BAD_HALT] < 0:
            bad[BAD_HALT] = r
        if not halt and (px >= dummy or px <= -dummy) and bad[BAD_DUMMY] < 0:
            bad[BAD_DUMMY] = r
        kind[r] = kind_of_type[typ] if known else 0
        side[r] = side_sign[typ] * d if known and (d == 1 or d == -1) else 0
        price[r] = px if halt else px / 1e4
        size[r] = sz
        oid[r] = o
        ok[0, r] = o != 0
        # the book after it: (ask price, ask size, bid price, bid size) per level
        neg = disorder = order = False
        bid_open = ask_open = True  # no empty level seen yet on that side
        nb, na = bid_off[r], ask_off[r]
        for j in range(level):
            ap, asz, bp, bsz = brow[4 * j], brow[4 * j + 1], brow[4 * j + 2], brow[4 * j + 3]
            neg = neg or asz < 0 or bsz < 0
            ask_ok, bid_ok = ap != dummy, bp != -dummy
            disorder = disorder or (ask_ok and not ask_open) or (bid_ok and not bid_open)
            ask_open = ask_open and ask_ok
            bid_open = bid_open and bid_ok
            if j:
                order = order or (ask_ok and ap - brow[4 * j - 4] <= 0) or (bid_ok and bp - brow[4 * j - 2] >= 0)
            if lists:
                if ask_ok:
                    ask_pxs[na] = ap / 1e4
                    ask_szs[na] = asz
                    na += 1
                if bid_ok:
                    bid_pxs[nb] = bp / 1e4
                    bid_szs[nb] = bsz
                    nb += 1
        if neg and bad[BAD_BOOK_SIZE] < 0:
            bad[BAD_BOOK_SIZE] = r
        if disorder and bad[BAD_EMPTY_ORDER] < 0:
            bad[BAD_EMPTY_ORDER] = r
        if order and bad[BAD_LEVEL_ORDER] < 0:
            bad[BAD_LEVEL_ORDER] = r
        bid_off[r + 1], ask_off[r + 1] = nb, na
        bid_px[r], bid_sz[r], ask_px[r], ask_sz[r] = brow[2] / 1e4, brow[3], brow[0] / 1e4, brow[1]
        ok[1, r], ok[2, r] = brow[2] != -dummy, brow[0] != dummy
        have = 0
        r += 1
    pos[P_ROWS], pos[P_HAVE] = r, have
    return status


#: The compiled kernel (releases the GIL).
lobster_pass = njit(cache=True, nogil=True)(_lobster_pass)
#: The plain twin: the same source run by the interpreter.
lobster_pass_plain = _lobster_pass

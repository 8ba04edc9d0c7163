"""The event schema, its builder and its validator."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mmray.data import EVENT_SCHEMA, KINDS, DataError, EventValidator, event_batch
from mmray.data.schema import kind_codes, levels_array


def _batch(**overrides):
    cols = dict(ts=[1, 2, 3], venue="v", symbol="S", kind=kind_codes(["add", "trade", "halt"]),
                side=np.array([1, -1, 0], np.int8), price=[1.0, 2.0, 3.0], size=[1.0, 0.0, 2.0],
                bid_px=[1.0, 1.0, 1.0], ask_px=[2.0, 2.0, 2.0])
    cols.update(overrides)
    return event_batch(3, cols)


def test_schema_fields_and_kinds():
    assert EVENT_SCHEMA.names[:4] == ["ts", "ts_local", "venue", "symbol"]
    for name in ("kind", "side", "price", "size", "order_id", "bid_px", "bid_sz", "ask_px", "ask_sz",
                 "bid_pxs", "bid_szs", "ask_pxs", "ask_szs"):
        assert name in EVENT_SCHEMA.names
    assert EVENT_SCHEMA.field("ts").type == pa.int64() and not EVENT_SCHEMA.field("ts").nullable
    assert EVENT_SCHEMA.field("side").type == pa.int8()
    assert len(set(KINDS)) == len(KINDS)


def test_builder_fills_nulls_and_kinds():
    b = _batch(bid_pxs=levels_array(np.array([0, 2, 2, 3]), np.array([1.0, 0.5, 1.0])))
    assert b.schema == EVENT_SCHEMA
    assert b.column("kind").to_pylist() == ["add", "trade", "halt"]
    assert b.column("order_id").null_count == 3 and b.column("venue").to_pylist() == ["v"] * 3
    assert b.column("bid_pxs").to_pylist() == [[1.0, 0.5], [], [1.0]]
    EventValidator("x").check(b)
    with pytest.raises(KeyError):
        event_batch(1, {"nope": [1]})


@pytest.mark.parametrize(("override", "what"), [
    ({"price": [1.0, float("nan"), 3.0]}, "price is NaN"),
    ({"size": [1.0, -1.0, 3.0]}, "negative size"),
    ({"bid_px": [1.0, 3.0, 1.0]}, "crossed book"),
    ({"ts": [1, 3, 2]}, "time going backwards"),
    ({"side": np.array([1, 2, 0], np.int8)}, "side must be"),
])
def test_validator_names_the_line(override, what):
    with pytest.raises(DataError, match=what) as err:
        EventValidator("f.csv").check(_batch(**override), lines=np.array([10, 11, 12]))
    assert str(err.value).startswith("f.csv:1")
    assert err.value.line in (11, 12) and isinstance(err.value, ValueError)


def test_validator_carries_time_across_batches():
    v = EventValidator("f.csv")
    v.check(_batch(ts=[5, 6, 7]))
    with pytest.raises(DataError, match="row 0 of a batch: time going backwards"):
        v.check(_batch(ts=[6, 8, 9]))


def test_validator_ignores_what_null_slots_hold_and_checks_sliced_batches():
    # a NaN, a negative size or a crossed quote in a null slot is no error; in a valid slot it is
    nan_under_null = pa.array([1.0, float("nan"), 3.0], mask=np.array([False, True, False]))
    neg_under_null = pa.array([1.0, -5.0, 3.0], mask=np.array([False, True, False]))
    crossed_under_null = pa.array([1.0, 9.0, 1.0], mask=np.array([False, True, False]))
    EventValidator("x").check(_batch(price=nan_under_null, size=neg_under_null, bid_px=crossed_under_null))
    b = _batch(price=[float("nan"), 1.0, 2.0])
    with pytest.raises(DataError, match="row 0 of a batch: price is NaN"):
        EventValidator("x").check(b)
    EventValidator("x").check(b.slice(1))  # the value buffer still holds the NaN before the slice's offset
    with pytest.raises(DataError, match="row 0 of a batch: negative size"):
        EventValidator("x").check(_batch(size=[1.0, -1.0, 2.0]).slice(1))


def test_infer_tick_and_utc_date():
    from mmray.data.schema import NS_PER_DAY, infer_tick, utc_date
    assert infer_tick(np.array([580.01, 580.02, 580.05, np.nan, 580.05])) == 0.01
    assert infer_tick(np.array([60000.1, 60000.2, 60001.0])) == 0.1  # float differences rounded
    assert infer_tick(np.array([1.0, 1.01, 1.015])) == 0.005
    assert infer_tick(np.array([1.0, 1.3, 1.5])) == 0.0  # 0.2 is the smallest gap, 1.3 is off its grid
    assert infer_tick(np.array([5.0])) == 0.0 and infer_tick(np.array([np.nan])) == 0.0
    assert utc_date(0) == "1970-01-01" and utc_date(1_340_280_000 * 10**9 // NS_PER_DAY) == "2012-06-21"

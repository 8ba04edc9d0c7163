"""The entry point: event data → one consumer per venue/symbol/day shard → a pooled :class:`Calibration`.

A dataset path or URI is split into shards (:func:`mmray.data.datasets.list_shards`), each
reduced by :func:`calibrate_shard`, a Ray task with a fractional CPU through
:func:`mmray.data.datasets.map_shards` (or in this process with ``use_ray=False``). In-memory
event tables, record batches and Ray datasets are grouped by venue/symbol/day in this process
(:func:`_from_batches`). Either way each day goes through the same reduction
(:class:`~mmray.data.calibrate.events._Collector`) and analysis
(:func:`~mmray.data.calibrate.windows._analyse`), then :func:`~mmray.data.calibrate.windows._pool`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from mmray.data.calibrate.events import _COLUMNS, _Collector
from mmray.data.calibrate.results import Calibration
from mmray.data.calibrate.settings import Settings
from mmray.data.calibrate.windows import _analyse, _one_venue_symbol, _pool, _ShardResult
from mmray.data.datasets import Shard, _matcher, list_shards, map_shards, worker_info
from mmray.data.errors import DataError
from mmray.data.schema import NS_PER_DAY, utc_date

__all__ = ["calibrate", "calibrate_shard"]


def _analysed(col: _Collector, venue: str, symbol: str, date: str, s: Settings, name: str,
              started: float) -> _ShardResult:
    """A collected day analysed; its ``run`` says which shard, where it ran and for how long since `started`."""
    result = _analyse(col.finish(venue, symbol, date, s.quotes), s, {"shard": name})
    result.run.update(worker_info(started))
    return result


def calibrate_shard(shard: Shard, settings: Settings, engine: str = "arrow") -> _ShardResult:
    """Calibrate one venue/symbol/day: the per-shard consumer :func:`calibrate` runs as a Ray task.

    Streams the shard's columns ``ts, ts_local, kind, side, price, bid_px, ask_px`` batch by batch
    (`engine` as in :meth:`Shard.batches`) and returns the day's fit, its windows, the arrays the
    pooled fit needs, and where it ran (``run``: pid, Ray worker and node ids, seconds, rows).
    """
    started = time.perf_counter()
    col = _Collector(settings.hidden)
    for b in shard.batches(_COLUMNS, engine=engine):
        col.add(b)
    if col.rows == 0:
        raise DataError(shard.root, None, f"{shard.name} has no rows")
    return _analysed(col, shard.venue, shard.symbol, shard.date, settings, shard.name, started)


def _from_batches(batches: Iterable[pa.RecordBatch], s: Settings, venue: Any, symbol: Any,
                  date: Any) -> list[_ShardResult]:
    """In-process path: group rows by venue/symbol/day (``date`` column, else the UTC day of ``ts``)."""
    keep = [_matcher(n, spec) for n, spec in (("venue", venue), ("symbol", symbol), ("date", date))]
    collectors: dict[tuple[str, str, str], _Collector] = {}
    for b in batches:
        if not b.num_rows:
            continue
        names = b.schema.names
        missing = [c for c in (*_COLUMNS, "venue", "symbol") if c not in names]
        if missing:
            raise DataError(None, None, f"event data lacks columns {missing}")
        ts = b.column("ts").to_numpy(zero_copy_only=False).astype(np.int64)
        if "date" in names:
            dates = b.column("date").cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)
        else:
            days, inv = np.unique(ts // NS_PER_DAY, return_inverse=True)
            dates = np.array([utc_date(x) for x in days], dtype=object)[inv]
        ven = b.column("venue").cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)
        sym = b.column("symbol").cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)
        key = ven + "\x1f" + sym + "\x1f" + dates
        uniq, inverse = np.unique(key, return_inverse=True)
        for i, k in enumerate(uniq):
            v, sy, d = k.split("\x1f")
            if not all(ok(x) for ok, x in zip(keep, (v, sy, d), strict=True)):
                continue
            part = b if uniq.size == 1 else b.filter(pa.array(inverse == i))
            collectors.setdefault((v, sy, d), _Collector(s.hidden)).add(part)
    return [_analysed(col, v, sy, d, s, f"venue={v}/symbol={sy}/date={d}", time.perf_counter())
            for (v, sy, d), col in sorted(collectors.items())]


def calibrate(data: Any, window: Any = None, *, venue: Any = None, symbol: Any = None, date: Any = None,
              step: Any = None, interval: Any = 1.0, lags: int = 1, level: float = 0.95,
              fit_range: tuple[float | None, float | None] | None = None, bucket: float | None = None,
              tick: float | None = None, hidden: bool = False, quotes: str = "auto", drift: bool = False,
              batches: int = 20, upper_quantile: float = 0.99, use_ray: bool = True, num_cpus: float = 0.5,
              engine: str = "arrow", settings: Settings | None = None) -> Calibration:
    """Calibrate σ, A and k (with intervals) per day, per rolling window and pooled.

    Parameters
    ----------
    data : path, URI, pyarrow.Table, ray.data.Dataset or iterable of record batches
        An event dataset (``mmray.data.ingest`` layout; local directory or ``s3://…``): each
        venue/symbol/day shard is reduced by its own consumer, a Ray task with `num_cpus` CPUs
        (:func:`mmray.data.datasets.map_shards`), or in this process with ``use_ray=False``.
        In-memory event tables and Ray datasets are grouped by venue/symbol/day here (a
        ``date`` column, else the UTC day of ``ts``).
    window : str, float or None
        Rolling windows, e.g. ``"30min"`` (see :class:`Settings`, also for `step`, `interval`,
        `lags`, `level`, `fit_range`, `bucket`, `tick`, `hidden`, `quotes`, `drift`, `batches`,
        `upper_quantile`); `settings` replaces all of them.
    venue, symbol, date : str, collection of str, callable or None
        Which partitions to use (pruned before reading). One venue and symbol must remain.
    engine : {"arrow", "ray"}
        How each consumer reads its shard: pyarrow in the task (default), or Ray Data
        (``ray.data.read_parquet``; one CPU is then kept free for its read tasks).

    Returns
    -------
    Calibration

    Raises
    ------
    DataError
        No shard matched, a shard without quotes, or unreadable data.
    ValueError
        Bad settings, or several venues/symbols left after the filters.
    """
    s = settings or Settings(interval=interval, lags=lags, batches=batches, level=level, fit_range=fit_range,
                             bucket=bucket, tick=tick, upper_quantile=upper_quantile, hidden=hidden, quotes=quotes,
                             drift=drift, window=window, step=step)
    if isinstance(data, str | os.PathLike):
        shards = list_shards(data, venue=venue, symbol=symbol, date=date)
        if not shards:
            raise DataError(os.fspath(data), None,
                            f"no partition matches venue={venue!r} symbol={symbol!r} date={date!r}")
        _one_venue_symbol((sh.venue, sh.symbol) for sh in shards)  # before any work
        results = map_shards(calibrate_shard, shards, num_cpus=num_cpus, use_ray=use_ray,
                             reserve_cpus=1.0 if engine == "ray" else 0.0, settings=s, engine=engine)
        return _pool(results, s)
    if isinstance(data, pa.Table):
        batches_in: Iterable[pa.RecordBatch] = data.to_batches()
    elif isinstance(data, pa.RecordBatch):
        batches_in = [data]
    elif hasattr(data, "iter_batches") and hasattr(data, "materialize"):  # ray.data.Dataset
        data.context.execution_options.preserve_order = True
        batches_in = (b for t in data.iter_batches(batch_format="pyarrow", batch_size=None)
                      for b in (t.to_batches() if isinstance(t, pa.Table) else [t]))
    else:
        batches_in = data
    return _pool(_from_batches(batches_in, s, venue, symbol, date), s)


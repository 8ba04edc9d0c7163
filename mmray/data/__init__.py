"""Limit-order-book data: one Arrow event schema, one loader per venue, Parquet datasets.

* :mod:`mmray.data.schema` — :data:`EVENT_SCHEMA`, the batch builder and validator;
* :mod:`mmray.data.lobster` — LOBSTER message + orderbook files (plain or zipped);
* :mod:`mmray.data.binance` — raw Binance WebSocket captures, book reconstruction;
* :mod:`mmray.data.vision` — data.binance.vision CSV dumps;
* :mod:`mmray.data.ingest` — Parquet datasets partitioned by venue/symbol/date, ``info``;
* :mod:`mmray.data.datasets` — Ray Data reads with partition pruning, shards by day, one
  fractional-CPU consumer per shard;
* :mod:`mmray.data.calibrate` — σ, A, k with confidence intervals per day and rolling window,
  parameter files; :mod:`mmray.data.plots` — its figure.

Every loader yields :class:`pyarrow.RecordBatch` objects of :data:`EVENT_SCHEMA` and raises
:class:`DataError` (a ``ValueError``) naming the file and 1-based line for bad input.
"""

from typing import Any

from mmray.data.errors import DataError
from mmray.data.schema import EVENT_SCHEMA, KINDS, EventValidator, event_batch

# imported on first use, so that `import mmray.data` does not pull in Ray. (The function
# `calibrate` is not re-exported: the name is its module's, `mmray.data.calibrate.calibrate`.)
_LAZY = {"Calibration": "calibrate", "load_params_file": "calibrate",
         "write_params_file": "calibrate", "Shard": "datasets", "list_shards": "datasets",
         "map_shards": "datasets", "read_events": "datasets"}

__all__ = ["EVENT_SCHEMA", "KINDS", "DataError", "EventValidator", "event_batch", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"mmray.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'mmray.data' has no attribute {name!r}")

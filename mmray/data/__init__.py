"""Limit-order-book data: one Arrow event schema, one loader per venue, Parquet datasets.

* :mod:`mmray.data.schema` — :data:`EVENT_SCHEMA`, the batch builder and validator;
* :mod:`mmray.data.lobster` — LOBSTER message + orderbook files (plain or zipped);
* :mod:`mmray.data.binance` — raw Binance WebSocket captures, book reconstruction;
* :mod:`mmray.data.vision` — data.binance.vision CSV dumps;
* :mod:`mmray.data.ingest` — Parquet datasets partitioned by venue/symbol/date, ``info``.

Every loader yields :class:`pyarrow.RecordBatch` objects of :data:`EVENT_SCHEMA` and raises
:class:`DataError` (a ``ValueError``) naming the file and 1-based line for bad input.
"""

from mmray.data.errors import DataError
from mmray.data.schema import EVENT_SCHEMA, KINDS, EventValidator, event_batch

__all__ = ["EVENT_SCHEMA", "KINDS", "DataError", "EventValidator", "event_batch"]

"""Test datasets of :mod:`mmray.data`: simulated days of ``sim/SIM`` added to a dataset directory.

Simulated events (:func:`mmray.data.calibrate.simulate_events`, known sigma, A, k) have no loader, so the
data tests write them into the dataset's venue/symbol/date partitions themselves, beside days that
``ingest`` wrote from the real samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pds

from mmray.data.calibrate import simulate_events
from mmray.data.ingest import PARTITIONING


def add_simulated_days(out: Path, days: Sequence[str], duration: float) -> None:
    """One simulated day (sigma 0.05, A 1, k 20; ``duration`` seconds from midnight UTC, seed = its index
    in ``days``) per date of ``days``, written into ``out``'s ``venue=sim/symbol=SIM/date=...`` partitions."""
    for i, day in enumerate(days):
        t = simulate_events(0.05, 1.0, 20.0, duration=duration, seed=i, start=f"{day}T00:00:00")
        t = t.append_column("date", pa.array([day] * t.num_rows))
        pds.write_dataset(t, out, format="parquet", partitioning=PARTITIONING, basename_template="part-{i}.parquet",
                          existing_data_behavior="overwrite_or_ignore")

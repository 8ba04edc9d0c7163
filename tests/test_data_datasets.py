"""Event datasets on Ray: pruned Ray Data reads, shards by day, one fractional-CPU consumer per shard.

One Ray session for the module (2 CPUs, no dashboard). The consumers hold 0.5 CPU each, so two
run at once and leave a CPU to Ray Data's read tasks (the deadlock in ../shared/RAY_NOTES.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pytest
from lob_datasets import add_simulated_days

from mmray.data.calibrate import Settings, calibrate, calibrate_shard
from mmray.data.datasets import assign_shards, list_shards, map_shards, max_in_flight, read_events
from mmray.data.errors import DataError
from mmray.data.ingest import ingest

pytestmark = pytest.mark.ray

FIX = Path(__file__).parent / "fixtures" / "data"
AAPL = [FIX / "lobster" / f"AAPL_2012-06-21_34200000_57600000_{k}_1.csv" for k in ("message", "orderbook")]
AMZN_ZIP = FIX / "lobster" / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"
USDM = FIX / "binance" / "usdm_btcusdt_20240808_head.gz"
SIM_DAYS = ("2024-01-02", "2024-01-03")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """nasdaq AAPL and AMZN (one day), Binance USD-M (one day), and two simulated days of sim/SIM."""
    out = tmp_path_factory.mktemp("events") / "ds"
    ingest("lobster", AAPL, out, progress=False)
    ingest("lobster", [AMZN_ZIP], out, progress=False)
    ingest("binance", [USDM], out, progress=False)
    add_simulated_days(out, SIM_DAYS, duration=900.0)
    return out


def test_list_shards_keys_and_pruning(dataset):
    keys = [s.key for s in list_shards(dataset)]
    assert keys == [("binance-usdm", "BTCUSDT", "2024-08-08"), ("nasdaq", "AAPL", "2012-06-21"),
                    ("nasdaq", "AMZN", "2012-06-21"), ("sim", "SIM", "2024-01-02"), ("sim", "SIM", "2024-01-03")]
    assert [s.symbol for s in list_shards(dataset, venue="nasdaq")] == ["AAPL", "AMZN"]
    assert [s.key for s in list_shards(dataset, symbol=["AMZN", "SIM"], date=lambda d: d > "2024-01-02")] == [
        ("sim", "SIM", "2024-01-03")]
    shard = list_shards(dataset, symbol="AAPL")[0]
    assert shard.name == "venue=nasdaq/symbol=AAPL/date=2012-06-21" and shard.nbytes > 0
    assert all(Path(f).is_file() for f in shard.files)
    assert [s.key for s in list_shards(f"file://{dataset}")] == keys  # URIs go through pyarrow.fs
    with pytest.raises(DataError, match="no such dataset directory"):
        list_shards(dataset / "missing")
    with pytest.raises(DataError, match="no venue=/symbol=/date= Parquet partitions"):
        list_shards(dataset / "_mmray")
    with pytest.raises(TypeError, match="venue must be a string"):
        list_shards(dataset, venue=3)  # type: ignore[arg-type]


def test_assign_shards_and_in_flight_bound(dataset):
    shards = list_shards(dataset)
    parts = assign_shards(shards, 2)
    assert sorted(s.key for p in parts for s in p) == sorted(s.key for s in shards)
    assert parts == assign_shards(list(reversed(shards)), 2)  # deterministic
    loads = [sum(s.nbytes for s in p) for p in parts]
    assert max(loads) - min(loads) <= max(s.nbytes for s in shards)
    assert max_in_flight(2, 0.5) == 4 and max_in_flight(2, 0.5, reserve_cpus=1) == 2
    assert max_in_flight(2, 1.0, reserve_cpus=1) == 1 and max_in_flight(1, 1.0, reserve_cpus=1) == 1


def test_read_events_prunes_partitions_and_partition_columns_are_strings(ray_session, dataset):
    amzn = read_events(dataset, symbol="AMZN")
    assert amzn.count() == 300
    schema = amzn.schema()
    types = dict(zip(schema.names, schema.types, strict=True))
    assert all(types[k] == pa.string() for k in ("venue", "symbol", "date"))
    sims = read_events(f"file://{dataset}", venue="sim", date=["2024-01-03"], columns=["ts", "kind", "date"])
    rows = sims.take_all()
    assert rows and {r["date"] for r in rows} == {"2024-01-03"} and set(rows[0]) == {"ts", "kind", "date"}
    # a Ray Dataset is calibrated too (grouped by its date column here, in the driver)
    from_ray = calibrate(read_events(dataset, venue="sim"), use_ray=False).to_dict()
    from_path = calibrate(dataset, venue="sim", use_ray=False).to_dict()
    from_ray.pop("runs")
    from_path.pop("runs")
    assert from_ray == from_path


def test_shard_read_through_ray_data_equals_the_arrow_read(ray_session, dataset):
    shard = list_shards(dataset, symbol="AAPL")[0]
    cols = ["ts", "kind", "price", "bid_px", "ask_px"]
    arrow = pa.Table.from_batches(list(shard.batches(cols)))
    ray_ = pa.Table.from_batches(list(shard.batches(cols, engine="ray")))
    assert ray_.num_rows == arrow.num_rows == 300
    for c in cols:
        assert ray_[c].to_pylist() == arrow[c].to_pylist(), c
    full = shard.dataset().take(1)[0]
    assert (full["venue"], full["symbol"], full["date"]) == shard.key


def test_two_shards_run_on_two_workers_at_once_and_equal_the_single_process_run(ray_session, dataset):
    ray = ray_session
    shards = list_shards(dataset, venue="sim")
    settings = Settings(window=300.0)

    @ray.remote(num_cpus=0)
    class Barrier:
        def __init__(self) -> None:
            self.pids: set[int] = set()

        def arrive(self, pid: int) -> int:
            self.pids.add(pid)
            return len(self.pids)

    barrier = Barrier.remote()

    def consumer(shard, settings):  # a closure: Ray pickles it by value
        import os as os_
        import time as time_

        import ray as ray_

        ray_.get(barrier.arrive.remote(os_.getpid()))
        deadline = time_.monotonic() + 120
        while ray_.get(barrier.arrive.remote(os_.getpid())) < 2:  # both consumers alive at once
            if time_.monotonic() > deadline:
                raise TimeoutError("the second shard's consumer never started")
            time_.sleep(0.05)
        return calibrate_shard(shard, settings), ray_.get_runtime_context().get_worker_id()

    started = time.monotonic()
    remote = map_shards(consumer, shards, num_cpus=0.5, settings=settings)
    assert time.monotonic() - started < 120
    local = map_shards(calibrate_shard, shards, use_ray=False, settings=settings)
    pids = {r.run["pid"] for r, _ in remote}
    workers = {w for _, w in remote}
    assert len(pids) == 2 and len(workers) == 2 and os.getpid() not in pids
    for (r, _), loc in zip(remote, local, strict=True):  # to_dict: NaN (an empty window's σ) equals NaN
        assert r.day.to_dict() == loc.day.to_dict()
        assert [w.to_dict() for w in r.windows] == [w.to_dict() for w in loc.windows]
        assert (r.stats.z == loc.stats.z).all() and (r.stats.reach == loc.stats.reach).all()

    # the public entry point: per-shard Ray tasks vs one process, same numbers
    on_ray = calibrate(dataset, "5min", venue="sim")
    in_process = calibrate(dataset, "5min", venue="sim", use_ray=False)
    a, b = on_ray.to_dict(), in_process.to_dict()
    assert len(a.pop("runs")) == 2 and len(b.pop("runs")) == 2 and a == b
    assert all(r["pid"] != os.getpid() and r["worker_id"] for r in on_ray.runs)
    assert len(on_ray.days) == 2 and len(on_ray.windows) == 6


def test_consumers_reading_through_ray_data_finish_and_agree(ray_session, dataset):
    """Consumers at 0.5 CPU that start Ray Data reads themselves: one CPU kept free, no deadlock."""
    via_data = calibrate(dataset, venue="sim", engine="ray").to_dict()
    local = calibrate(dataset, venue="sim", use_ray=False).to_dict()
    assert len(via_data.pop("runs")) == len(local.pop("runs")) == 2 and via_data == local

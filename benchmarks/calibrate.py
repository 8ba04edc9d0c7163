"""Seconds to calibrate one LOBSTER day and one Binance capture (issue 8 goal: < 10 s each, 2 CPUs).

How to run::

    python benchmarks/calibrate.py                 # the samples in ../shared/data (or --data DIR)
    python benchmarks/calibrate.py --repeat 5

The samples are ingested into a temporary dataset first (not timed). Then each calibration
(σ, A, k with intervals, the day and 30-minute windows, the intensity table) is timed
``--repeat`` times: in this process (``use_ray=False``: reading the shard with pyarrow
included); through Ray (one 0.5-CPU task per day shard, Ray already started; ``ray.init`` is
timed on its own); and through Ray with each task reading its shard through Ray Data
(``engine="ray"``: a Ray Data read inside each task). Best and median are printed: on a shared
machine the best is the least disturbed run; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from mmray.data.calibrate import calibrate
from mmray.data.ingest import ingest

CASES = (  # label, venue, symbol
    ("LOBSTER AAPL 2012-06-21 level 1 (118,497 events)", "nasdaq", "AAPL"),
    ("LOBSTER AMZN 2012-06-21 level 5 (155,935 events)", "nasdaq", "AMZN"),
    ("Binance USD-M BTCUSDT capture 2024-07-18/19 (2 day shards)", "binance-usdm", "BTCUSDT"),
)


def _build(data: Path, out: Path) -> None:
    lob = data / "lobster"
    ingest("lobster", [lob / "AAPL_2012-06-21_34200000_57600000_message_1.csv",
                       lob / "AAPL_2012-06-21_34200000_57600000_orderbook_1.csv"], out, progress=False)
    ingest("lobster", [lob / "AMZN_2012-06-21_34200000_57600000_message_5.csv",
                       lob / "AMZN_2012-06-21_34200000_57600000_orderbook_5.csv"], out, progress=False)
    ws = data / "binance" / "ws" / "usdm"
    ingest("binance", [ws / "btcusdt_20240718.gz", ws / "btcusdt_20240719.gz"], out, progress=False)


def _time(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    with tempfile.TemporaryDirectory() as tmp:
        ds = Path(tmp) / "events"
        _build(args.data, ds)
        import ray

        print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        print(f"ray.init (2 CPUs): {time.perf_counter() - t:.2f} s")
        calibrate(ds, venue="nasdaq", symbol="AAPL")  # start the workers once
        for label, venue, symbol in CASES:
            for mode, use_ray, engine in (("in process", False, "arrow"), ("Ray tasks", True, "arrow"),
                                          ("Ray tasks reading through Ray Data", True, "ray")):
                times = _time(lambda v=venue, s=symbol, r=use_ray, e=engine: calibrate(
                    ds, "30min", venue=v, symbol=s, use_ray=r, engine=e), args.repeat)
                print(f"{label}, {mode}: best {min(times):.2f} s, median {statistics.median(times):.2f} s")
        cal = calibrate(ds, "30min", venue="nasdaq", symbol="AAPL")
        print("AAPL:", {k: round(v, 4) for k, v in cal.params().items()}, "runs:",
              [(r["shard"], r["pid"], round(r["seconds"], 2)) for r in cal.runs])
        ray.shutdown()
        print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()

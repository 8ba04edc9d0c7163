"""Ingest throughput (rows/s) of the mmray.data loaders, next to pandas.read_csv of the same files.

How to run::

    python benchmarks/ingest.py                 # the samples in ../shared/data (or --data DIR)
    python benchmarks/ingest.py --scale 10      # also peak memory on a LOBSTER file 10x the sample

Figures printed: for each LOBSTER sample, rows/s of ``read_lobster`` (parse, validate, build
event batches) and of ``ingest`` (the same plus Parquet writing), and of ``pandas.read_csv``
of the message and orderbook files (parse only) in the same run; for the Binance USD-M capture,
rows/s and input lines/s of ``read_capture`` (JSON, book rebuild, bookTicker check). With
``--scale N``, peak RSS of a child process ingesting the AAPL sample and an N-times longer
synthetic copy (times compressed so they keep increasing): the two should be close. hftbacktest's
converter is not run here (it is not a dependency). Compare figures from the same run only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from mmray.data.binance import CaptureStats, read_capture
from mmray.data.ingest import ingest
from mmray.data.lobster import read_lobster

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LOBSTER = ("AAPL_2012-06-21_34200000_57600000_{}_1.csv", "AMZN_2012-06-21_34200000_57600000_{}_5.csv")


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def lobster(data: Path, repeat: int) -> None:
    for name in LOBSTER:
        msg, book = data / "lobster" / name.format("message"), data / "lobster" / name.format("orderbook")
        rows = sum(1 for _ in open(msg, "rb"))
        t_load = best_of(lambda m=msg: sum(b.num_rows for b in read_lobster(m)), repeat)
        with tempfile.TemporaryDirectory() as tmp:
            t_ingest = best_of(lambda m=msg, b=book, d=tmp: ingest(
                "lobster", [m, b], Path(d) / f"ds{time.perf_counter_ns()}", progress=False), repeat)
        t_pandas = best_of(lambda m=msg, b=book: (pd.read_csv(m, header=None), pd.read_csv(b, header=None)), repeat)
        print(f"LOBSTER {name.format('*')}: {rows:,} rows | read_lobster {rows / t_load / 1e6:.2f} M rows/s | "
              f"ingest to Parquet {rows / t_ingest / 1e6:.2f} M rows/s | pandas.read_csv (msg+book) "
              f"{rows / t_pandas / 1e6:.2f} M rows/s | read_lobster/pandas {t_pandas / t_load:.2f}x")


def binance(data: Path, repeat: int) -> None:
    files = [data / "binance" / "ws" / "usdm" / f for f in ("btcusdt_20240718.gz", "btcusdt_20240719.gz")]
    stats = CaptureStats()
    rows = sum(b.num_rows for b in read_capture(files, stats=stats))
    t = best_of(lambda: sum(b.num_rows for b in read_capture(files)), repeat)
    print(f"Binance USD-M capture 2024-07-18/19: {stats.lines:,} lines -> {rows:,} rows | "
          f"{stats.lines / t / 1e6:.3f} M lines/s, {rows / t / 1e6:.3f} M rows/s | "
          f"bookTicker compared {stats.ticker_compared}, mismatches {stats.ticker_mismatches}")


def synthetic_lobster(data: Path, scale: int, tmp: Path) -> Path:
    """The AAPL sample repeated `scale` times, times squeezed into the same 09:30-16:00 window."""
    name = LOBSTER[0]
    msgs = (data / "lobster" / name.format("message")).read_text().splitlines()
    books = (data / "lobster" / name.format("orderbook")).read_text().splitlines()
    start, span = 34200.0, 23400.0
    with open(tmp / name.format("message"), "w") as fm, open(tmp / name.format("orderbook"), "w") as fb:
        for k in range(scale):
            for m in msgs:
                t, rest = m.split(",", 1)
                fm.write(f"{start + (k * span + float(t) - start) / scale:.9f},{rest}\n")
            fb.write("\n".join(books) + "\n")
    return tmp / name.format("message")


def peak_rss(data: Path, scale: int) -> None:
    for n in (1, scale):
        with tempfile.TemporaryDirectory() as tmp:
            msg = synthetic_lobster(data, n, Path(tmp))
            code = ("import resource,sys; from mmray.data.ingest import ingest; "
                    "r = ingest('lobster', [sys.argv[1], sys.argv[1].replace('_message_', '_orderbook_')], "
                    "sys.argv[2], progress=False); "
                    "print(r['rows'], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
            out = subprocess.run([sys.executable, "-c", code, str(msg), os.path.join(tmp, "ds")],
                                 capture_output=True, text=True, check=True).stdout.split()
            rows, rss_kb = int(out[0]), int(out[1])
            print(f"peak RSS ingesting {rows:,} LOBSTER rows ({n}x the AAPL sample): {rss_kb / 1024:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the sample data directory")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    ap.add_argument("--scale", type=int, default=0, help="also measure peak memory at this many times the sample")
    args = ap.parse_args()
    print(f"pyarrow {pa.__version__}, pandas {pd.__version__}, {os.cpu_count()} CPUs")
    lobster(args.data, args.repeat)
    binance(args.data, max(1, args.repeat - 2))
    if args.scale:
        peak_rss(args.data, args.scale)


if __name__ == "__main__":
    main()

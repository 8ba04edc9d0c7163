"""Ingest throughput (rows/s) of the mmray.data loaders, as ratios against baselines run alongside.

How to run::

    python benchmarks/ingest.py                 # the samples in ../shared/data (or --data DIR)
    python benchmarks/ingest.py --scales        # skip the peak-memory part
    python benchmarks/ingest.py --only memory --scales 10 20 50
    pip install -e .[bench]                     # hftbacktest 2.4.4, the Binance baseline

Each measurement alternates the mmray side and its baseline for ``--repeat`` rounds and keeps each
side's best time (the run least disturbed by other processes), so on a shared, noisy machine both
sides get the same chances; ratios are of those best times, in wall time and in CPU time (all
threads). On a busy machine, run it two or three times and quote the median. Figures:

* LOBSTER samples (AAPL level 1, AMZN level 5): rows/s of ``read_lobster`` (parse, validate,
  build event batches) and of ``ingest`` (the same plus Parquet writing), each next to
  ``pandas.read_csv`` of the message and the orderbook file (parse only), and the CPU time of
  each side and of the Parquet writing alone (the loaded batches through ingest's writer);
* the Binance USD-M capture 2024-07-18/19: input lines/s and rows/s of ``read_capture`` (JSON,
  book rebuild, bookTicker check) and of ``ingest``, next to hftbacktest 2.4.4's own converter
  (``hftbacktest.data.utils.binancefutures.convert``) on the same files; both read every input
  line, so the ratio is one of times (the converter keeps no bookTicker rows and checks no
  sequence, mmray keeps both);
* with ``--scales N ...`` (default 10 50): peak RSS of a child process ingesting the AAPL sample
  and N-times longer synthetic copies (times compressed so they keep increasing), measured from
  the child's RSS after its imports and a warm-up ingest of the sample's first 2,000 rows, which
  loads the compiled kernels (numba's cache, about 50 MB, once per process whatever the size;
  Linux: the peak is then reset through ``/proc/self/clear_refs``); each size with Arrow's
  allocator as installed and with ``ARROW_DEFAULT_MEMORY_POOL=jemalloc``, and the peak of the
  memory Arrow itself allocated.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa

from mmray.data import ingest as _ingest
from mmray.data.binance import CaptureStats, read_capture
from mmray.data.ingest import ingest
from mmray.data.lobster import read_lobster

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LOBSTER = ("AAPL_2012-06-21_34200000_57600000_{}_1.csv", "AMZN_2012-06-21_34200000_57600000_{}_5.csv")
CAPTURE = ("btcusdt_20240718.gz", "btcusdt_20240719.gz")


def _elapsed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def paired(sides: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best wall seconds of each side (and as ``"<side> cpu"`` its best CPU seconds, all threads),
    the sides run in turn in every round (after one warm-up)."""
    for fn in sides.values():
        fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for _ in range(repeat):
        for name, fn in sides.items():
            times[name].append(_elapsed(fn))
    best = {name: min(t[0] for t in ts) for name, ts in times.items()}
    best.update({f"{name} cpu": min(t[1] for t in ts) for name, ts in times.items()})
    return best


def ratio(t: dict[str, float], base: str, side: str) -> str:
    """`side`'s speed relative to `base`'s: wall, and CPU seconds (the latter less sensitive to
    other load on a shared machine; it counts every thread, so parallelism does not help it)."""
    return f"{t[base] / t[side]:.2f}x (CPU time {t[base + ' cpu'] / t[side + ' cpu']:.2f}x)"


def _ingest_fn(source: str, files: list[Path], tmp: str, **kw: object) -> Callable[[], object]:
    return lambda: ingest(source, files, Path(tmp) / f"ds{time.perf_counter_ns()}", progress=False, **kw)


def _write_fn(batches: list[pa.RecordBatch], source: str, files: list[Path], tmp: str) -> Callable[[], object]:
    """Parquet writing alone: already-read batches through ingest's partitioning and writer (its
    default row groups and compression)."""
    group = _ingest.auto_rows_per_group(source, [str(f) for f in files])

    def write() -> None:
        root = Path(tmp) / f"w{time.perf_counter_ns()}"
        writer = _ingest._Writer(root, group, _ingest.writer_options(source))
        for key, batch in _ingest._partitions(batches, root, Counter()):
            writer.write(key, batch)
        writer.close()
    return write


def _parquet_mb(root: Path) -> float:
    return sum(f.stat().st_size for f in root.rglob("*.parquet")) / 1e6


def lobster(data: Path, repeat: int) -> None:
    for name in LOBSTER:
        msg, book = data / "lobster" / name.format("message"), data / "lobster" / name.format("orderbook")
        rows = sum(1 for _ in open(msg, "rb"))
        with tempfile.TemporaryDirectory() as tmp:
            t = paired({"read": lambda m=msg: sum(b.num_rows for b in read_lobster(m)),
                        "write": _write_fn(list(read_lobster(msg)), "lobster", [msg, book], tmp),
                        "ingest": _ingest_fn("lobster", [msg, book], tmp),
                        "ingest none": _ingest_fn("lobster", [msg, book], tmp, compression="none"),
                        "pandas": lambda m=msg, b=book: (pd.read_csv(m, header=None), pd.read_csv(b, header=None))},
                       repeat)
            mb = {}
            for c in ("snappy", "none"):
                ingest("lobster", [msg, book], Path(tmp) / c, progress=False, compression=c)
                mb[c] = _parquet_mb(Path(tmp) / c)
        ms = {k: f"{t[k + ' cpu'] * 1e3:.0f}" for k in ("pandas", "read", "write", "ingest", "ingest none")}
        print(f"LOBSTER {name.format('*')}: {rows:,} rows\n"
              f"  read_lobster {rows / t['read'] / 1e6:.2f} M rows/s | ingest to Parquet "
              f"{rows / t['ingest'] / 1e6:.2f} M rows/s ({mb['snappy']:.2f} MB; compression='none' "
              f"{rows / t['ingest none'] / 1e6:.2f} M rows/s, {mb['none']:.2f} MB) | pandas.read_csv (msg+book) "
              f"{rows / t['pandas'] / 1e6:.2f} M rows/s\n"
              f"  read/pandas {ratio(t, 'pandas', 'read')} | ingest/pandas {ratio(t, 'pandas', 'ingest')} | "
              f"with compression='none' {ratio(t, 'pandas', 'ingest none')}\n"
              f"  CPU ms: pandas {ms['pandas']}, read_lobster {ms['read']}, Parquet writing alone {ms['write']}, "
              f"ingest {ms['ingest']} (uncompressed {ms['ingest none']})")


def _converter() -> Callable[[list[Path]], int] | None:
    try:
        from hftbacktest.data.utils import binancefutures
    except ImportError:
        return None

    def convert(files: list[Path]) -> int:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its timestamp corrections
            return sum(len(binancefutures.convert(str(f), buffer_size=2_000_000)) for f in files)
    return convert


def binance(data: Path, repeat: int) -> None:
    files = [data / "binance" / "ws" / "usdm" / f for f in CAPTURE]
    stats = CaptureStats()
    rows = sum(b.num_rows for b in read_capture(files, stats=stats))
    lines = stats.lines
    sides: dict[str, Callable[[], object]] = {"read": lambda: sum(b.num_rows for b in read_capture(files))}
    convert = _converter()
    with tempfile.TemporaryDirectory() as tmp:
        sides["ingest"] = _ingest_fn("binance", files, tmp)
        if convert is not None:
            conv_rows = convert(files)
            sides["converter"] = lambda: convert(files)
        t = paired(sides, repeat)
    print(f"Binance USD-M capture 2024-07-18/19: {lines:,} lines -> {rows:,} rows "
          f"(bookTicker compared {stats.ticker_compared}, mismatches {stats.ticker_mismatches})\n"
          f"  read_capture {lines / t['read'] / 1e6:.3f} M lines/s = {rows / t['read'] / 1e6:.3f} M rows/s | "
          f"ingest to Parquet {lines / t['ingest'] / 1e6:.3f} M lines/s = {rows / t['ingest'] / 1e6:.3f} M rows/s")
    if convert is None:
        print("  hftbacktest not installed (pip install -e .[bench]): no converter baseline")
        return
    print(f"  hftbacktest 2.4.4 convert {lines / t['converter'] / 1e6:.3f} M lines/s = "
          f"{conv_rows / t['converter'] / 1e6:.3f} M rows/s ({conv_rows:,} rows: depth and trades only)\n"
          f"  read/converter {ratio(t, 'converter', 'read')} | ingest/converter {ratio(t, 'converter', 'ingest')}"
          " (same input lines)")


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


_CHILD = """import sys
from mmray.data.ingest import ingest

def status(field):
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ':'))

def pair(msg):
    return [msg, msg.replace('_message_', '_orderbook_')]

msg, warm, out = sys.argv[1:4]
imports = status('VmRSS')
ingest('lobster', pair(warm), out + '-warm', progress=False)  # loads the compiled kernels
base = status('VmRSS')
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # reset the peak (VmHWM) to the current RSS: what follows is the ingest's own
r = ingest('lobster', pair(msg), out, progress=False)
import pyarrow as pa
arrow = max(pa.default_memory_pool().max_memory(), pa.jemalloc_memory_pool().max_memory())
print(r['rows'], imports, base, status('VmHWM'), arrow // 1024)
"""


def _head(data: Path, rows: int, tmp: Path) -> Path:
    """The AAPL sample's first `rows` rows as a pair of files in `tmp`."""
    name = LOBSTER[0]
    for what in ("message", "orderbook"):
        with open(data / "lobster" / name.format(what), "rb") as f:
            (tmp / name.format(what)).write_bytes(b"".join(line for _, line in zip(range(rows), f, strict=False)))
    return tmp / name.format("message")


_POOLS = {"as installed": {}, "ARROW_DEFAULT_MEMORY_POOL=jemalloc": {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}}


def peak_rss(data: Path, scales: list[int]) -> None:
    """Peak RSS of an ingest in a child process, at 1x and `scales` times the AAPL sample; each
    size twice: Arrow's allocator as installed (ingest hands pyarrow jemalloc while it runs, the
    C++ default stays mimalloc) and with jemalloc as Arrow's default from the start."""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    with tempfile.TemporaryDirectory() as warm_dir:
        warm = _head(data, 2000, Path(warm_dir))
        for n in (1, *scales):
            with tempfile.TemporaryDirectory() as tmp:
                msg = synthetic_lobster(data, n, Path(tmp))
                size = (msg.stat().st_size + Path(str(msg).replace("_message_", "_orderbook_")).stat().st_size) / 2**20
                for i, (pool, extra) in enumerate(_POOLS.items()):
                    out = subprocess.run([sys.executable, "-c", _CHILD, str(msg), str(warm),
                                          os.path.join(tmp, f"ds{i}")], capture_output=True, text=True, check=True,
                                         env={**env, **extra}).stdout.split()
                    rows, imports_kb, base_kb, peak_kb, arrow_kb = (int(x) for x in out)
                    print(f"peak RSS ingesting {rows:,} LOBSTER rows ({n}x the AAPL sample, {size:.0f} MB of CSV), "
                          f"Arrow pool {pool}: {(peak_kb - base_kb) / 1024:.0f} MB above the {base_kb / 1024:.0f} MB "
                          f"before it ({imports_kb / 1024:.0f} MB after imports, + the compiled kernels' load); "
                          f"Arrow's own peak allocation {arrow_kb / 1024:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the sample data directory")
    ap.add_argument("--repeat", type=int, default=7, help="rounds per measurement (best times are compared)")
    ap.add_argument("--scales", type=int, nargs="*", default=[10, 50],
                    help="peak memory at 1x and these many times the sample (none: skip)")
    ap.add_argument("--only", choices=("lobster", "binance", "memory"), help="run one part")
    args = ap.parse_args()
    print(f"pyarrow {pa.__version__}, pandas {pd.__version__}, {os.cpu_count()} CPUs")
    if args.only in (None, "lobster"):
        lobster(args.data, args.repeat)
    if args.only in (None, "binance"):
        binance(args.data, max(1, args.repeat // 2))
    if args.only in (None, "memory") and args.scales:
        peak_rss(args.data, args.scales)


if __name__ == "__main__":
    main()

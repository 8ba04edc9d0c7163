"""``mmray data ingest|info|calibrate``: real limit-order-book data into a Parquet dataset, its summary,
and the model's market parameters estimated from it.

::

    mmray data ingest --source lobster AAPL_..._message_1.csv AAPL_..._orderbook_1.csv --out data/lob
    mmray data ingest --source binance usdm/btcusdt_20240808.gz usdm/btcusdt_20240809.gz --out data/lob
    mmray data info data/lob [--json]
    mmray data calibrate data/lob --symbol AAPL [--window 30min] [--out params.json] [--plot calibration.png]
    mmray data info s3://bucket/lob --json      # S3 or an S3-compatible store (AWS_ENDPOINT_URL), docs/data.md

The dataset is partitioned by venue/symbol/date (:mod:`mmray.data.ingest`); an ingest is all or
nothing (a failed one leaves no partial dataset and an existing one untouched); a day already in
the dataset is refused. Bad input is one line naming the file, the 1-based line and what was
expected, exit status 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mmray.cli.common import fail, log, ray_session_scope
from mmray.io import to_jsonable

NAME = "data"
DESCRIPTION = "Real limit-order-book data: ingest venue files into a Parquet dataset, summarise a dataset."
# the choices of mmray.data.ingest (SOURCES, COMPRESSIONS) and mmray.data.binance, spelt here so that
# building the parser does not load pyarrow (run_ingest picks its memory pool first); a test compares them
SOURCES = ("lobster", "binance", "binance-vision")
MARKETS = ("spot", "usdm", "cm")
COMPRESSIONS = ("snappy", "zstd", "none")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``mmray data`` and its sub-commands on the sub-command action ``sub``."""
    from mmray.cli.common import Parser

    p = sub.add_parser(NAME, help="ingest and summarise limit-order-book data", description=DESCRIPTION)
    actions = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", title="sub-commands",
                               parser_class=Parser)
    ing = actions.add_parser(
        "ingest", help="read venue files into a Parquet dataset",
        description="Read LOBSTER message/orderbook files (CSV or zip), one Binance WebSocket capture "
                    "(its files oldest first) or data.binance.vision CSVs into a Parquet dataset partitioned by "
                    "venue/symbol/date, streaming in bounded memory. All or nothing; new days append; a day "
                    "already in the dataset is refused.")
    ing.add_argument("--source", choices=SOURCES, required=True, help="the venue format of FILES (required)")
    ing.add_argument("files", nargs="+", metavar="FILE", help="input files (plain, .gz or .zip)")
    ing.add_argument("--out", type=Path, required=True, metavar="DATASET",
                     help="dataset directory: created, or appended to with new days (required)")
    ing.add_argument("--market", choices=MARKETS, default=None,
                     help="Binance market of a capture (default: inferred from the file names)")
    ing.add_argument("--skip-gaps", action="store_true",
                     help="Binance captures: record sequence gaps and go on instead of failing (default: fail)")
    ing.add_argument("--compression", choices=COMPRESSIONS, default="snappy",
                     help="Parquet compression (default snappy): zstd for smaller files (archives, object stores), "
                          "none for the fastest writing and the largest files (docs/data.md, \"Files\")")
    ing.add_argument("--json", action="store_true", help="print one JSON object with what was written")
    ing.set_defaults(run=run_ingest)
    inf = actions.add_parser("info", help="summarise a dataset",
                             description="Venues, symbols, days, rows by kind, time span, inferred tick, "
                                         "halts, sequence gaps and the bookTicker consistency check of a dataset.")
    inf.add_argument("dataset", metavar="DATASET",
                     help="dataset directory or URI (s3://BUCKET/PREFIX: docs/data.md) written by `mmray data ingest`")
    inf.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    inf.set_defaults(run=run_info)
    cal = actions.add_parser(
        "calibrate", help="estimate sigma, A and k (with intervals) from a dataset",
        description="Estimate the mid volatility sigma (price per sqrt(second), realised variance with a noise "
                    "correction) and the fill intensity A exp(-k delta) (A per second, k per price unit; from how "
                    "far market orders reach from the mid) by maximum likelihood with confidence intervals and a "
                    "goodness-of-fit test, per day, on rolling windows and pooled. Each day is one Ray task "
                    "(--local: in this process). See docs/data.md for the estimators and their pitfalls.")
    cal.add_argument("dataset", metavar="DATASET", help="dataset directory or URI written by `mmray data ingest`")
    cal.add_argument("--venue", help="venue partition to use (default: the only one)")
    cal.add_argument("--symbol", help="symbol partition to use (default: the only one)")
    cal.add_argument("--date", help="one day YYYY-MM-DD (default: every day)")
    cal.add_argument("--window", help="rolling windows, e.g. 30min or 600 (seconds) (default: none)")
    cal.add_argument("--interval", type=float, default=1.0,
                     help="sampling interval of the mid for sigma, seconds (default: %(default)s)")
    cal.add_argument("--level", type=float, default=0.95,
                     help="confidence level of the intervals (default: %(default)s)")
    cal.add_argument("--out", type=Path, metavar="FILE",
                     help="write the estimates as a parameter file that solve/backtest/simulate read with --params "
                          "FILE (default: none)")
    cal.add_argument("--plot", type=Path, metavar="PNG",
                     help="write the figure: fitted vs empirical intensity, sigma over the day (default: none)")
    cal.add_argument("--local", action="store_true", help="calibrate in this process, without Ray")
    cal.add_argument("--json", action="store_true", help="print one JSON object with every estimate")
    cal.set_defaults(run=run_calibrate)
    p.set_defaults(run=lambda args: _usage(p))
    return p


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _emit(args: argparse.Namespace, out: dict[str, Any], lines: list[str]) -> int:
    if args.json:
        print(json.dumps(to_jsonable(out), allow_nan=False))
    for line in lines:
        log(args, line)
    return 0


def run_ingest(args: argparse.Namespace) -> int:
    """Run ``mmray data ingest``; returns the exit status.

    Arrow's C++ default memory pool is chosen when pyarrow loads: unless ``ARROW_DEFAULT_MEMORY_POOL`` is
    set (or pyarrow is already loaded, when called in-process), the command makes it jemalloc, so that the
    peak memory of an ingest does not grow with the file (docs/data.md, "Memory")."""
    import os
    import sys

    if "pyarrow" not in sys.modules:
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
    import pyarrow as pa

    from mmray.data.ingest import ingest

    args.command = "data ingest"
    try:
        out = ingest(args.source, args.files, args.out, market=args.market, skip_gaps=args.skip_gaps,
                     compression=args.compression)
    except (ValueError, OSError) as exc:  # DataError names file and line
        fail(args, exc)
    out["arrow_memory_pool"] = pa.default_memory_pool().backend_name
    lines = [f"ingested {out['rows']:,} rows from {len(out['files'])} file(s) into {args.out}"]
    lines += [f"  {part}: {rows:,} rows" for part, rows in sorted(out["partitions"].items())]
    capture = out.get("capture") or {}
    if capture.get("gaps"):
        lines.append(f"  sequence gaps skipped: {len(capture['gaps'])} (see `mmray data info {args.out}`)")
    return _emit(args, out, lines)


def run_info(args: argparse.Namespace) -> int:
    """Run ``mmray data info``; returns the exit status."""
    from mmray.data.ingest import info

    args.command = "data info"
    try:
        out = info(args.dataset)
    except (ValueError, OSError) as exc:
        fail(args, exc)
    lines = [f"dataset {out['path']}: {out['rows']:,} rows, {out['span']['start']} .. {out['span']['end']}"]
    for day in out["days"]:
        tick = out["tick"].get(f"{day['venue']}/{day['symbol']}")
        lines.append(f"  {day['venue']}/{day['symbol']}/{day['date']}: {day['rows']:,} rows"
                     + (f", tick {tick:g}" if tick else ""))
    lines.append("rows by kind: " + ", ".join(f"{k} {v:,}" for k, v in sorted(out["rows_by_kind"].items())))
    lines.append(f"halts: {len(out['halts'])}; sequence gaps: {len(out['gaps'])}")
    c = out["consistency"]
    lines.append(f"bookTicker vs rebuilt book: {c['ticker_compared']:,} compared, {c['ticker_mismatches']:,} "
                 "mismatches")
    return _emit(args, out, [] if args.json else lines)


def run_calibrate(args: argparse.Namespace) -> int:
    """Run ``mmray data calibrate``; returns the exit status."""
    from mmray.data.calibrate import calibrate, write_params_file
    from mmray.io import check_writable_dir

    args.command = "data calibrate"
    try:
        for target in (args.out, args.plot):  # checked before any work
            if target is not None:
                check_writable_dir(target.parent if str(target.parent) else Path("."))
        with ray_session_scope():
            cal = calibrate(args.dataset, args.window, venue=args.venue, symbol=args.symbol, date=args.date,
                            interval=args.interval, level=args.level, use_ray=not args.local)
        if args.plot is not None:
            from mmray.data.plots import plot_calibration

            plot_calibration(cal, args.plot)
        if args.out is not None:
            write_params_file(cal, args.out)
    except (ValueError, OSError) as exc:
        fail(args, exc)
    out = cal.to_dict()
    pct = f"{100 * args.level:g}%"
    def ci(name: str) -> str:
        lo, hi = out[f"{name}_ci"]
        return f"{pct} CI [{lo:.4g}, {hi:.4g}]"

    lines = [f"{out['venue']}/{out['symbol']}: {len(out['days'])} day(s), {out['seconds']:.0f} s of data",
             f"  sigma = {out['sigma']:.4g} price/sqrt(s)  {ci('sigma')}",
             f"  A     = {out['A']:.4g} fills/s         {ci('A')}",
             f"  k     = {out['k']:.4g} per price unit  {ci('k')}"
             + (f"  ({out['k_per_tick']:.3g} per tick of {out['tick']:g})" if out.get("k_per_tick") is not None
                and out.get("tick") is not None else "  (no tick: continuous prices)")]
    gof = out.get("gof") or {}
    if gof.get("pvalue") is not None:
        lines.append(f"  exponential fit over reach {out['fit_range']} (price): G2 = {gof['statistic']:.4g} on "
                     f"{gof['df']} df, p = {gof['pvalue']:.3g}")
    if out.get("note"):
        lines.append(f"  note: {out['note']}")
    if args.out is not None:
        lines.append(f"wrote {args.out} (use it with --params {args.out})")
    if args.plot is not None:
        lines.append(f"wrote {args.plot}")
    return _emit(args, out, [] if args.json else lines)

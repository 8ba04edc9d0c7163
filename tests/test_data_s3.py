"""Event datasets on S3: the same rows, shards, summary and calibration as the local copy.

A real S3 endpoint: moto's server (``moto.server.ThreadedMotoServer``) on 127.0.0.1 and a free
port, spoken to over HTTP by pyarrow's ``S3FileSystem`` (as mmray builds it from
``AWS_ENDPOINT_URL``, ``AWS_REGION`` and the ``AWS_*`` credentials) and by Ray Data's
``read_parquet``; nothing is mocked inside pyarrow or Ray. One server, one bucket and one
dataset per module: ingested locally from the sample files, then copied to
``s3://mmray-test/lob`` with ``pyarrow.fs.copy_files``. The Ray session starts after the
environment is set, so its workers find the endpoint and credentials the way a cluster's do.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pytest

pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (pip install -e '.[test]')")

from lob_datasets import add_simulated_days
from moto.server import ThreadedMotoServer

from mmray.cli import main
from mmray.data.calibrate import calibrate
from mmray.data.datasets import assign_shards, list_shards, read_events, resolve
from mmray.data.errors import DataError
from mmray.data.ingest import ingest

pytestmark = pytest.mark.ray

FIX = Path(__file__).parent / "fixtures" / "data"
AAPL = [FIX / "lobster" / f"AAPL_2012-06-21_34200000_57600000_{k}_1.csv" for k in ("message", "orderbook")]
USDM = FIX / "binance" / "usdm_btcusdt_20240808_head.gz"
SIM_DAYS = ("2024-01-02", "2024-01-03")
BUCKET = "mmray-test"
URI = f"s3://{BUCKET}/lob"
SERVER: list[ThreadedMotoServer] = []  # the module's server, while it runs


class _Requests(logging.Handler):
    """The HTTP requests moto's server answered (its werkzeug log lines), from every process."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def partitions_read(self, since: int) -> set[str]:
        """``venue=…/symbol=…/date=…`` of every Parquet object fetched (GET/HEAD) after line `since`."""
        found = re.findall(r'"(?:GET|HEAD) (/[^ ?]+\.parquet)[ ?]', "\n".join(self.lines[since:]))
        return {"/".join(unquote(p).split("/")[-4:-1]) for p in found}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on 127.0.0.1 and the environment that points mmray (and Ray's workers) at
    it; yields the endpoint URL. Short timeouts and 2 attempts, so a failure is quick."""
    requests = _Requests()
    log = logging.getLogger("werkzeug")  # one line per request: recorded here, not printed
    log.setLevel(logging.INFO)
    log.addHandler(requests)
    log.propagate = False
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    server.requests = requests  # type: ignore[attr-defined]
    SERVER.append(server)
    mp = pytest.MonkeyPatch()
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        mp.delenv(name, raising=False)
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_ENDPOINT_URL", endpoint)
    mp.setenv("AWS_REGION", "us-east-1")
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    mp.setenv("MMRAY_S3_CONNECT_TIMEOUT", "2")
    mp.setenv("MMRAY_S3_REQUEST_TIMEOUT", "10")
    mp.setenv("MMRAY_S3_RETRIES", "2")
    try:
        yield endpoint
    finally:
        mp.undo()
        server.stop()
        log.removeHandler(requests)
        log.propagate = True
        SERVER.remove(server)


@pytest.fixture(scope="module")
def ray_session(s3):
    """This module's Ray session (2 CPUs, no dashboard), started once the S3 environment is set."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Path:
    """nasdaq AAPL (one day), Binance USD-M (one day) and two simulated days of sim/SIM, on disk."""
    out = tmp_path_factory.mktemp("events") / "lob"
    ingest("lobster", AAPL, out, progress=False)
    ingest("binance", [USDM], out, progress=False)
    add_simulated_days(out, SIM_DAYS, duration=600.0)
    return out


@pytest.fixture(scope="module")
def remote(s3, local) -> str:
    """The local dataset copied, ``_mmray`` records included, to ``s3://mmray-test/lob``."""
    fs = pafs.S3FileSystem(endpoint_override=s3, region="us-east-1", allow_bucket_creation=True)
    fs.create_dir(BUCKET)
    pafs.copy_files(str(local), f"{BUCKET}/lob", source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)
    return URI


def _table(ds) -> pa.Table:  # type: ignore[no-untyped-def]
    """A Ray dataset's rows as one table."""
    blocks = list(ds.iter_batches(batch_format="pyarrow", batch_size=None))
    return pa.concat_tables(blocks, promote_options="default")


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in ("venue", "symbol", "date")])  # stable: file order kept


def _rel(path: str, root: str) -> str:
    return path[len(root):].lstrip("/")


def test_resolve_builds_pyarrow_s3_from_the_environment_and_the_uri(s3):
    fs, inner = resolve(URI + "/")
    assert isinstance(fs, pafs.S3FileSystem) and inner == f"{BUCKET}/lob" and fs.region == "us-east-1"
    fs, inner = resolve(f"s3://{BUCKET}/a%20b?region=eu-west-1&endpoint_override=127.0.0.1:1&scheme=http")
    assert fs.region == "eu-west-1" and inner == f"{BUCKET}/a b"
    with pytest.raises(DataError, match=r"s3://b/x\?foo=1: unknown option\(s\) foo"):
        resolve("s3://b/x?foo=1")
    with pytest.raises(DataError, match="expected s3://BUCKET/PREFIX"):
        resolve("s3://key:secret@b/x")
    mp = pytest.MonkeyPatch()
    mp.setenv("MMRAY_S3_RETRIES", "1.5")
    try:
        with pytest.raises(DataError, match=r"MMRAY_S3_RETRIES='1\.5' is not a positive integer"):
            resolve(URI)
    finally:
        mp.undo()


def test_shards_on_s3_are_the_local_shards(s3, remote, local):
    here, there = list_shards(local), list_shards(remote)
    assert [s.key for s in there] == [s.key for s in here] == [
        ("binance-usdm", "BTCUSDT", "2024-08-08"), ("nasdaq", "AAPL", "2012-06-21"),
        ("sim", "SIM", "2024-01-02"), ("sim", "SIM", "2024-01-03")]
    for a, b in zip(here, there, strict=True):
        assert b.root == remote and b.nbytes == a.nbytes > 0
        assert [_rel(f, f"{BUCKET}/lob") for f in b.files] == [_rel(f, str(local)) for f in a.files]
    assert [[s.key for s in g] for g in assign_shards(there, 3)] == [[s.key for s in g] for g in assign_shards(here, 3)]
    pruned = list_shards(remote, venue="sim", date=lambda d: d > "2024-01-02")
    assert [s.key for s in pruned] == [("sim", "SIM", "2024-01-03")]
    assert [s.key for s in list_shards(remote, symbol=["AAPL", "BTCUSDT"])] == [
        ("binance-usdm", "BTCUSDT", "2024-08-08"), ("nasdaq", "AAPL", "2012-06-21")]
    # a shard streams the same rows from S3 as from disk (pyarrow in this process)
    a = pa.Table.from_batches(list(here[1].batches()))
    b = pa.Table.from_batches(list(there[1].batches()))
    assert b.num_rows == a.num_rows > 0 and b.equals(a)
    # the URI may carry the endpoint itself (pyarrow's option names), which wins over the environment's
    host = s3.split("://", 1)[1]
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    try:
        assert [s.key for s in list_shards(f"{remote}?endpoint_override={host}&scheme=http")] == [s.key for s in here]
    finally:
        mp.undo()


def test_read_events_on_s3_gives_the_local_rows_and_prunes(ray_session, remote, local):
    everything = _sorted(_table(read_events(local)))
    for filters in ({}, {"venue": "sim", "date": "2024-01-03"}, {"symbol": ["AAPL", "BTCUSDT"]}):
        mark = len(SERVER[0].requests.lines)
        there = _sorted(_table(read_events(remote, **filters)))
        kept = {s.name for s in list_shards(local, **filters)}
        assert SERVER[0].requests.partitions_read(mark) == kept, filters  # other partitions' files never opened
        names = pa.array(["/".join(f"{k}={v}" for k, v in zip(("venue", "symbol", "date"), key, strict=True))
                          for key in zip(*(everything.column(c).to_pylist() for c in ("venue", "symbol", "date")),
                                         strict=True)])
        here = everything.filter(pc.is_in(names, pa.array(sorted(kept))))
        assert there.num_rows == here.num_rows > 0, filters
        assert there.select(here.column_names).equals(here), filters
    sim3 = _table(read_events(remote, venue="sim", date="2024-01-03", columns=["ts", "date"]))
    assert set(sim3.column("date").to_pylist()) == {"2024-01-03"} and sim3.column_names == ["ts", "date"]


def _json(argv: list[str], capsys) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _same_calibration(a: dict, b: dict) -> None:
    a, b = dict(a), dict(b)
    runs = b.pop("runs")
    a.pop("runs")
    assert a == b
    assert len(runs) == 2


def test_info_and_calibrate_on_s3_give_the_local_figures(remote, local, capsys):
    here = _json(["data", "info", str(local), "--json"], capsys)
    there = _json(["data", "info", remote, "--json"], capsys)
    assert there.pop("path") == remote and here.pop("path") == str(local)
    assert there == here and here["rows"] > 0 and here["ingests"] == 2
    assert here["tick"]["nasdaq/AAPL"] == 0.01 and here["consistency"]["ticker_compared"] == 13
    argv = ["data", "calibrate", "--venue", "sim", "--window", "5min", "--local", "--json"]
    here = _json([*argv[:2], str(local), *argv[2:]], capsys)
    there = _json([*argv[:2], remote, *argv[2:]], capsys)
    _same_calibration(here, there)
    assert [d["date"] for d in there["days"]] == list(SIM_DAYS) and len(there["windows"]) == 4


def test_calibrate_on_ray_workers_reads_s3_itself(ray_session, remote, local, capsys):
    """Each day is a Ray task that re-opens the shard from its URI with the worker's environment."""
    here = calibrate(local, "5min", venue="sim", use_ray=False).to_dict()
    there = _json(["data", "calibrate", remote, "--venue", "sim", "--window", "5min", "--json"], capsys)
    assert all(r["worker_id"] and r["pid"] != os.getpid() for r in there["runs"])
    _same_calibration(here, there)


def _fails(argv: list[str], capsys, *, within: float = 15.0) -> str:
    started = time.perf_counter()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert time.perf_counter() - started < within
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1, captured.err
    assert "Traceback" not in captured.err
    return captured.err


def test_a_missing_bucket_or_prefix_is_one_line_naming_the_uri(remote, s3, capsys):
    err = _fails(["data", "info", "s3://no-such-bucket/lob", "--json"], capsys)
    assert err.startswith("mmray data info: error: s3://no-such-bucket/lob: no such bucket 'no-such-bucket' at "
                          f"endpoint {s3}"), err
    err = _fails(["data", "calibrate", "s3://no-such-bucket/lob", "--local", "--json"], capsys)
    assert "s3://no-such-bucket/lob: no such bucket 'no-such-bucket'" in err
    err = _fails(["data", "info", f"s3://{BUCKET}/missing", "--json"], capsys)
    assert f"s3://{BUCKET}/missing: no such dataset prefix (no objects under it) at endpoint {s3}" in err
    err = _fails(["data", "calibrate", f"s3://{BUCKET}/missing", "--local"], capsys)
    assert f"s3://{BUCKET}/missing: no such dataset prefix" in err
    err = _fails(["data", "info", f"{remote}/venue=sim", "--json"], capsys)
    assert "not an mmray dataset" in err
    with pytest.raises(DataError, match=f"s3://{BUCKET}/missing: no such dataset prefix"):
        read_events(f"s3://{BUCKET}/missing")


def test_an_unreachable_endpoint_fails_quickly_naming_the_uri_and_endpoint(remote, capsys):
    dead = f"http://127.0.0.1:{_free_port()}"
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ENDPOINT_URL", dead)
    try:
        for argv in (["data", "info", remote, "--json"], ["data", "calibrate", remote, "--local", "--json"]):
            err = _fails(argv, capsys, within=10.0)
            assert f"{remote}: cannot read at endpoint {dead}:" in err and "onnect" in err, err
    finally:
        mp.undo()

"""Event datasets on Ray: read with Ray Data, shard by day, run one consumer per shard.

An event dataset (written by :func:`mmray.data.ingest.ingest`) is a directory or object-store
prefix ``venue=<venue>/symbol=<symbol>/date=<YYYY-MM-DD>/part-*.parquet``. This module gives

* :func:`read_events` — the whole dataset, or the partitions a ``venue``/``symbol``/``date``
  filter keeps, as a :class:`ray.data.Dataset` (``ray.data.read_parquet`` with a
  ``partition_filter``: pruned files are never opened; the hive columns come back as strings);
* :func:`list_shards` — the dataset cut into :class:`Shard` objects, one per venue, symbol and
  UTC day, each naming its own files (local paths or object-store keys);
* :func:`assign_shards` — shards dealt to ``n`` consumers (replay workers, RL env runners), by
  size, the same way on every call;
* :func:`map_shards` — ``fn(shard)`` for every shard, each call a Ray task holding a *fractional*
  CPU (default 0.5), at most as many in flight as leave room for Ray Data's own read tasks.

Paths are local directories or URIs, opened by :func:`resolve` (the one place file systems are
made): ``s3://bucket/prefix`` gets pyarrow's ``S3FileSystem`` with the endpoint, region,
timeouts and retries of :data:`S3_ENV` (``AWS_ENDPOINT_URL`` for MinIO and other S3-compatible
stores); other URIs (``gs://…``, ``file:///…``) go to :meth:`pyarrow.fs.FileSystem.from_uri`.
Credentials come from the environment of each process, as for the AWS SDK (``AWS_*`` variables,
a profile, or the instance profile on a cluster). :func:`dataset_root` turns a missing
directory, prefix or bucket, or an unreachable store, into a :class:`DataError` naming the URI.

The fractional CPUs matter: a consumer that holds a whole CPU while it reads its shard through
Ray Data leaves Data's read tasks nothing to run on once every CPU is held, and the job hangs
without a warning (Ray issues 44687, 34042). :func:`map_shards` therefore keeps ``reserve_cpus``
free when consumers read through Ray Data (``engine="ray"``).
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.fs as pafs

from mmray.data.errors import DataError

__all__ = ["KEYS", "S3_ENV", "S3_QUERY", "Shard", "ShardFilter", "assign_shards", "dataset_root", "list_shards",
           "map_shards", "max_in_flight", "read_events", "resolve", "storage_error"]

#: The partition keys, outermost first (the layout written by ``mmray.data.ingest``).
KEYS: tuple[str, ...] = ("venue", "symbol", "date")

#: A filter on one partition key: one value, a collection of values, or a predicate on the value.
ShardFilter = str | Collection[str] | Callable[[str], bool] | None

T = TypeVar("T")
_SEGMENT = re.compile(r"^(venue|symbol|date)=(.+)$")
_PART = re.compile(r"(\d+)")


#: Environment variables that :func:`resolve` reads for ``s3://`` URIs, with their meaning. The
#: credentials are not among them: the AWS SDK's own chain finds them in each process
#: (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, the
#: instance profile), so a file system sent to a Ray worker carries none.
S3_ENV: dict[str, str] = {
    "AWS_ENDPOINT_URL_S3": "endpoint of an S3-compatible store, e.g. http://minio:9000 (wins over AWS_ENDPOINT_URL)",
    "AWS_ENDPOINT_URL": "endpoint of an S3-compatible store (default: AWS)",
    "AWS_REGION": "region (wins over AWS_DEFAULT_REGION)",
    "AWS_DEFAULT_REGION": "region (default: us-east-1 with an endpoint, else the bucket's own region)",
    "MMRAY_S3_CONNECT_TIMEOUT": "seconds to wait for a connection (default 5)",
    "MMRAY_S3_REQUEST_TIMEOUT": "seconds a request may stall (default 30)",
    "MMRAY_S3_RETRIES": "attempts per request, the first included (default 3)",
}
#: Options an ``s3://`` URI may carry as its query (``s3://bucket/prefix?endpoint_override=host:9000``),
#: pyarrow's names; they win over the environment.
S3_QUERY = ("region", "endpoint_override", "scheme")
_S3_DEFAULTS = {"MMRAY_S3_CONNECT_TIMEOUT": 5.0, "MMRAY_S3_REQUEST_TIMEOUT": 30.0, "MMRAY_S3_RETRIES": 3}


def _env_number(name: str, uri: str) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return _S3_DEFAULTS[name]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    whole = name == "MMRAY_S3_RETRIES"
    if not math.isfinite(value) or value <= 0 or (whole and value != int(value)):
        raise DataError(uri, None, f"{name}={text!r} is not a positive {'integer' if whole else 'number'}")
    return value


def _s3_options(uri: str) -> tuple[str, dict[str, str]]:
    """The bucket and the options (``region``, ``endpoint_override``, ``scheme``) of an ``s3://`` URI,
    the URI's query first, then the environment (:data:`S3_ENV`); no network."""
    parts = urlsplit(uri)
    bucket = parts.hostname or ""
    if not bucket or parts.username or parts.password:
        raise DataError(uri, None, "expected s3://BUCKET/PREFIX (credentials go in AWS_* variables, not the URI)")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(S3_QUERY))
    if unknown:
        raise DataError(uri, None, f"unknown option(s) {', '.join(unknown)} in the URI (known: {', '.join(S3_QUERY)})")
    option = {k: v[-1] for k, v in query.items()}
    endpoint = (option.get("endpoint_override") or os.environ.get("AWS_ENDPOINT_URL_S3")
                or os.environ.get("AWS_ENDPOINT_URL") or "").strip()
    scheme = option.get("scheme") or "https"
    if "://" in endpoint:
        scheme, _, endpoint = endpoint.partition("://")
        endpoint = endpoint.rstrip("/")
    if scheme not in ("http", "https"):
        raise DataError(uri, None, f"the S3 endpoint's scheme must be http or https, got {scheme!r}")
    region = option.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
    if not region and endpoint:
        region = "us-east-1"  # what S3-compatible stores (MinIO, Ceph, moto) answer to
    return bucket, {"region": region, "endpoint_override": endpoint, "scheme": scheme}


def _s3(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's :class:`~pyarrow.fs.S3FileSystem` for ``s3://bucket/prefix[?options]``.

    Endpoint, region and timeouts as :data:`S3_ENV` and :data:`S3_QUERY` say; credentials left
    to the AWS SDK's chain. Without a region or an endpoint, the bucket's region is looked up.
    """
    bucket, option = _s3_options(uri)
    region = option["region"]
    if not region:
        try:
            region = pafs.resolve_s3_region(bucket)
        except OSError as exc:
            raise DataError(uri, None, f"cannot find the region of bucket {bucket!r} (set AWS_REGION): {exc}") from None
    fs = pafs.S3FileSystem(
        region=region, endpoint_override=option["endpoint_override"] or None, scheme=option["scheme"],
        connect_timeout=_env_number("MMRAY_S3_CONNECT_TIMEOUT", uri),
        request_timeout=_env_number("MMRAY_S3_REQUEST_TIMEOUT", uri),
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=int(_env_number("MMRAY_S3_RETRIES", uri))))
    return fs, (bucket + unquote(urlsplit(uri).path)).rstrip("/")


def resolve(path: str | os.PathLike[str], filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """The file system and the path inside it for a local path or a URI: the one place mmray makes them.

    ``s3://bucket/prefix`` gets pyarrow's :class:`~pyarrow.fs.S3FileSystem` with the endpoint,
    region, timeouts and retries of :data:`S3_ENV` (or the URI's query, :data:`S3_QUERY`); other
    URIs (``gs://``, ``file://``, ``hdfs://``) go to :meth:`pyarrow.fs.FileSystem.from_uri`; a
    plain path is local. With `filesystem` given, `path` is a path inside it.

    Raises
    ------
    DataError
        A malformed URI or setting, naming the URI.
    """
    text = os.fspath(path)
    if filesystem is not None:
        return filesystem, text.rstrip("/")
    if text.startswith("s3://"):
        return _s3(text)
    if "://" in text:
        try:
            fs, inner = pafs.FileSystem.from_uri(text)
        except (OSError, ValueError) as exc:  # pyarrow.lib.ArrowInvalid is a ValueError
            raise DataError(text, None, f"cannot open: {exc}") from None
        return fs, inner.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(text)


def _where(path: str) -> str:
    """`` at endpoint URL`` for an ``s3://`` URI with an endpoint override (for error messages), else ``""``."""
    if not path.startswith("s3://"):
        return ""
    try:
        option = _s3_options(path)[1]
    except DataError:
        return ""
    return f" at endpoint {option['scheme']}://{option['endpoint_override']}" if option["endpoint_override"] else ""


def storage_error(path: str | os.PathLike[str], exc: OSError) -> DataError:
    """A pyarrow I/O error as a :class:`DataError` naming the dataset (and the S3 endpoint, if any)."""
    text = os.fspath(path)
    return DataError(text, None, f"cannot read{_where(text)}: {exc}")


def dataset_root(path: str | os.PathLike[str],
                 filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """:func:`resolve`, after checking that the dataset's directory (or object-store prefix) exists.

    Raises
    ------
    DataError
        Naming `path`: no such directory, prefix or bucket, or the store could not be reached
        (connection refused, timeout, denied), instead of a traceback from inside pyarrow.
    """
    fs, base = resolve(path, filesystem)
    text = os.fspath(path)
    try:
        kind = fs.get_file_info(base).type
        if kind == pafs.FileType.NotFound and isinstance(fs, pafs.S3FileSystem) and "/" in base:
            bucket = base.split("/", 1)[0]
            if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise DataError(text, None, f"no such bucket {bucket!r}{_where(text)}")
    except OSError as exc:
        raise storage_error(text, exc) from None
    if kind != pafs.FileType.Directory:
        what = "prefix (no objects under it)" if isinstance(fs, pafs.S3FileSystem) else "directory"
        raise DataError(text, None, f"no such dataset {what}{_where(text)}")
    return fs, base


def _matcher(name: str, spec: ShardFilter) -> Callable[[str], bool]:
    if spec is None:
        return lambda _value: True
    if callable(spec):
        return spec
    if isinstance(spec, str):
        return lambda value: value == spec
    if isinstance(spec, Collection) and all(isinstance(v, str) for v in spec):
        allowed = frozenset(spec)
        return lambda value: value in allowed
    raise TypeError(f"{name} must be a string, a collection of strings or a predicate, got {spec!r}")


def _natural(path: str) -> list[Any]:
    """Sort key putting ``part-2`` before ``part-10``."""
    return [int(s) if s.isdigit() else s for s in _PART.split(path)]


@dataclass(frozen=True)
class Shard:
    """One venue, symbol and UTC day of an event dataset: the unit of parallel work.

    Parameters
    ----------
    root : str
        The dataset as the caller named it (local directory or URI).
    venue, symbol, date : str
        The partition values (``date`` is ``YYYY-MM-DD``, UTC).
    files : tuple of str
        The shard's Parquet files as paths inside ``filesystem`` (for ``s3://bucket/x`` that is
        ``bucket/x/...``), in natural order (``part-2`` before ``part-10``).
    nbytes : int
        Total size of the files, bytes (used to balance :func:`assign_shards`).
    filesystem : pyarrow.fs.FileSystem or None
        The file system to read with; ``None`` re-resolves it from ``root`` in the process that
        reads (so a worker uses its own credentials).
    """

    root: str
    venue: str
    symbol: str
    date: str
    files: tuple[str, ...]
    nbytes: int = 0
    filesystem: pafs.FileSystem | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, str]:
        """``(venue, symbol, date)``."""
        return (self.venue, self.symbol, self.date)

    @property
    def name(self) -> str:
        """``venue=…/symbol=…/date=…``, the shard's directory inside the dataset."""
        return "/".join(f"{k}={v}" for k, v in zip(KEYS, self.key, strict=True))

    def _fs(self) -> pafs.FileSystem:
        return resolve(self.root, self.filesystem)[0]

    def batches(self, columns: Sequence[str] | None = None, *, engine: str = "arrow",
                batch_size: int = 1 << 17) -> Iterator[pa.RecordBatch]:
        """Stream the shard's rows as record batches, in file order.

        Parameters
        ----------
        columns : sequence of str or None
            Columns to read (the file's columns; the partition values are :attr:`key`).
            ``None``: all of them.
        engine : {"arrow", "ray"}
            ``"arrow"`` reads the files in this process with :mod:`pyarrow.dataset` (the
            per-shard consumer's own reader, no extra tasks); ``"ray"`` streams them through
            :meth:`dataset` (Ray Data read tasks, order preserved).
        batch_size : int
            Largest batch, rows (``"arrow"`` only; Ray Data yields its blocks).
        """
        if engine == "arrow":
            data = pds.dataset(list(self.files), format="parquet", filesystem=self._fs())
            for b in data.to_batches(columns=None if columns is None else list(columns), batch_size=batch_size,
                                     use_threads=False):
                if b.num_rows:
                    yield b
        elif engine == "ray":
            ds = self.dataset(columns, partition_columns=False)
            for b in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                if b.num_rows:
                    yield from (b.to_batches() if isinstance(b, pa.Table) else [b])
        else:
            raise ValueError(f"engine must be 'arrow' or 'ray', got {engine!r}")

    def dataset(self, columns: Sequence[str] | None = None, *, partition_columns: bool = True):  # type: ignore[no-untyped-def]
        """The shard as a :class:`ray.data.Dataset` (``ray.data.read_parquet`` of its files).

        Row order is preserved (``preserve_order`` on the dataset's context). With
        `partition_columns` the hive columns ``venue``, ``symbol`` and ``date`` are added
        (strings).
        """
        import ray.data
        from ray.data.datasource.partitioning import Partitioning

        fs, base = resolve(self.root, self.filesystem)
        partitioning = Partitioning("hive", base_dir=base, filesystem=fs) if partition_columns else None
        ds = ray.data.read_parquet(list(self.files), filesystem=fs, partitioning=partitioning)
        ds.context.execution_options.preserve_order = True
        if columns is not None:
            wanted = list(columns) + ([k for k in KEYS if k not in columns] if partition_columns else [])
            ds = ds.select_columns(wanted)
        return ds


def list_shards(path: str | os.PathLike[str], *, venue: ShardFilter = None, symbol: ShardFilter = None,
                date: ShardFilter = None, filesystem: pafs.FileSystem | None = None) -> list[Shard]:
    """The dataset's shards (venue, symbol, UTC day) that pass the filters, sorted by key.

    Parameters
    ----------
    path : str or os.PathLike
        Dataset root: a local directory or a URI (``s3://bucket/prefix``).
    venue, symbol, date : str, collection of str, callable or None
        Keep a partition when its value equals the string, is in the collection, or makes the
        predicate true (``date=lambda d: d >= "2024-07-01"``); ``None`` keeps all.
    filesystem : pyarrow.fs.FileSystem or None
        Read with this file system instead of the one the URI names.

    Returns
    -------
    list of Shard

    Raises
    ------
    DataError
        `path` does not exist, or holds no ``venue=/symbol=/date=`` Parquet files at all.
    """
    fs, base = dataset_root(path, filesystem)
    keep = [_matcher(n, spec) for n, spec in zip(KEYS, (venue, symbol, date), strict=True)]
    found: dict[tuple[str, str, str], list[tuple[str, int]]] = {}
    any_partition = False
    try:
        listing = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except OSError as exc:
        raise storage_error(path, exc) from None
    for f in listing:
        if f.type != pafs.FileType.File or not f.path.endswith(".parquet"):
            continue
        parts = f.path[len(base):].strip("/").split("/")[:-1]
        if any(p.startswith(("_", ".")) for p in parts):
            continue
        values = {}
        for p in parts:
            m = _SEGMENT.match(p)
            if m:
                values[m.group(1)] = unquote(m.group(2))
        if len(values) != len(KEYS):
            continue
        any_partition = True
        key = tuple(values[k] for k in KEYS)
        if all(ok(v) for ok, v in zip(keep, key, strict=True)):
            found.setdefault(key, []).append((f.path, f.size or 0))  # type: ignore[arg-type]
    if not any_partition:
        raise DataError(os.fspath(path), None, "holds no venue=/symbol=/date= Parquet partitions")
    root = os.fspath(path)
    return [Shard(root, *key, files=tuple(sorted((p for p, _ in files), key=_natural)),
                  nbytes=sum(s for _, s in files), filesystem=filesystem)
            for key, files in sorted(found.items())]


def read_events(path: str | os.PathLike[str], *, venue: ShardFilter = None, symbol: ShardFilter = None,
                date: ShardFilter = None, columns: Sequence[str] | None = None,
                filesystem: pafs.FileSystem | None = None, **read_args: Any):  # type: ignore[no-untyped-def]
    """The dataset (or the partitions the filters keep) as a :class:`ray.data.Dataset`.

    ``ray.data.read_parquet`` with hive partitioning and a ``partition_filter`` built from
    `venue`, `symbol` and `date` (same forms as :func:`list_shards`): files of other partitions
    are not read. The partition columns ``venue``, ``symbol`` and ``date`` are strings.

    Parameters
    ----------
    path : str or os.PathLike
        Local directory or URI (``s3://bucket/prefix``).
    columns : sequence of str or None
        Columns to keep (partition columns included by name); ``None``: all.
    read_args
        Passed to ``ray.data.read_parquet`` (``num_cpus=``, ``override_num_blocks=`` …).
    """
    import ray.data
    from ray.data.datasource.partitioning import Partitioning, PathPartitionFilter

    fs, base = dataset_root(path, filesystem)
    keep = [_matcher(n, spec) for n, spec in zip(KEYS, (venue, symbol, date), strict=True)]

    def wanted(values: dict[str, str]) -> bool:
        if not all(k in values for k in KEYS):
            return False
        return all(ok(values[k]) for ok, k in zip(keep, KEYS, strict=True))

    pfilter = PathPartitionFilter.of(wanted, style="hive", base_dir=base, filesystem=fs)
    ds = ray.data.read_parquet(base, filesystem=fs, partition_filter=pfilter,
                               partitioning=Partitioning("hive", base_dir=base, filesystem=fs), **read_args)
    if columns is not None:
        ds = ds.select_columns(list(columns))
    return ds


def assign_shards(shards: Sequence[Shard], n: int) -> list[list[Shard]]:
    """Deal `shards` to `n` consumers, largest first to the least loaded (by bytes).

    Deterministic (ties broken by shard key), so worker ``i`` of ``n`` (an RL env runner, a
    replay worker) can compute its own list. Each list is sorted by key.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of consumers must be an integer >= 1, got {n!r}")
    loads = [(0, i) for i in range(n)]
    out: list[list[Shard]] = [[] for _ in range(n)]
    for s in sorted(shards, key=lambda s: (-s.nbytes, s.key)):
        load, i = min(loads)
        out[i].append(s)
        loads[i] = (load + s.nbytes, i)
    return [sorted(o, key=lambda s: s.key) for o in out]


def max_in_flight(total_cpus: float, num_cpus: float, reserve_cpus: float = 0.0) -> int:
    """How many consumers of `num_cpus` each may run at once and leave `reserve_cpus` free (≥ 1).

    Example: 2 CPUs, consumers of 0.5 CPU that read through Ray Data (reserve 1 CPU for its read
    tasks): ``max_in_flight(2, 0.5, 1) == 2``.
    """
    return max(1, math.floor((total_cpus - reserve_cpus) / num_cpus + 1e-9))


def map_shards(fn: Callable[..., T], shards: Sequence[Shard], *, num_cpus: float = 0.5, use_ray: bool = True,
               reserve_cpus: float = 0.0, in_flight: int | None = None, **kwargs: Any) -> list[T]:
    """``[fn(shard, **kwargs) for shard in shards]``, one Ray task per shard, results in order.

    Parameters
    ----------
    fn : callable
        The consumer; importable by the workers (a module-level function of an installed
        package, or a closure, which Ray pickles by value).
    num_cpus : float
        CPUs each consumer task holds; fractional by default (0.5) so that consumers never hold
        every CPU.
    use_ray : bool
        ``False`` runs the calls one after the other in this process (same results).
    reserve_cpus : float
        CPUs to leave free for tasks the consumers start themselves (1 when they read through
        Ray Data, ``engine="ray"``): at most :func:`max_in_flight` consumers run at once.
    in_flight : int or None
        Override that bound.

    Returns
    -------
    list
        One result per shard, in the order of `shards`, whatever order the workers finish in.
    """
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, int | float) or not 0 < num_cpus:
        raise ValueError(f"num_cpus must be a number > 0, got {num_cpus!r}")
    if not use_ray:
        return [fn(s, **kwargs) for s in shards]
    import ray

    from mmray.distributed import ensure_ray

    ensure_ray()
    total = float(ray.cluster_resources().get("CPU", 1.0))
    if num_cpus > total:
        raise ValueError(f"num_cpus={num_cpus} is more than the cluster's {total:g} CPUs")
    limit = in_flight or max_in_flight(total, num_cpus, reserve_cpus)
    remote = ray.remote(num_cpus=num_cpus, max_retries=1)(fn)
    results: dict[int, T] = {}
    pending: dict[Any, int] = {}
    queue = list(enumerate(shards))
    while queue or pending:
        while queue and len(pending) < limit:
            i, s = queue.pop(0)
            pending[remote.remote(s, **kwargs)] = i
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            results[pending.pop(ref)] = ray.get(ref)
    return [results[i] for i in range(len(shards))]


def worker_info(started: float | None = None) -> dict[str, Any]:
    """Where this call runs: process id and, inside Ray, worker and node ids; seconds since `started`."""
    out: dict[str, Any] = {"pid": os.getpid(), "worker_id": None, "node_id": None}
    try:
        import ray

        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            out["worker_id"] = ctx.get_worker_id()
            out["node_id"] = ctx.get_node_id()
    except ImportError:  # pragma: no cover - ray is a dependency
        pass
    if started is not None:
        out["seconds"] = time.perf_counter() - started
    return out

"""Run Monte Carlo chunks locally or as Ray tasks, with identical results.

Paths are cut into fixed-size chunks; chunk ``i`` draws only from
``SeedSequence(seed).spawn(n_chunks)[i]``. The chunk results are returned in chunk order,
whatever order the workers finish in, so every statistic computed from them is the same bit
for bit on 1 worker, N workers, a cluster, or without Ray.

Ray is imported only when it is used.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np


def n_chunks(n_paths: int, chunk_size: int) -> int:
    """Number of chunks of at most ``chunk_size`` paths covering ``n_paths`` paths."""
    return -(-n_paths // chunk_size)


def chunk_plan(n_paths: int, chunk_size: int, seed: int) -> list[tuple[int, np.random.SeedSequence]]:
    """``[(paths_in_chunk, seed_sequence), ...]`` covering ``n_paths`` paths."""
    count = n_chunks(n_paths, chunk_size)
    seeds = np.random.SeedSequence(seed).spawn(count)
    sizes = [min(chunk_size, n_paths - i * chunk_size) for i in range(count)]
    return list(zip(sizes, seeds, strict=True))


#: seconds to reach a Ray cluster given by address before giving up (``ensure_ray``)
CONNECT_TIMEOUT_S = 20.0


def ensure_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    dashboard: bool = False,
    log_to_driver: bool = True,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> Any | None:
    """Start an embedded Ray (or attach to ``address``) unless one is already running.

    Returns Ray's context when this call started or attached to Ray, ``None`` when a session was
    already initialised. The embedded instance is always a fresh one (never attached by accident
    to another local cluster); its dashboard, if asked for, listens on 127.0.0.1:8265.

    Raises
    ------
    ConnectionError
        ``address`` cannot be reached within ``connect_timeout`` seconds (Ray itself would retry
        for many minutes), or ``"auto"`` finds no running cluster. ``ValueError`` for
        ``num_cpus < 1``.
    """
    if num_cpus is not None and num_cpus < 1:
        raise ValueError(f"the number of Ray CPUs must be an integer >= 1, got {num_cpus!r}")
    if "ray" not in sys.modules:  # read when ray is imported: too late to set afterwards
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    if ray.is_initialized():
        return None
    kwargs: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": log_to_driver}
    if address:
        deadline = time.monotonic() + connect_timeout
        check_reachable(address, connect_timeout)
        with _time_limit(max(deadline - time.monotonic(), 0.1), f"connecting to the Ray cluster at {address!r}"):
            return ray.init(address=address, **kwargs)
    kwargs.update(address="local", include_dashboard=dashboard)
    if num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    if dashboard:
        kwargs.update(dashboard_host="127.0.0.1", dashboard_port=8265)
    return ray.init(**kwargs)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse, within ``timeout`` seconds, a Ray ``address`` whose head does not accept connections.

    ``address`` is resolved as ``ray.init`` resolves it (``"auto"``: ``RAY_ADDRESS`` or the cluster
    started on this machine; ``127.0.0.1`` becomes the node's address), then its port is opened
    once over TCP. Raises ``ConnectionError`` with a one-line reason naming ``address``.
    """
    import socket

    target = address.split("://", 1)[1] if "://" in address else address
    if "://" not in address:  # a GCS address ('ray://' is Ray Client: its host and port as given)
        from ray._private.services import canonicalize_bootstrap_address

        try:
            target = canonicalize_bootstrap_address(address) or target
        except ConnectionError as exc:  # "auto" without a cluster
            raise ConnectionError(f"Ray cluster {address!r}: {exc}") from None
        except ValueError as exc:
            raise ConnectionError(f"Ray address {address!r} is not host:port ({exc})") from None
    host, sep, port = target.rstrip("/").rpartition(":")
    if not sep or not port.isdigit():
        raise ConnectionError(f"Ray address {address!r} is not host:port, 'auto' or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except TimeoutError:
        raise ConnectionError(f"cannot reach the Ray cluster at {address!r} ({target}): no answer within "
                              f"{timeout:g} s") from None
    except OSError as exc:
        raise ConnectionError(f"cannot reach the Ray cluster at {address!r} ({target}): "
                              f"{exc.strerror or exc}") from None


@contextmanager
def _time_limit(seconds: float, what: str) -> Iterator[None]:
    """Interrupt the block (run in the main thread) after ``seconds``, raising ``ConnectionError``.

    For calls into Ray that retry for minutes inside C++: the interrupt lands when control
    returns to Python (within one of Ray's ~5 s connection attempts). Outside the main thread
    the block runs without a limit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    lock, state = threading.Lock(), {"done": False, "fired": False}

    def fire() -> None:
        with lock:
            if not state["done"] and callable(signal.getsignal(signal.SIGINT)):
                state["fired"] = True  # a real SIGINT also wakes a blocking system call
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        try:
            yield
        finally:
            with lock:
                state["done"] = True
            timer.cancel()
    except KeyboardInterrupt:
        if not state["fired"]:
            raise
        raise ConnectionError(f"gave up {what} after {seconds:.0f} s (is it a Ray head node's GCS port?)") from None


def _progress(total: int, desc: str, enabled: bool):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="chunk", disable=not enabled, file=sys.stderr, leave=False)


def path_step_progress(total: int, desc: str, enabled: bool):  # type: ignore[no-untyped-def]
    """A progress bar counting simulated path-steps (stderr; disabled unless ``enabled``)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=" path-steps", unit_scale=True, disable=not enabled,
                file=sys.stderr, leave=False)


def map_chunks(
    fn: Callable[..., Any],
    args: Sequence[tuple[Any, ...]],
    shared: tuple[Any, ...] = (),
    use_ray: bool = False,
    progress: bool = False,
    desc: str = "chunks",
    task_cpus: float = 1.0,
    local_kwargs: dict[str, Any] | None = None,
) -> list[Any]:
    """``[fn(*shared, *a) for a in args]``, optionally as Ray tasks; results in ``args`` order.

    ``shared`` arguments (the policy, parameters) are put in Ray's object store once.
    ``task_cpus`` is the CPU reservation of each Ray task (fractional inside Tune trials).
    ``local_kwargs`` (e.g. a progress callback) are passed to ``fn`` only when it runs in this
    process. The chunk-count progress bar is shown for Ray runs; local callers report finer
    progress through ``local_kwargs``.
    """
    if not use_ray:
        return [fn(*shared, *a, **(local_kwargs or {})) for a in args]
    import ray

    ensure_ray()
    remote = ray.remote(num_cpus=task_cpus)(fn)
    refs_shared = [ray.put(x) for x in shared]
    refs = [remote.remote(*refs_shared, *a) for a in args]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(refs)
    pending = list(refs)
    with _progress(len(refs), desc, progress and len(refs) > 1) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                results[index[ref]] = ray.get(ref)
                bar.update(1)
    return results

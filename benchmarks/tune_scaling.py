"""Ray Tune scaling of mmray sweeps: 16 equal trials on 1 vs 2 CPUs, and per-trial overhead.

Run::

    .venv/bin/python benchmarks/tune_scaling.py            # ~2-5 minutes on 2 cores
    .venv/bin/python benchmarks/tune_scaling.py --quick    # smaller trials, one round, ~1 minute

What it measures (all in this one run, ratios printed at the end):

1. Speed-up: the same 16-trial sweep (the exact optimal strategy at 16 risk aversions, equal
   Monte Carlo work per trial, 1 CPU per trial) on an embedded Ray with 1 CPU, then with 2 CPUs,
   alternating, each started on an idle machine. The CPU used by other processes during each
   run is measured from /proc (on a shared 2-core machine another user's job steals a core);
   disturbed runs are reported and repeated (up to 4 rounds). Goal: >= 1.7x. Times are Tune's
   ``fit`` wall time (Ray start-up excluded).
2. Per-trial overhead: N trivial trials (a function that reports one number) with 0.5 CPU per
   trial and actor reuse, and the same N trials through the mmray trainable with a 1-step,
   1-path backtest (which also writes its completion checkpoint and the sweep's artefacts);
   overhead = fit time / N. Goal: < 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from mmray.tuning.config import spec_from_dict
from mmray.tuning.runner import RunOptions, run_sweep


def _ray(num_cpus: int) -> None:
    import ray

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)


def _equal_trials_sweep(n_trials: int, n_paths: int):  # type: ignore[no-untyped-def]
    gammas = [round(0.001 * (1 + i), 6) for i in range(n_trials)]
    return spec_from_dict({"sweep": {
        "kind": "risk-aversion", "name": "scaling", "problem": {"T": 600, "q_max": 30},
        "sim": {"n_paths": n_paths, "dt": 1.0}, "strategies": ["optimal"], "grid": {"gamma": gammas},
        "resources": {"cpus_per_trial": 1.0, "reuse_actors": True},
    }}, source="<benchmark>")


def _machine_busy() -> int:
    """Busy clock ticks of all CPUs since boot (/proc/stat)."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    return sum(v) - v[3] - v[4]


def _process_ticks() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, user+system clock ticks) for every process (/proc/<pid>/stat)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                text = fh.read()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2:].split()
        out[int(d)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
    return out


def _tree(table: dict[int, tuple[int, int]], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, []))
    return seen


class OtherLoad:
    """Cores used by processes outside this benchmark (its Ray included) while the block runs.

    On a shared 2-core machine another user's job steals a core and understates the speed-up;
    this measures it from /proc so each timing can be judged (0 where /proc is unavailable).
    The process table is sampled every 0.2 s so that the CPU time of this benchmark's workers
    that exit before the block ends (Tune stops its trial actors) is still counted as its own.
    """

    def __enter__(self) -> OtherLoad:
        import threading

        self.cores = 0.0
        try:
            self._t0, self._b0, self._w0 = _process_ticks(), _machine_busy(), time.monotonic()
        except OSError:
            self._t0 = None
            return self
        self._seen: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while True:
            table = _process_ticks()
            for pid in _tree(table, os.getpid()):
                self._seen[pid] = max(self._seen.get(pid, 0), table[pid][1])
            if self._stop.wait(0.2):
                return

    def __exit__(self, *exc: object) -> None:
        if self._t0 is None:
            return
        self._stop.set()
        self._thread.join()
        b1, wall = _machine_busy(), time.monotonic() - self._w0
        mine = sum(ticks - (self._t0[p][1] if p in self._t0 else 0) for p, ticks in self._seen.items())
        hz = os.sysconf("SC_CLK_TCK")
        self.cores = max(0.0, (b1 - self._b0 - mine) / hz / max(wall, 1e-9))


QUIET_WAIT_S = 300.0


def wait_quiet(limit_s: float | None = None) -> float:
    """Wait (at most ``limit_s``) until other processes leave the machine idle; returns their cores."""
    deadline = time.monotonic() + (QUIET_WAIT_S if limit_s is None else limit_s)
    while True:
        with OtherLoad() as load:
            time.sleep(2.0)
        if load.cores < 0.2 or time.monotonic() > deadline:
            return load.cores


def speedup(n_trials: int, n_paths: int, storage: str, max_rounds: int = 4) -> dict[int, float]:
    """Fit wall time of the same sweep on 1 and on 2 CPUs.

    1-CPU and 2-CPU runs alternate, each started on an idle machine; a run during which other
    processes used more than 0.15 cores is reported and discarded, and rounds go on (at most
    ``max_rounds``) until each CPU count has a clean run. Returns the best clean (or, failing
    that, the least disturbed) time per CPU count.
    """
    import ray

    spec = _equal_trials_sweep(n_trials, n_paths)
    runs: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for r in range(max_rounds):
        for cpus in (1, 2):
            if any(load < 0.15 for _, load in runs[cpus]):
                continue
            wait_quiet()
            _ray(cpus)
            try:
                with OtherLoad() as load:
                    s = run_sweep(spec, RunOptions(storage=storage, name=f"speedup-{cpus}cpu-{r}", verbose=0))
                assert (s.table["status"] == "ok").all()
            finally:
                ray.shutdown()
            runs[cpus].append((s.seconds, load.cores))
            note = "" if load.cores < 0.15 else "   (disturbed: discarded unless nothing better)"
            print(f"   round {r + 1}, {cpus} CPU: {s.seconds:6.2f} s, other processes used {load.cores:.2f} cores"
                  + note)
        if all(any(load < 0.15 for _, load in runs[c]) for c in runs):
            break
    best = {}
    for cpus, items in runs.items():
        clean = [t for t, load in items if load < 0.15]
        best[cpus] = min(clean) if clean else min(items, key=lambda x: x[1])[0]
    return best


def _trivial(config: dict) -> None:
    from ray import tune

    tune.report({"score": float(config["i"])})


def trivial_overhead(n: int, storage: str) -> dict[str, float]:
    """Seconds per trial for ``n`` trivial trials and ``n`` minimal mmray trials."""
    from ray import tune

    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    t0 = time.perf_counter()
    tune.Tuner(
        tune.with_resources(_trivial, {"cpu": 0.5}), param_space={"i": tune.grid_search(list(range(n)))},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, name="trivial", verbose=0),
    ).fit()
    plain = (time.perf_counter() - t0) / n
    spec = spec_from_dict({"sweep": {
        "kind": "hparams", "name": "overhead", "problem": {"T": 1.0, "q_max": 5}, "sim": {"n_paths": 1, "dt": 1.0},
        "strategies": ["constant"], "grid": {"half_spread": [1.0 + i / 100 for i in range(n)]},
        "resources": {"cpus_per_trial": 0.5, "reuse_actors": True},
    }}, source="<benchmark>")
    s = run_sweep(spec, RunOptions(storage=storage, name="mmray-trivial", verbose=0))
    assert (s.table["status"] == "ok").all()
    return {"tune": plain, "mmray": s.seconds / n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller trials")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--paths", type=int, help="Monte Carlo paths per trial (default 150000, quick 20000)")
    p.add_argument("--trivial", type=int, default=48, help="number of trivial trials")
    p.add_argument("--max-rounds", type=int, default=4, help="most 1-CPU/2-CPU rounds to get undisturbed runs")
    p.add_argument("--quiet-wait", type=float, default=QUIET_WAIT_S,
                   help="seconds to wait for other processes to leave the machine idle before a run")
    args = p.parse_args()
    globals()["QUIET_WAIT_S"] = args.quiet_wait
    # ~2.8 s trials: long enough that Tune's ~0.2 s per-trial bookkeeping, which runs on the same two
    # cores, does not dominate the ratio (1.2 s trials measured 1.68x, 2.8 s trials 1.84x)
    n_paths = args.paths or (20000 if args.quick else 150000)
    if args.quick:
        args.max_rounds = 1
    import ray

    with tempfile.TemporaryDirectory(prefix="mmray-bench-") as storage:
        print(f"1. {args.trials} equal trials (optimal strategy, {n_paths} paths x 600 steps), 1 CPU per trial")
        t = speedup(args.trials, n_paths, storage, args.max_rounds)
        print(f"   best 1 CPU: {t[1]:7.2f} s   ({t[1] / args.trials:.2f} s/trial)")
        print(f"   best 2 CPU: {t[2]:7.2f} s")
        print(f"   speed-up 2 vs 1 CPU: {t[1] / t[2]:.2f}x   (goal >= 1.7x)")

        print(f"\n2. per-trial overhead, {args.trivial} trivial trials, 0.5 CPU per trial, 2 CPUs, reuse_actors")
        wait_quiet()
        _ray(2)
        try:
            with OtherLoad() as load:
                r = trivial_overhead(args.trivial, storage)
        finally:
            ray.shutdown()
        print(f"   (other processes used {load.cores:.2f} cores meanwhile)")
        print(f"   plain Tune function:   {r['tune']:.3f} s/trial   (goal < 0.5 s)")
        print(f"   mmray trainable:       {r['mmray']:.3f} s/trial")


if __name__ == "__main__":
    main()

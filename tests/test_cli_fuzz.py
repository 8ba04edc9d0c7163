"""CLI fuzz test: random flag values (the hardening issue's own list among them) never give a
traceback, a hang or half-written output.

Each case is small base command lines of ``solve``, ``backtest`` and ``simulate`` with one to
three flags replaced by values drawn (seeded) from pools of valid, absurd and invalid values. It
must exit 0 or 2 within its time limit; on exit 2 stdout is empty, stderr is one line naming the
command, and ``--out`` was not created. Cases run in-process (an import per case would cost
2 s); a SIGALRM bounds each one.
"""

from __future__ import annotations

import contextlib
import random
import signal
from pathlib import Path

import pytest

from mmray.cli import main

LIMIT_S = 60  # generous on a loaded 2-core machine: every valid case is a small problem

# the listed inputs first, then values of every kind
POOLS: dict[str, list[str]] = {
    "--q-max": ["100000", "none", "0", "-3", "2.5", "abc", "1e309", "5"],
    "--gamma": ["1e6", "1e-12", "0", "-1", "nan", "inf", "0.1", "x"],
    "--sigma": ["1e300", "0", "-0.3", "nan", "1e-9", "2", "inf"],
    "--A": ["1e12", "0", "-1", "1e-9", "5", "nan"],
    "--k": ["0", "1e-9", "1e9", "-1", "0.3"],
    "--tick": ["1000", "0", "-0.1", "0.05", "nan", "1e-12"],
    "--T": ["1e9", "0", "-1", "1e-6", "5", "inf"],
    "--dt": ["1e-4", "0", "-1", "3", "0.7", "nan", "1e9"],
    "--paths": ["1", "0", "-5", "2", "1e3", "abc", "100"],
    "--seed": ["-1", "1.5", "99", "abc"],
    "--trade-size": ["0", "-1", "2", "0.3", "1e9"],
    "--terminal-penalty": ["-1", "0", "10", "nan", "1e300"],
    "--q0": ["0", "3", "-2", "1e6", "0.5", "nan"],
    "--s0": ["0", "-100", "1e300", "nan", "50"],
    "--drift": ["1e300", "nan", "-0.5", "0"],
    "--chunk-size": ["0", "-1", "1", "7", "1e12"],
    "--workers": ["0", "-1", "abc"],
    "--objective": ["A", "B", "C"],
    "--fill-model": ["linear", "poisson", "magic"],
    "--price-model": ["gaussian", "binomial", "levy"],
}
SOLVE_POOLS: dict[str, list[str]] = {
    "--method": ["exact", "fd", "pi", "csp", "magic"],
    "--n-steps": ["1e8", "0", "-1", "10", "abc"],
    "--solver-tick": ["0", "-1", "0.5", "1e-9"],
}
BASE = {
    "solve": ["solve", "--T", "5", "--q-max", "3", "--json"],
    "backtest": ["backtest", "--T", "5", "--q-max", "3", "--paths", "50", "--local", "--json"],
    "simulate": ["simulate", "--T", "5", "--q-max", "3", "--local", "--json"],
}
RAY = [  # Ray flags: only values that must be refused before any Ray work (a real cluster is not fuzzed)
    ["--workers", "0"], ["--workers", "-1"], ["--address", "127.0.0.1:1"], ["--local", "--address", "auto"],
    ["--local", "--workers", "2"],
]


def _cases(n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        command = ("solve", "backtest", "simulate")[i % 3]
        argv = list(BASE[command])
        pools = {**POOLS, **(SOLVE_POOLS if command == "solve" else {})}
        if command == "solve":
            pools = {k: v for k, v in pools.items() if k not in ("--paths", "--seed", "--chunk-size", "--q0",
                                                                  "--workers", "--fill-model", "--price-model",
                                                                  "--dt")}
        for flag in rng.sample(sorted(pools), rng.randint(1, 3)):
            value = rng.choice(pools[flag])
            if flag in argv:
                argv[argv.index(flag) + 1] = value
            else:
                argv += [flag, value]
        if command != "solve" and rng.random() < 0.15:
            argv = [a for a in argv if a != "--local"] + rng.choice(RAY)
        cases.append(argv)
    listed = [  # the inputs the hardening issue names, each once
        ["solve", "--q-max", "400", "--T", "60", "--json"], ["solve", "--gamma", "1e6", "--T", "60", "--json"],
        ["solve", "--q-max", "100000", "--json"], ["solve", "--method", "fd", "--n-steps", "1e8", "--json"],
        ["solve", "--T", "1e9", "--json"], ["solve", "--method", "pi", "--dt", "1e-6", "--json"],
        ["simulate", "--dt", "1e-4", "--T", "20", "--local", "--json"],
        ["backtest", "--sigma", "1e300", "--local", "--json"],
        ["backtest", "--A", "1e12", "--T", "5", "--paths", "50", "--local", "--json"],
        ["backtest", "--tick", "1000", "--T", "5", "--paths", "50", "--local", "--json"],
        ["backtest", "--paths", "1", "--T", "5", "--local", "--json"],
        ["backtest", "--workers", "0", "--json"], ["backtest", "--workers", "-1", "--json"],
        ["backtest", "--address", "127.0.0.1:1", "--json"],
        ["simulate", "--strategy", "as", "--strategy", "optimal", "--local", "--json"],
    ]
    return listed + cases


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: int):
    def on_alarm(signum, frame):
        raise _Timeout

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2


CASES = _cases(90, seed=20261201)


@pytest.mark.parametrize("argv", CASES, ids=[" ".join(c) for c in CASES])
def test_random_flags_exit_0_or_2_with_one_clear_line(argv, tmp_path: Path, capsys):
    out = tmp_path / "out"
    argv = [*argv, "--out", str(out)]
    try:
        with _time_limit(LIMIT_S):
            code = _run(argv)
    except _Timeout:
        pytest.fail(f"no answer within {LIMIT_S} s")
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    assert code in (0, 2), (code, captured.err)
    if code == 2:
        assert captured.out == "", captured.out
        lines = [line for line in captured.err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"mmray {argv[0]}: error: "), captured.err
        assert not out.exists(), "a failed command left --out behind"
    else:
        assert captured.out.strip().startswith("{")

"""The CLI package: one parser per command, derived solver flags, up-front checks, all-or-nothing --out,
Ray connections with a time limit, help texts."""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmray.cli import COMMANDS, build_parser, command_parser, main
from mmray.cli.solver_flags import FLAG_OPTIONS, OPTION_METHODS, add_solver_flags, solver_options
from mmray.io import check_writable_dir, staging_dir
from mmray.solvers import METHODS, method_options

SMALL = ["--T", "60", "--dt", "0.5", "--paths", "200"]


def _error(capsys, argv) -> str:
    """Run ``argv``; it must fail with exit status 2 and one line on stderr, which is returned."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


# --------------------------------------------------------------------------- one package, one parser


def _check_help(name: str, parser: argparse.ArgumentParser) -> None:
    """Description, a help text for every argument, the default of every flag that takes a value;
    nested sub-commands (``mmray data ingest``) likewise."""
    assert parser.prog == f"mmray {name}"
    assert parser.description and len(parser.description) > 30, name
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                _check_help(f"{name} {sub_name}", sub)
            continue
        if not action.option_strings:  # a positional: described, no default to state
            assert action.help, f"mmray {name} {action.dest}: no help text"
            continue
        flag = action.option_strings[-1]
        assert action.help, f"mmray {name} {flag}: no help text"
        if action.nargs != 0 and not action.required:  # optional flags that take a value state their default
            assert "default" in action.help, f"mmray {name} {flag}: help does not state the default"


def test_every_command_is_an_argparse_subparser_with_complete_help():
    commands = _subparsers(build_parser())
    assert list(commands) == [c.NAME for c in COMMANDS] == ["solve", "backtest", "simulate", "tune", "train", "export",
                                                            "data"]
    for name, parser in commands.items():
        _check_help(name, parser)


@pytest.mark.parametrize(("command", "files"), [
    ("solve", ("policy/", "quotes.png", "solution.json")),
    ("backtest", ("results.json", "pnl_distribution.png", "comparison.png", "paths_<strategy>.png")),
    ("simulate", ("paths.csv", "paths.png")),
])
def test_out_help_lists_the_files_written(command, files):
    out = next(a for a in command_parser(command)._actions if "--out" in a.option_strings)
    for name in files:
        assert name in out.help


def test_tune_is_parsed_like_the_other_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["tune", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: mmray tune") and "--storage" in text and "--num-cpus" in text
    args = build_parser().parse_args(["tune", "--sweep", "hparams", "--num-samples", "3"])
    assert (args.command, args.sweep, args.num_samples) == ("tune", "hparams", 3)
    line = _error(capsys, ["tune", "--sweep", "nonsense"])
    assert line.startswith("mmray tune: error: argument --sweep: invalid choice")


def test_bare_mmray_prints_the_help_and_exits_2(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: mmray") and all(name in out for name in ("solve", "backtest", "simulate", "tune"))
    proc = subprocess.run([sys.executable, "-m", "mmray"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "commands:" in proc.stdout


def test_python_m_mmray_tune_is_mmray_tune():
    proc = subprocess.run([sys.executable, "-m", "mmray.tune", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: mmray tune")


# --------------------------------------------------------------------------- solver flags


def test_solver_flag_methods_are_derived_from_the_solver_signatures():
    for flag, option in FLAG_OPTIONS.items():
        takes = {m for m in METHODS if option in method_options(m)}
        assert set(OPTION_METHODS[flag]) - {"exact"} == takes - {"exact"}, flag
    # csp takes price_model (a TickGrid field): the old hand-written table said pi only
    parser = argparse.ArgumentParser()
    add_solver_flags(parser)
    opts = solver_options("csp", parser.parse_args(["--price-model", "binomial", "--n-steps", "10"]))
    assert opts == {"price_model": "binomial", "n_steps": 10}


# --------------------------------------------------------------------------- --policy DIR of `mmray solve --out DIR`


def test_backtest_policy_takes_the_solve_out_directory(capsys, tmp_path):
    assert main(["solve", "--T", "60", "--q-max", "5", "--out", str(tmp_path / "glft"), "--json"]) == 0
    capsys.readouterr()
    results = []
    for where in (tmp_path / "glft", tmp_path / "glft" / "policy"):
        assert main(["backtest", "--policy", str(where), *SMALL, "--local", "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["pnl_mean"] == results[1]["pnl_mean"] and results[0]["problem"]["q_max"] == 5
    assert "the --out directory of `mmray solve`" in " ".join(
        a.help for a in command_parser("backtest")._actions if "--policy" in a.option_strings)


# --------------------------------------------------------------------------- no hang, no conflicting flags


@pytest.mark.parametrize(("argv", "message"), [
    (["backtest", "--workers", "0"], "argument --workers: expected an integer >= 1, got '0'"),
    (["backtest", "--workers", "-1"], "argument --workers: expected an integer >= 1, got '-1'"),
    (["tune", "--num-cpus", "0"], "argument --num-cpus: expected an integer >= 1, got '0'"),
    (["backtest", "--local", "--address", "auto", *SMALL], "--local and --address cannot be combined"),
    (["backtest", "--local", "--workers", "2", *SMALL], "--local and --workers cannot be combined"),
    (["simulate", "--strategy", "as", "--strategy", "constant"], "simulate runs one strategy, got --strategy as "
                                                                 "--strategy constant"),
    (["tune", "--name", "../../escape"], "argument --name: expected a single directory name"),
    (["tune", "--name", "a/b"], "argument --name: expected a single directory name"),
])
def test_bad_worker_counts_and_conflicting_flags_are_refused(capsys, argv, message):
    assert message in _error(capsys, argv)


def test_tune_mc_workers_without_mc_ray_is_refused(capsys, tmp_path):
    assert main(["tune", "--smoke", "--mc-workers", "2", "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--mc-workers 2 sizes the Monte Carlo tasks of --mc-ray" in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["backtest", "--strategy", "as", *SMALL], ["tune", "--smoke", "-q"]])
def test_an_unreachable_cluster_fails_fast_with_one_line(command, tmp_path):
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mmray", *command, "--address", "127.0.0.1:1",
                           *(["--storage", str(tmp_path)] if command[0] == "tune" else [])],
                          capture_output=True, text=True, timeout=120)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Ray cluster at '127.0.0.1:1'" in lines[0], proc.stderr
    assert proc.stdout.count("\n") <= 1  # tune prints no summary (nothing ran)


def test_a_silent_address_is_given_up_after_the_time_limit():
    from mmray.distributed import _time_limit

    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="gave up connecting to X after 0 s"):
        with _time_limit(0.3, "connecting to X"):
            time.sleep(10)  # stands for ray.init retrying inside C++
    assert time.monotonic() - t0 < 5
    with _time_limit(5.0, "nothing"):  # a block that ends in time is not interrupted later
        pass
    time.sleep(0.1)


# --------------------------------------------------------------------------- all or nothing on disk


def test_out_that_is_a_file_is_refused_before_any_work(capsys, tmp_path, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the backtest ran before --out was checked")

    monkeypatch.setattr(importlib.import_module("mmray.backtest"), "backtest", no_work)
    target = tmp_path / "results"
    target.write_text("mine")
    line = _error(capsys, ["backtest", "--strategy", "as", *SMALL, "--local", "--out", str(target)])
    assert line == f"mmray backtest: error: {target}: exists and is not a directory"
    assert target.read_text() == "mine"
    line = _error(capsys, ["backtest", "--strategy", "as", *SMALL, "--out", str(target / "sub")])
    assert str(target) in line and ".staging" not in line


def test_tune_storage_is_checked_before_ray(capsys, tmp_path):
    storage = tmp_path / "file"
    storage.write_text("")
    assert main(["tune", "--smoke", "-q", "--storage", str(storage)]) == 2
    err = capsys.readouterr().err
    assert err == f"mmray tune: error: --storage {storage}: exists and is not a directory\n"
    import ray

    assert not ray.is_initialized()


def test_a_failed_backtest_leaves_nothing(capsys, tmp_path, monkeypatch):
    import mmray.plots

    def disk_full(metrics, path, keys, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(mmray.plots, "plot_comparison_table", disk_full)
    out = tmp_path / "runs" / "bt"
    line = _error(capsys, ["backtest", "--strategy", "as", "--strategy", "constant", *SMALL, "--local",
                           "--out", str(out)])
    # the error names the user's path, not the staging directory
    assert line == f"mmray backtest: error: {out / 'comparison.png'}: No space left on device"
    assert not (tmp_path / "runs").exists()  # nor the parent it created
    assert list(tmp_path.iterdir()) == []


def test_a_failed_solve_leaves_an_existing_out_as_it_was(capsys, tmp_path, monkeypatch):
    out = tmp_path / "glft"
    assert main(["solve", "--T", "60", "--q-max", "5", "--out", str(out)]) == 0
    capsys.readouterr()
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    import mmray.plots

    def broken(*args, **kwargs):
        raise ValueError("plot failed")

    monkeypatch.setattr(mmray.plots, "plot_quote_surface", broken)
    _error(capsys, ["solve", "--T", "60", "--q-max", "3", "--out", str(out)])
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["glft"]  # no staging directory left
    monkeypatch.undo()
    # a second successful solve replaces the first one's files
    assert main(["solve", "--T", "60", "--q-max", "3", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoint"] == str(out / "policy")
    assert json.loads((out / "solution.json").read_text())["problem"]["q_max"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["policy", "quotes.png", "solution.json"]


def test_staging_dir_publishes_once_and_refuses_foreign_directories(tmp_path):
    target = tmp_path / "a" / "b"
    with staging_dir(target) as stage:
        assert stage.parent == tmp_path / "a" and stage.name.startswith(".b.")
        (stage / "x.txt").write_text("1")
        assert not target.exists()
    assert (target / "x.txt").read_text() == "1" and sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]
    (target / "keep.txt").write_text("mine")
    (target / "d").mkdir()
    (target / "d" / "foreign").write_text("mine")
    with pytest.raises(FileExistsError) as exc, staging_dir(target) as stage:
        (stage / "x.txt").write_text("2")
        (stage / "d").mkdir()
        (stage / "d" / "new").write_text("2")
    assert exc.value.filename == str(target / "d")
    assert (target / "x.txt").read_text() == "1" and (target / "d" / "foreign").exists()
    with staging_dir(target) as stage:
        (stage / "x.txt").write_text("3")
    assert (target / "x.txt").read_text() == "3" and (target / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]


def test_check_writable_dir_names_the_users_path(tmp_path):
    check_writable_dir(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("")
    for path, named in ((tmp_path / "f", tmp_path / "f"), (tmp_path / "f" / "x", tmp_path / "f")):
        with pytest.raises(NotADirectoryError) as exc:
            check_writable_dir(path)
        assert Path(exc.value.filename) == named


@pytest.mark.parametrize(("argv", "warning"), [
    (["--A", "1e12"], "fills saturate: A dt exp(-k dtilde) = 3.12e+09"),
    (["--tick", "1000"], "tick 1000 is not below the mid 100"),
])
def test_absurd_but_valid_regimes_run_with_a_one_line_warning(capsys, argv, warning):
    assert main(["backtest", "--T", "5", "--paths", "50", "--local", "--json", *argv]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"mmray backtest: warning: {warning}")


def test_statistics_need_two_paths_and_recorded_paths_must_fit(capsys):
    err = _error(capsys, ["backtest", "--paths", "1", "--T", "5", "--local"])
    assert "--paths 1: a backtest's statistics (standard deviations, standard errors, Sharpe) need at least 2" in err
    err = _error(capsys, ["simulate", "--paths", "1000000", "--T", "600", "--dt", "0.001", "--local"])
    assert "recording every path: --paths 1000000 recorded paths x 600001 time points" in err and "GiB" in err

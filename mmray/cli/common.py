"""What every command shares: the parser class, console output and the all-or-nothing ``--out``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NoReturn

from mmray.io import staging_dir, to_jsonable

#: a command's work: ``(parsed flags, staging directory of --out or None) -> results``
Work = Callable[[argparse.Namespace, "Path | None"], dict[str, Any]]


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def fail(args: argparse.Namespace, exc: BaseException) -> NoReturn:
    """Exit with status 2 and one line on stderr naming the command and what went wrong."""
    if isinstance(exc, OSError) and exc.filename:
        text = f"{exc.filename}: {exc.strerror or exc}"
    else:
        text = str(exc) or type(exc).__name__
    print(f"mmray {args.command}: error: {' '.join(text.split())}", file=sys.stderr)
    raise SystemExit(2)


def log(args: argparse.Namespace, text: str) -> None:
    """Console output of results: stdout, or stderr when stdout carries ``--json``. Inside
    :func:`run_with_output` it is held back until the command has succeeded (a failed command
    prints its error line only)."""
    held = getattr(args, "_held_output", None)
    if held is not None:
        held.append(text)
    else:
        print(text, file=sys.stderr if getattr(args, "json", False) else sys.stdout)


def format_table(rows: dict[str, dict[str, float]], keys: Sequence[str]) -> str:
    """Rows of numbers under a header of ``keys``."""
    width = max(12, *(len(n) for n in rows))
    head = f"{'strategy':<{width}} " + " ".join(f"{k:>13}" for k in keys)
    lines = [head, "-" * len(head)]
    for name, m in rows.items():
        lines.append(f"{name:<{width}} " + " ".join(f"{m.get(k, float('nan')):>13.4g}" for k in keys))
    return "\n".join(lines)


def args_jsonable(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed flags as JSON values (provenance of what a command wrote)."""
    return to_jsonable({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                        if k != "run" and not k.startswith("_")})


def run_with_output(args: argparse.Namespace, work: Work) -> int:
    """Run ``work`` with ``--out`` staged (created before the work, published only if it succeeds),
    then print what it logged and ``--json``. ``ValueError``/``OSError`` become one line on stderr
    and exit status 2, with nothing written and no results printed."""
    args._held_output = []
    try:
        with staging_dir(args.out) if args.out is not None else nullcontext(None) as stage:
            out = work(args, stage)
    except (ValueError, OSError) as exc:  # validation errors name the field and value; unwritable --out, ...
        fail(args, exc)
    held, args._held_output = args._held_output, None
    for text in held:
        log(args, text)
    if args.json:
        print(json.dumps(to_jsonable(out), allow_nan=False))
    return 0


@contextmanager
def ray_session_scope() -> Iterator[None]:
    """Shut down, on the way out, a Ray session that the command started (none was running when it
    began): a command called in-process (tests, notebooks) leaves Ray as it found it."""
    import ray

    running = ray.is_initialized()
    try:
        yield
    finally:
        if not running and ray.is_initialized():
            ray.shutdown()

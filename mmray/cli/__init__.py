"""The ``mmray`` command line (also ``python -m mmray``): one module per command.

Commands::

    mmray solve     --method exact [model flags] [--out DIR] [--json]
    mmray backtest  --strategy optimal --strategy as ... | --policy DIR  [model/sim flags] [--out DIR] [--json]
    mmray simulate  --strategy optimal [--paths 1] [--out DIR] [--json]
    mmray tune      ...   (same as ``python -m mmray.tune``)
    mmray train     --algo {ppo,sac} --time-budget SECONDS --out DIR [--resume DIR] [--json]
    mmray export    RUN_OR_CHECKPOINT --out DIR
    mmray data      ingest --source {lobster,binance,binance-vision} FILE... --out DATASET | info DATASET

Model flags are named after the parameters (``--sigma --A --k --drift --trade-size --tick
--s0 --gamma --T --q-max --objective --terminal-penalty``); simulation flags ``--dt --paths
--seed --price-model --fill-model --chunk-size --q0``; Ray flags ``--address --workers --local``
(:mod:`mmray.cli.flags` holds every shared group). ``--q-max none`` means unbounded (closed-form
strategies only). ``--json`` prints exactly one JSON object on stdout (progress and tables go to
stderr then). ``--out DIR`` is all or nothing: the files are written to a staging directory beside
``DIR`` and moved into it only when the command succeeds.

Exit status: 0 on success; 2 for any invalid flag, value or file, with one line on stderr
(``mmray <command>: error: ...``) and nothing written. ``mmray`` alone prints this help on stdout
and exits with 2. ``mmray tune`` has its own statuses (see ``mmray tune --help``).

A command is a module with ``NAME``, ``add_parser(subparsers)`` (which sets ``run``) and
``run(args) -> int``, listed once in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mmray.cli import backtest, data, export, simulate, solve, train, tune
from mmray.cli.common import Parser

#: the command modules, in the order ``mmray --help`` lists them
COMMANDS = (solve, backtest, simulate, tune, train, export, data)


def build_parser() -> argparse.ArgumentParser:
    """The ``mmray`` parser with one sub-parser per command of :data:`COMMANDS`."""
    from mmray import __version__

    parser = Parser(prog="mmray", description="Optimal market making with inventory constraints, on Ray.",
                    epilog="`mmray COMMAND --help` describes each command. Exit status: 0 on success, 2 for "
                           "an invalid flag, value or file (one line on stderr, nothing written).")
    parser.add_argument("--version", action="version", version=f"mmray {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def command_parser(name: str) -> argparse.ArgumentParser:
    """The sub-parser of command ``name`` (its ``prog`` is ``mmray <name>``)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mmray`` (the console script) and ``python -m mmray``; returns the exit status.

    Invalid flags and values exit with status 2 (``SystemExit``) after one line on stderr.
    """
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command is None:  # bare `mmray`
        parser.print_help()
        return 2
    return args.run(args)


__all__ = ["COMMANDS", "build_parser", "command_parser", "main"]

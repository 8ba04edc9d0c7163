"""``python -m mmray.tune``: the ``mmray tune`` command (:mod:`mmray.cli.tune`)."""

from mmray.cli.tune import build_parser, load_requested_spec, main

__all__ = ["build_parser", "load_requested_spec", "main"]

if __name__ == "__main__":
    raise SystemExit(main())

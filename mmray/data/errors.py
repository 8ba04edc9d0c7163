"""The one error type every loader raises for bad input."""

from __future__ import annotations

import os

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad or inconsistent input data.

    The message names the file, the 1-based line number (when one applies) and what was
    expected, e.g. ``AAPL_..._message_1.csv:17: expected 6 columns, got 5``.

    Parameters
    ----------
    path : str or os.PathLike or None
        The file the problem is in (``None`` for a problem that is not tied to one file).
    line : int or None
        1-based line number inside `path` (for a zip member: inside the member).
    message : str
        What was found and what was expected.
    """

    def __init__(self, path: str | os.PathLike[str] | None, line: int | None, message: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.reason = message
        where = self.path or "<data>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")

"""Atomic file output: write to a temporary sibling, then rename into place.

A reader never sees a half-written results file or plot, even if the writer is killed; a command
that writes several files stages them in one directory (:func:`staging_dir`) and publishes them
only when it succeeds.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def default_mode(directory: bool = False) -> int:
    """The mode an ordinary new file (or directory) gets under the current umask.

    ``tempfile.mkstemp`` / ``mkdtemp`` create private (0600 / 0700) entries; outputs renamed into
    place from them get this mode instead.
    """
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` to ``path``; cleans up on failure.

    The result gets an ordinary file's permissions (``mkstemp`` would leave it private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy types; non-finite floats become ``None`` (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON atomically."""
    return atomic_write_text(path, json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n")


def check_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Refuse ``path`` unless it is, or can be created as, a directory this process can write.

    Nothing is created: the nearest existing ancestor is probed with a temporary sub-directory
    (removed at once), so a read-only file system is caught as well as a missing permission.
    Raises ``OSError`` whose ``filename`` is ``path`` or that ancestor (never the probe).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(path))
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is not a directory", str(existing))
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".mmray-probe-", dir=existing))
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror or str(exc), str(existing)) from None
    return path


@contextmanager
def staging_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """All-or-nothing output directory: yield an empty staging directory beside ``target``; when the
    block succeeds, move its contents into ``target``; when it raises, remove it (and the parents of
    ``target`` it created), leaving the file system as it was.

    ``target`` absent or empty: the staging directory is renamed onto it (one rename). ``target``
    holding files: each staged entry replaces the entry of that name (a file, or a directory that
    holds nothing but the names the staged one holds, e.g. an earlier run's checkpoint); any other
    clash is refused before anything is moved. The staging directory is created on entry, so an
    unwritable ``target`` fails before any work. An ``OSError`` or ``ValueError`` raised inside the
    block that names a staged path is re-raised naming the path under ``target`` instead.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(target))
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".staging", dir=target.parent))
    except BaseException:
        _remove_empty(created)
        raise
    try:
        try:
            yield stage
        except (OSError, ValueError) as exc:
            _rename_paths(exc, stage, target)
            raise
        _commit(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        _remove_empty(created)
        raise


def _commit(stage: Path, target: Path) -> None:
    """Move the staged output into ``target`` (see :func:`staging_dir`)."""
    os.chmod(stage, default_mode(directory=True))
    if not target.exists() or not any(target.iterdir()):
        os.replace(stage, target)
        return
    entries = sorted(stage.iterdir())
    for new in entries:  # every clash is checked before anything moves
        old = target / new.name
        if old.is_dir() and not (new.is_dir() and {p.name for p in old.iterdir()} <= {p.name for p in new.iterdir()}):
            raise FileExistsError(errno.EEXIST, "exists and holds files this command did not write; "
                                  "choose another directory or remove it", str(old))
        if old.exists() and not old.is_dir() and new.is_dir():
            raise FileExistsError(errno.EEXIST, "exists and is not a directory", str(old))
    for new in entries:
        old = target / new.name
        if old.is_dir():
            aside = Path(tempfile.mkdtemp(prefix=f".{new.name}.old-", dir=target))
            os.replace(old, aside / new.name)
            os.replace(new, old)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(new, old)
    stage.rmdir()


def _rename_paths(exc: BaseException, stage: Path, target: Path) -> None:
    """Make ``exc`` name ``target`` where it names the staging directory ``stage``."""
    def fix(value: Any) -> Any:
        return value.replace(str(stage), str(target)) if isinstance(value, str) else value

    if isinstance(exc, OSError):
        exc.filename, exc.filename2 = fix(exc.filename), fix(exc.filename2)
    else:
        exc.args = tuple(fix(a) for a in exc.args)


def _remove_empty(directories: list[Path]) -> None:
    """Remove ``directories`` (deepest first) where they are still empty."""
    for d in directories:
        try:
            d.rmdir()
        except OSError:
            pass

"""Reading a sweep file's text into Python data: YAML or JSON, a key given twice being an error.

Every error is a :class:`~mmray.tuning.spec.SweepConfigError` naming the file and, for a syntax
error, the line and column. :func:`mmray.tuning.config.load_spec` validates what this returns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmray.tuning.spec import SweepConfigError


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` object hook: a key given twice in one object is an error, not "last one wins"."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


_LOADER: Any = None


def _unique_key_loader() -> Any:
    """A ``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last one
    silently); the error is a ``MarkedYAMLError`` with the line and column of the second one."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<' merges may be overridden
                continue
            key = loader.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the default constructor reports it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"duplicate key {key!r} (first given on line {first + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    _LOADER = UniqueKeyLoader
    return _LOADER


def read_sweep_file(path: Path) -> Any:
    """The parsed content of a YAML (``.yaml``/``.yml``) or JSON (``.json``) file; ``None`` if empty."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepConfigError(f"{source}: no such sweep file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepConfigError(f"{source}: cannot read: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise SweepConfigError(f"{source}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}") from None
        except _DuplicateKey as exc:
            raise SweepConfigError(f"{source}: invalid JSON: duplicate key {exc.key!r} in one object") from None
    else:
        import yaml

        try:
            data = yaml.load(text, Loader=_unique_key_loader())  # a SafeLoader subclass
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
            raise SweepConfigError(f"{source}: {where}invalid YAML: {exc.problem}") from None
        except yaml.YAMLError as exc:
            raise SweepConfigError(f"{source}: invalid YAML: {exc}") from None
    return data

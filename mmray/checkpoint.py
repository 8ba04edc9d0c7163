"""Policy checkpoints: a directory with ``policy.json`` and ``arrays.npz``, no pickle.

Layout of ``policy.json``::

    {
      "format": "mmray-policy",
      "format_version": 2,
      "kind": "table" | "closed_form" | ...,
      "market": {...MarketParams} | null,
      "problem": {...ProblemParams} | null,
      "params": {...kind-specific scalars},
      "features": [names of the market features the policy reads beyond (t, q, s)],
      "arrays": {"name": {"dtype": "float64", "shape": [..]}, ...},
      "arrays_sha256": "<hex digest of arrays.npz>",
      "provenance": {"solver"|"algorithm": ..., "config": ..., "seed": ..., "metrics": ...,
                     "mmray_version": ..., "created_utc": ...},
      "meta_sha256": "<hex digest of the other fields, canonical JSON>"
    }

``arrays.npz`` is read with ``allow_pickle=False``. Loading checks the format tag and version,
the kind, the presence and JSON type of every key, the digest of ``policy.json``'s own content
(``meta_sha256``: sorted keys, compact separators) and of the arrays file (edits, tampering or
truncation of either), that the arrays present are exactly those declared and those the kind
needs, their dtype and shape against the kind's contract, that float arrays are finite, and
that the grids lie inside the saved problem (times in ``[0, T]``, inventories in ``[-Q, Q]``).
Every failure raises :class:`CheckpointError` naming the file and the field.

Version history: 1 had no ``meta_sha256``; 2 adds it; 3 moves what a table policy knows about itself
into its ``params`` (``solved_for``: the discrete problem a pi/csp table was solved on, which decides
tick handling) instead of the solver's name in ``provenance``. Older versions are refused (save the
policy again with this mmray).

Saving is atomic: files are written into a temporary sibling directory that is renamed into
place, so an interrupted save never leaves a half-written checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmray.features import policy_features
from mmray.io import default_mode, to_jsonable
from mmray.registry import POLICY_KINDS

if TYPE_CHECKING:
    from mmray.policy import Policy

FORMAT = "mmray-policy"
FORMAT_VERSION = 3
META_FILE = "policy.json"
ARRAYS_FILE = "arrays.npz"
_REQUIRED = ("format", "format_version", "kind", "market", "problem", "params", "features", "arrays",
             "arrays_sha256", "provenance", "meta_sha256")
# JSON type of each field (None allowed where the tuple holds type(None))
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "format": (str,), "format_version": (int,), "kind": (str,), "market": (dict, type(None)),
    "problem": (dict, type(None)), "params": (dict,), "features": (list,), "arrays": (dict,), "arrays_sha256": (str,),
    "provenance": (dict,), "meta_sha256": (str,),
}
_JSON_NAMES = {str: "a string", int: "an integer", dict: "an object", list: "an array", type(None): "null"}


class CheckpointError(ValueError):
    """A policy checkpoint is missing, malformed, inconsistent or tampered with."""


def _version() -> str:
    from mmray import __version__

    return __version__


def save_policy(policy: Policy, directory: str | os.PathLike[str], provenance: dict[str, Any] | None = None) -> Path:
    """Write ``policy`` as a checkpoint directory (atomically). Returns the directory path.

    ``provenance`` entries are merged over the policy's own provenance. An existing
    checkpoint at ``directory`` (a directory holding only ``policy.json`` and ``arrays.npz``)
    is replaced; any other existing non-empty directory is an error, so that no file of the
    user's is deleted with it.
    """
    directory = Path(directory)
    if type(policy).kind not in POLICY_KINDS:
        raise CheckpointError(f"cannot save policy of unregistered kind {type(policy).kind!r}")
    if directory.exists():
        if not directory.is_dir():
            raise CheckpointError(f"{directory}: exists and is not a directory; refusing to overwrite")
        names = {p.name for p in directory.iterdir()}
        others = sorted(names - {META_FILE, ARRAYS_FILE})
        if names and (META_FILE not in names or others):
            what = f"also holds {others[:3]}" if META_FILE in names else "is not a policy checkpoint"
            raise CheckpointError(f"{directory}: exists and {what}; refusing to overwrite "
                                  "(choose another directory or remove it)")
    meta, arrays = policy.to_checkpoint()
    prov = dict(meta.get("provenance") or {})
    prov.update(provenance or {})
    prov.setdefault("mmray_version", _version())
    prov.setdefault("created_utc", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    buf = io.BytesIO()
    np.savez(buf, **{name: np.asarray(a) for name, a in arrays.items()})
    blob = buf.getvalue()
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": type(policy).kind,
        "market": meta.get("market"),
        "problem": meta.get("problem"),
        "params": meta.get("params", {}),
        "features": list(policy_features(policy)),
        "arrays": {n: {"dtype": str(np.asarray(a).dtype), "shape": list(np.shape(a))} for n, a in arrays.items()},
        "arrays_sha256": hashlib.sha256(blob).hexdigest(),
        "provenance": prov,
    }
    doc = json.loads(json.dumps(to_jsonable(doc), allow_nan=False))  # exactly what a reader will parse
    doc["meta_sha256"] = meta_digest(doc)
    text = json.dumps(doc, indent=2, allow_nan=False)

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        (tmp / ARRAYS_FILE).write_bytes(blob)
        (tmp / META_FILE).write_text(text + "\n")
        os.chmod(tmp, default_mode(directory=True))
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def meta_digest(doc: dict[str, Any]) -> str:
    """sha256 of ``doc`` without its ``meta_sha256`` field, as canonical JSON (sorted keys, compact)."""
    body = {k: v for k, v in doc.items() if k != "meta_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_types(path: Path, doc: dict[str, Any]) -> None:
    """Every field has its JSON type, and ``arrays`` maps names to ``{"dtype": str, "shape": [int]}``."""
    for key, types in _FIELD_TYPES.items():
        value = doc[key]
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join(_JSON_NAMES[t] for t in types)
            raise CheckpointError(f"{path}: field {key!r} must be {expected}, got {value!r}")
    for name, decl in doc["arrays"].items():
        ok = isinstance(decl, dict) and isinstance(decl.get("dtype"), str) and isinstance(decl.get("shape"), list)
        ok = ok and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in decl["shape"])
        if not ok:
            raise CheckpointError(f"{path}: field 'arrays.{name}' must be an object "
                                  f'{{"dtype": <string>, "shape": [<int>, ...]}}, got {decl!r}')
    if not all(isinstance(name, str) and name for name in doc["features"]):
        raise CheckpointError(f"{path}: field 'features' must be an array of feature names, got {doc['features']!r}")


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (a checkpoint directory holds {META_FILE} and {ARRAYS_FILE})")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not a UTF-8 text file") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: expected a JSON object at the top level")
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{path}: field 'format' is {doc.get('format')!r}, expected {FORMAT!r}")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {doc.get('format_version')!r} is not supported "
            f"(this mmray reads version {FORMAT_VERSION}; save the policy again with this mmray)"
        )
    for key in _REQUIRED:
        if key not in doc:
            raise CheckpointError(f"{path}: missing key {key!r}")
    _check_types(path, doc)
    if meta_digest(doc) != doc["meta_sha256"]:
        raise CheckpointError(
            f"{path}: content does not match its 'meta_sha256' (the file was edited or corrupted; "
            "a checkpoint is written by mmray.save_policy, not by hand)"
        )
    if doc["kind"] not in POLICY_KINDS:
        known = sorted(POLICY_KINDS.names())
        raise CheckpointError(f"{path}: unknown policy kind {doc['kind']!r}; known: {known} (a third-party "
                              "kind registers with mmray.registry.register_policy_kind or an 'mmray.policy_kinds' "
                              "entry point)")
    try:
        POLICY_KINDS.get(doc["kind"])
    except ImportError as exc:
        raise CheckpointError(f"{path}: policy kind {doc['kind']!r} is declared by an installed package "
                              f"that fails to import: {exc}") from None
    return doc


def _check_arrays(path: Path, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    cls = POLICY_KINDS.get(doc["kind"])
    spec: dict[str, tuple[str, tuple[str, ...]]] = cls.array_spec
    declared = doc["arrays"]
    for name in spec:
        if name not in arrays:
            raise CheckpointError(f"{path}: array {name!r} missing (kind {doc['kind']!r} needs {sorted(spec)})")
    unknown = sorted(set(arrays) - set(spec))
    if unknown:
        raise CheckpointError(f"{path}: unexpected array(s) {unknown} (kind {doc['kind']!r} has {sorted(spec)})")
    if set(declared) != set(arrays):
        raise CheckpointError(f"{path}: holds arrays {sorted(arrays)}, policy.json declares {sorted(declared)}")
    for name, arr in arrays.items():
        if list(arr.shape) != declared[name]["shape"]:
            raise CheckpointError(
                f"{path}: array {name!r} has shape {list(arr.shape)}, policy.json declares {declared[name]['shape']}"
            )
        if str(arr.dtype) != declared[name]["dtype"]:
            raise CheckpointError(
                f"{path}: array {name!r} has dtype {arr.dtype}, policy.json declares {declared[name]['dtype']}"
            )
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise CheckpointError(f"{path}: array {name!r} contains non-finite values")
    dims: dict[str, int] = {}
    for name, (kind, shape) in spec.items():
        arr = arrays[name]
        if arr.dtype.kind != kind:
            raise CheckpointError(f"{path}: array {name!r} has dtype {arr.dtype}, expected kind {kind!r}")
        if arr.ndim != len(shape):
            raise CheckpointError(f"{path}: array {name!r} has {arr.ndim} dimensions, expected {len(shape)} {shape}")
        for axis, (dim, size) in enumerate(zip(shape, arr.shape, strict=True)):
            if dims.setdefault(dim, size) != size:
                raise CheckpointError(
                    f"{path}: array {name!r} axis {axis} has length {size}, expected {dim}={dims[dim]}"
                )


def load_policy(directory: str | os.PathLike[str]) -> Policy:
    """Load any saved policy from ``directory``; raises :class:`CheckpointError` on any problem."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        hint = " (pass the directory that holds it)" if directory.name in (META_FILE, ARRAYS_FILE) else ""
        raise CheckpointError(f"{directory}: is a file, not a checkpoint directory{hint}")
    if not directory.is_dir():
        leftovers = sorted(directory.parent.glob(f".{directory.name}.old-*")) if directory.parent.is_dir() else []
        hint = (f" (a save that was interrupted while replacing it left {leftovers[-1].name}: the previous "
                "checkpoint; rename it back to use it)") if leftovers else ""
        raise CheckpointError(f"{directory}: no such checkpoint directory{hint}")
    doc = _read_meta(directory / META_FILE)
    npz_path = directory / ARRAYS_FILE
    if not npz_path.is_file():
        raise CheckpointError(f"{npz_path}: missing")
    blob = npz_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != doc["arrays_sha256"]:
        raise CheckpointError(
            f"{npz_path}: sha256 does not match policy.json 'arrays_sha256' (file modified or corrupted)"
        )
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{npz_path}: cannot read arrays without pickle: {exc}") from None
    _check_arrays(npz_path, doc, arrays)
    try:
        policy = POLICY_KINDS.get(doc["kind"]).from_checkpoint(doc, arrays)
    except KeyError as exc:
        raise CheckpointError(f"{directory / META_FILE}: missing field {exc.args[0]!r}") from None
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{directory / META_FILE}: invalid content: {exc}") from None
    if list(policy_features(policy)) != doc["features"]:
        raise CheckpointError(f"{directory / META_FILE}: field 'features' is {doc['features']}, but the "
                              f"{doc['kind']!r} policy it holds reads {list(policy_features(policy))}")
    _check_grids_in_problem(directory, policy)
    return policy


def _check_grids_in_problem(directory: Path, policy: Policy) -> None:
    """A tabulated policy's grids lie inside its saved problem: times in [0, T], |q| <= Q."""
    problem = getattr(policy, "problem", None)
    times, q_grid = getattr(policy, "times", None), getattr(policy, "q_grid", None)
    if problem is None or times is None or q_grid is None:
        return
    tol = 1e-9 * max(1.0, problem.T)
    if times[0] < -tol or times[-1] > problem.T + tol:
        raise CheckpointError(f"{directory / ARRAYS_FILE}: array 'times' spans [{times[0]:g}, {times[-1]:g}], "
                              f"outside [0, T={problem.T:g}] of policy.json's problem")
    if problem.q_max is not None and np.max(np.abs(q_grid)) > problem.q_max * (1 + 1e-12):
        raise CheckpointError(f"{directory / ARRAYS_FILE}: array 'q_grid' spans [{q_grid[0]:g}, {q_grid[-1]:g}], "
                              f"outside [-Q, Q] with Q={problem.q_max} of policy.json's problem")

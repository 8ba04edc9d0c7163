"""Policy checkpoints: a directory with ``policy.json`` and ``arrays.npz``, no pickle.

Layout of ``policy.json``::

    {
      "format": "mmray-policy",
      "format_version": 1,
      "kind": "table" | "closed_form" | ...,
      "market": {...MarketParams} | null,
      "problem": {...ProblemParams} | null,
      "params": {...kind-specific scalars},
      "arrays": {"name": {"dtype": "float64", "shape": [..]}, ...},
      "arrays_sha256": "<hex digest of arrays.npz>",
      "provenance": {"solver"|"algorithm": ..., "config": ..., "seed": ..., "metrics": ...,
                     "mmray_version": ..., "created_utc": ...}
    }

``arrays.npz`` is read with ``allow_pickle=False``. Loading checks the format tag and version,
the kind, the presence of every key, the digest of the arrays file (tampering or
truncation), the dtype and shape of every array against the kind's contract, and that float
arrays are finite. Every failure raises :class:`CheckpointError` naming the file and the field.

Saving is atomic: files are written into a temporary sibling directory that is renamed into
place, so an interrupted save never leaves a half-written checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mmray.io import default_mode, to_jsonable
from mmray.policy import POLICY_KINDS, Policy

FORMAT = "mmray-policy"
FORMAT_VERSION = 1
META_FILE = "policy.json"
ARRAYS_FILE = "arrays.npz"
_REQUIRED = ("format", "format_version", "kind", "market", "problem", "params", "arrays",
             "arrays_sha256", "provenance")


# policy kinds defined outside mmray.policy, imported only when a checkpoint of that kind is loaded
# (importing mmray.solvers pulls in OR-Tools, which plain backtests do not need)
LAZY_KINDS = {"random_table": "mmray.solvers.random_policy"}


class CheckpointError(ValueError):
    """A policy checkpoint is missing, malformed, inconsistent or tampered with."""


def _version() -> str:
    from mmray import __version__

    return __version__


def save_policy(policy: Policy, directory: str | os.PathLike[str], provenance: dict[str, Any] | None = None) -> Path:
    """Write ``policy`` as a checkpoint directory (atomically). Returns the directory path.

    ``provenance`` entries are merged over the policy's own provenance. An existing
    checkpoint at ``directory`` is replaced; any other existing non-empty directory is an error.
    """
    directory = Path(directory)
    if type(policy).kind not in POLICY_KINDS:
        raise CheckpointError(f"cannot save policy of unregistered kind {type(policy).kind!r}")
    if directory.exists() and (not directory.is_dir() or (
        any(directory.iterdir()) and not (directory / META_FILE).exists()
    )):
        raise CheckpointError(f"{directory}: exists and is not a policy checkpoint; refusing to overwrite")
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
        "arrays": {n: {"dtype": str(np.asarray(a).dtype), "shape": list(np.shape(a))} for n, a in arrays.items()},
        "arrays_sha256": hashlib.sha256(blob).hexdigest(),
        "provenance": prov,
    }
    text = json.dumps(to_jsonable(doc), indent=2, allow_nan=False)

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
    for key in _REQUIRED:
        if key not in doc:
            raise CheckpointError(f"{path}: missing key {key!r}")
    if doc["format"] != FORMAT:
        raise CheckpointError(f"{path}: field 'format' is {doc['format']!r}, expected {FORMAT!r}")
    if doc["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {doc['format_version']!r} is not supported "
            f"(this mmray reads version {FORMAT_VERSION})"
        )
    if doc["kind"] not in POLICY_KINDS and doc["kind"] in LAZY_KINDS:
        importlib.import_module(LAZY_KINDS[doc["kind"]])  # registers the kind
    if doc["kind"] not in POLICY_KINDS:
        raise CheckpointError(f"{path}: unknown policy kind {doc['kind']!r}; known: {sorted(POLICY_KINDS)}")
    return doc


def _check_arrays(path: Path, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    cls = POLICY_KINDS[doc["kind"]]
    spec: dict[str, tuple[str, tuple[str, ...]]] = cls.array_spec
    declared = doc["arrays"]
    for name in spec:
        if name not in arrays:
            raise CheckpointError(f"{path}: array {name!r} missing (kind {doc['kind']!r} needs {sorted(spec)})")
    for name, arr in arrays.items():
        if name in declared and list(arr.shape) != list(declared[name].get("shape", [])):
            raise CheckpointError(
                f"{path}: array {name!r} has shape {list(arr.shape)}, "
                f"policy.json declares {declared[name].get('shape')}"
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
        return POLICY_KINDS[doc["kind"]].from_checkpoint(doc, arrays)
    except KeyError as exc:
        raise CheckpointError(f"{directory / META_FILE}: missing field {exc.args[0]!r}") from None
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{directory / META_FILE}: invalid content: {exc}") from None

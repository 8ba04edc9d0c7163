"""Policy checkpoints: round trips for every kind and every rejection path."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

from mmray import CheckpointError, ClosedFormPolicy, load_policy, make_strategy, save_policy
from mmray.checkpoint import ARRAYS_FILE, META_FILE, meta_digest
from mmray.params import ProblemParams


@pytest.fixture
def table(glft_market):
    return make_strategy("optimal", glft_market, ProblemParams(gamma=0.01, T=60.0, q_max=5), n_times=61)


def _quotes(policy, t=12.3):
    q = np.arange(-5, 6, dtype=float)
    return policy.quotes(t, q, np.full(q.shape, 100.0))


def test_table_round_trip(tmp_path, table):
    path = save_policy(table, tmp_path / "ckpt", provenance={"seed": 7, "metrics": {"sharpe": np.float64(1.5)}})
    loaded = load_policy(path)
    assert type(loaded) is type(table)
    for name in ("times", "q_grid", "bid", "ask", "bid_on", "ask_on"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(table, name))
    for a, b in zip(_quotes(loaded), _quotes(table), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.market == table.market and loaded.problem == table.problem
    prov = loaded.provenance
    assert prov["solver"] == "exact" and prov["seed"] == 7 and prov["metrics"]["sharpe"] == 1.5
    assert prov["mmray_version"] and prov["created_utc"]
    meta = json.loads((path / META_FILE).read_text())
    assert meta["format_version"] == 3 and meta["kind"] == "table"  # 3: solved_for and features
    assert meta["params"] == {"interpolation": "linear", "solved_for": None} and meta["features"] == []
    assert meta["arrays"]["bid"]["shape"] == [61, 11]


@pytest.mark.parametrize("name", ["as", "symmetric", "constant", "inventory"])
def test_closed_form_round_trip(tmp_path, glft_market, glft_problem, name):
    policy = make_strategy(name, glft_market, glft_problem)
    loaded = load_policy(policy.save(tmp_path / name))
    assert isinstance(loaded, ClosedFormPolicy) and loaded.name == name
    for a, b in zip(_quotes(loaded), _quotes(policy), strict=True):
        np.testing.assert_array_equal(a, b)


def test_arrays_load_without_pickle(tmp_path, table):
    path = save_policy(table, tmp_path / "c")
    with np.load(path / ARRAYS_FILE, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["ask", "ask_on", "bid", "bid_on", "q_grid", "times"]


def test_overwrite_existing_checkpoint_but_not_other_dirs(tmp_path, table, glft_market, glft_problem):
    path = save_policy(table, tmp_path / "c")
    save_policy(make_strategy("as", glft_market, glft_problem), path)
    assert load_policy(path).kind == "closed_form"
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temp dirs left behind
    other = tmp_path / "data"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(CheckpointError, match="not a policy checkpoint; refusing to overwrite"):
        save_policy(table, other)
    # a checkpoint directory that also holds a file of the user's is not replaced (that would delete it)
    (path / "notes.md").write_text("mine")
    with pytest.raises(CheckpointError, match=r"also holds \['notes.md'\]; refusing to overwrite"):
        save_policy(table, path)
    assert (path / "notes.md").read_text() == "mine" and load_policy(path).kind == "closed_form"


def _edit_meta(path, fn, rehash=True):
    """Edit policy.json; with ``rehash`` its digest is recomputed (a consistent but wrong file)."""
    meta = json.loads((path / META_FILE).read_text())
    fn(meta)
    if rehash:
        meta["meta_sha256"] = meta_digest(meta)
    (path / META_FILE).write_text(json.dumps(meta))


def _rewrite_arrays(path, fn):
    """Replace arrays.npz with modified arrays and a matching digest (a consistent but wrong file)."""
    import hashlib

    with np.load(path / ARRAYS_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files}
    fn(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (path / ARRAYS_FILE).write_bytes(buf.getvalue())
    declared = {n: {"dtype": str(a.dtype), "shape": list(a.shape)} for n, a in arrays.items()}
    _edit_meta(path, lambda m: m.update(arrays_sha256=hashlib.sha256(buf.getvalue()).hexdigest(), arrays=declared))


REJECTIONS = [
    ("missing dir", lambda p: None, "no such checkpoint directory"),
    ("no json", lambda p: (p / META_FILE).unlink(), r"policy.json: missing"),
    ("a file", lambda p: None, r"policy.json: is a file, not a checkpoint directory \(pass the directory"),
    ("bad json", lambda p: (p / META_FILE).write_text('{"format": \n oops'), r"invalid JSON at line 2 column 2"),
    ("not object", lambda p: (p / META_FILE).write_text("[1, 2]"), "expected a JSON object"),
    ("wrong format", lambda p: _edit_meta(p, lambda m: m.update(format="other")), "field 'format' is 'other'"),
    ("wrong version", lambda p: _edit_meta(p, lambda m: m.update(format_version=99)),
     "format_version 99 is not supported"),
    ("unknown kind", lambda p: _edit_meta(p, lambda m: m.update(kind="oracle")), "unknown policy kind 'oracle'"),
    ("missing key", lambda p: _edit_meta(p, lambda m: m.pop("provenance")), "missing key 'provenance'"),
    ("no npz", lambda p: (p / ARRAYS_FILE).unlink(), "arrays.npz: missing"),
    ("tampered", lambda p: (p / ARRAYS_FILE).write_bytes((p / ARRAYS_FILE).read_bytes()[:-10] + b"0123456789"),
     "sha256 does not match"),
    ("missing array", lambda p: _rewrite_arrays(p, lambda a: a.pop("ask")), "array 'ask' missing"),
    ("wrong shape", lambda p: _rewrite_arrays(p, lambda a: a.update(bid=a["bid"][:, :-1])),
     "array 'bid' axis 1 has length 10, expected n=11"),
    ("declared shape", lambda p: _edit_meta(p, lambda m: m["arrays"]["bid"].update(shape=[61, 10])),
     r"array 'bid' has shape \[61, 11\], policy.json declares \[61, 10\]"),
    ("non-finite", lambda p: _rewrite_arrays(p, lambda a: a["bid"].__setitem__((0, 0), np.nan)),
     "array 'bid' contains non-finite values"),
    ("wrong dtype", lambda p: _rewrite_arrays(p, lambda a: a.update(bid_on=a["bid_on"].astype(float))),
     "array 'bid_on' has dtype float64, expected kind 'b'"),
    ("bad params", lambda p: _edit_meta(p, lambda m: m["market"].update(sigma=-1)),
     r"invalid content: MarketParams\.sigma must be a finite number > 0, got -1"),
    ("edited json", lambda p: _edit_meta(p, lambda m: m["problem"].update(q_max=30), rehash=False),
     r"policy.json: content does not match its 'meta_sha256' \(the file was edited"),
    ("version as bool", lambda p: _edit_meta(p, lambda m: m.update(format_version=True)),
     "format_version True is not supported"),
    ("arrays null", lambda p: _edit_meta(p, lambda m: m.update(arrays=None)),
     "field 'arrays' must be an object, got None"),
    ("arrays string", lambda p: _edit_meta(p, lambda m: m.update(arrays="times bid")),
     "field 'arrays' must be an object, got 'times bid'"),
    ("array entry", lambda p: _edit_meta(p, lambda m: m["arrays"].update(times=5)),
     r"field 'arrays.times' must be an object \{\"dtype\": <string>, \"shape\": \[<int>, ...\]\}, got 5"),
    ("kind list", lambda p: _edit_meta(p, lambda m: m.update(kind=["table"])),
     r"field 'kind' must be a string, got \['table'\]"),
    ("problem list", lambda p: _edit_meta(p, lambda m: m.update(problem=[1])),
     r"field 'problem' must be an object or null, got \[1\]"),
    ("declared dtype", lambda p: _edit_meta(p, lambda m: m["arrays"]["bid"].update(dtype="float32")),
     "array 'bid' has dtype float64, policy.json declares float32"),
    ("undeclared array", lambda p: _edit_meta(p, lambda m: m["arrays"].pop("ask_on")),
     r"holds arrays \[.*'ask_on'.*\], policy.json declares"),
    ("unexpected array", lambda p: _rewrite_arrays(p, lambda a: a.update(extra=np.zeros(3))),
     r"unexpected array\(s\) \['extra'\]"),
    ("q grid outside Q", lambda p: _edit_meta(p, lambda m: m["problem"].update(q_max=3)),
     r"array 'q_grid' spans \[-5, 5\], outside \[-Q, Q\] with Q=3"),
    ("times outside T", lambda p: _edit_meta(p, lambda m: m["problem"].update(T=30.0)),
     r"array 'times' spans \[0, 60\], outside \[0, T=30\]"),
    ("interpolation", lambda p: _edit_meta(p, lambda m: m["params"].update(interpolation="cubic")),
     "TablePolicy.interpolation must be one of linear, previous; got 'cubic'"),
    ("no interpolation", lambda p: _edit_meta(p, lambda m: m["params"].pop("interpolation")),
     "missing field 'params.interpolation'"),
]


@pytest.mark.parametrize(("label", "damage", "message"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections(tmp_path, table, label, damage, message):
    path = save_policy(table, tmp_path / "ckpt")
    if label == "missing dir":
        path = tmp_path / "nope"
    elif label == "a file":
        path = path / META_FILE
    else:
        damage(path)
    with pytest.raises(CheckpointError, match=message):
        load_policy(path)


CLOSED_FORM_REJECTIONS = [
    ("negative half-spread", {"half_spread": -1.0},
     r"ClosedFormPolicy\.half_spread must be a finite number > 0, got -1"),
    ("bool half-spread", {"half_spread": True}, r"ClosedFormPolicy\.half_spread must be a finite number > 0, got True"),
    ("string skew", {"skew": "0.1"}, r"ClosedFormPolicy\.skew must be a finite number, got '0\.1'"),
    ("name", {"name": ["as"]}, r"unknown closed-form strategy \['as'\]"),
]


@pytest.mark.parametrize(("label", "params", "message"), CLOSED_FORM_REJECTIONS,
                         ids=[r[0] for r in CLOSED_FORM_REJECTIONS])
def test_closed_form_rejections(tmp_path, glft_market, glft_problem, label, params, message):
    path = save_policy(make_strategy("inventory", glft_market, glft_problem), tmp_path / "ckpt")
    _edit_meta(path, lambda m: m["params"].update(params))
    with pytest.raises(CheckpointError, match=message):
        load_policy(path)


def test_pickled_object_arrays_are_refused(tmp_path, table):
    """An npz holding an object array (which needs pickle) is refused, not unpickled."""
    import hashlib

    path = save_policy(table, tmp_path / "ckpt")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        payload = io.BytesIO()
        np.save(payload, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
        zf.writestr("bid.npy", payload.getvalue())
    (path / ARRAYS_FILE).write_bytes(buf.getvalue())
    _edit_meta(path, lambda m: m.update(arrays_sha256=hashlib.sha256(buf.getvalue()).hexdigest()))
    with pytest.raises(CheckpointError, match="cannot read arrays without pickle"):
        load_policy(path)


def test_outputs_get_ordinary_permissions(tmp_path, table):
    """Temp files are private (0600/0700); checkpoints renamed from them must not stay private."""
    import os
    import stat

    from mmray.io import atomic_write_text, default_mode

    path = save_policy(table, tmp_path / "ckpt")
    assert stat.S_IMODE(os.stat(path).st_mode) == default_mode(directory=True)
    for name in (META_FILE, ARRAYS_FILE):
        assert stat.S_IMODE(os.stat(path / name).st_mode) == default_mode()
    text = atomic_write_text(tmp_path / "r.json", "{}")
    assert stat.S_IMODE(os.stat(text).st_mode) == default_mode()


def test_a_save_interrupted_while_replacing_points_to_the_previous_checkpoint(tmp_path, table):
    # the moment between moving the old directory aside and moving the new one in
    path = save_policy(table, tmp_path / "ckpt")
    os.replace(path, tmp_path / ".ckpt.old-4242")
    with pytest.raises(CheckpointError, match=r"no such checkpoint directory \(a save that was interrupted .* left "
                                              r"\.ckpt\.old-4242: the previous checkpoint; rename it back"):
        load_policy(path)
    os.replace(tmp_path / ".ckpt.old-4242", path)
    assert load_policy(path).kind == "table"

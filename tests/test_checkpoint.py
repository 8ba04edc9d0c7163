"""Policy checkpoints: round trips for every kind and every rejection path."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

from mmray import CheckpointError, ClosedFormPolicy, load_policy, make_strategy, save_policy
from mmray.checkpoint import ARRAYS_FILE, META_FILE
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
    assert meta["format_version"] == 1 and meta["kind"] == "table"
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


def _edit_meta(path, fn):
    meta = json.loads((path / META_FILE).read_text())
    fn(meta)
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
    _edit_meta(path, lambda m: m.update(arrays_sha256=hashlib.sha256(buf.getvalue()).hexdigest()))


REJECTIONS = [
    ("missing dir", lambda p: None, "no such checkpoint directory"),
    ("no json", lambda p: (p / META_FILE).unlink(), r"policy.json: missing"),
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
     "array 'bid' has shape"),
    ("non-finite", lambda p: _rewrite_arrays(p, lambda a: a["bid"].__setitem__((0, 0), np.nan)),
     "array 'bid' contains non-finite values"),
    ("wrong dtype", lambda p: _rewrite_arrays(p, lambda a: a.update(bid_on=a["bid_on"].astype(float))),
     "array 'bid_on' has dtype float64, expected kind 'b'"),
    ("bad params", lambda p: _edit_meta(p, lambda m: m["market"].update(sigma=-1)),
     r"invalid content: MarketParams\.sigma must be a finite number > 0, got -1"),
]


@pytest.mark.parametrize(("label", "damage", "message"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections(tmp_path, table, label, damage, message):
    path = save_policy(table, tmp_path / "ckpt")
    if label == "missing dir":
        path = tmp_path / "nope"
    else:
        damage(path)
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

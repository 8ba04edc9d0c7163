"""A sweep on a local 2-node cluster (``ray.cluster_utils.Cluster``, 1 CPU per node)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mmray.tuning.config import spec_from_dict
from mmray.tuning.runner import RunOptions, run_sweep, start_ray

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    started, _ = start_ray(RunOptions(address=c.address))  # what --address HOST:PORT does
    assert started and ray.is_initialized()
    yield c
    ray.shutdown()
    c.shutdown()


def _spec(**resources: object):
    return spec_from_dict({"sweep": {
        "kind": "risk-aversion", "problem": {"T": 600, "q_max": 10},
        "sim": {"n_paths": 20000, "chunk_size": 5000}, "strategies": ["optimal", "as"],
        "grid": {"gamma": [0.001, 0.01, 0.1]}, "resources": resources,
    }}, source="<cluster test>")


def test_sweep_spreads_over_both_nodes(cluster, tmp_path: Path) -> None:
    import ray

    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2 and ray.cluster_resources()["CPU"] == 2
    # One full CPU per trial: Tune reserves one placement group per pending trial, and two 1-CPU
    # groups fit only on different nodes. Without actor reuse each trial keeps the node of its own
    # group; with reuse, an actor that finished on a fast node can take every later trial while the
    # other node's worker is still starting (seen once on a loaded CI machine).
    summary = run_sweep(_spec(cpus_per_trial=1.0, reuse_actors=False),
                        RunOptions(storage=str(tmp_path), name="c", verbose=0))
    df = summary.table
    assert len(df) == 6 and (df["status"] == "ok").all()
    trials = json.loads((tmp_path / "c" / "trials.json").read_text())["trials"]
    used = {t["node_id"] for t in trials}
    assert used == nodes

    # one trial's Monte Carlo chunks as Ray tasks in 2 one-CPU bundles spread over the nodes:
    # same numbers as the local run, and the chunks did run on both nodes
    big = run_sweep(_spec(mc_ray=True, mc_workers=2), RunOptions(storage=str(tmp_path), name="mc", verbose=0))
    pd.testing.assert_frame_equal(big.table, df)
    assert _chunk_task_nodes(expected=nodes) == nodes


def _chunk_task_nodes(expected: set[str], timeout: float = 15.0) -> set[str]:
    """Nodes that ran ``simulate_chunk`` tasks, from the task events Ray keeps in GCS (an internal
    API: no dashboard needed). Workers send their events about once a second: wait for them."""
    import time

    from ray._private.state import state

    deadline = time.monotonic() + timeout
    while True:
        seen = {e.state_updates.node_id.hex() for e in state._get_all_task_events()
                if e.task_info.name == "simulate_chunk" and e.state_updates.node_id}
        if seen >= expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)

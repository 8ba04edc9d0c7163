"""A sweep on a local 2-node cluster (``ray.cluster_utils.Cluster``, 1 CPU per node)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from ray import tune

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


class BundleNodes(tune.Callback):
    """Records, when each trial starts, the nodes of the CPU bundles of the placement groups that are
    placed then (a trial's resources are reserved before it starts; Ray's public placement group table)."""

    def __init__(self) -> None:
        self.seen: list[set[str]] = []

    def on_trial_start(self, iteration: int, trials: list, trial: object, **info: object) -> None:
        from ray.util import placement_group_table

        for pg in placement_group_table().values():
            if pg["state"] == "CREATED":
                cpu = [i for i, b in pg["bundles"].items() if b.get("CPU", 0) > 0]
                self.seen.append({pg["bundles_to_node_id"][i] for i in cpu})


def test_sweep_spreads_over_both_nodes(cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from mmray.tuning import runner

    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2 and ray.cluster_resources()["CPU"] == 2
    # One full CPU per trial on 1-CPU nodes: two trials at once can only be on different nodes. Without
    # actor reuse each trial runs in its own placement group, on that group's node.
    bundles = BundleNodes()
    monkeypatch.setattr(runner, "_extra_callbacks", lambda: [bundles])
    summary = run_sweep(_spec(cpus_per_trial=1.0, reuse_actors=False),
                        RunOptions(storage=str(tmp_path), name="c", verbose=0))
    df = summary.table
    assert len(df) == 6 and (df["status"] == "ok").all()
    trials = json.loads((tmp_path / "c" / "trials.json").read_text())["trials"]
    used = {t["node_id"] for t in trials}  # where each trial says it ran
    assert used <= nodes and set().union(*bundles.seen) == used
    assert used == nodes

    # one trial's Monte Carlo chunks as Ray tasks in 2 one-CPU bundles (PACK: on two 1-CPU nodes they
    # can only be on both): the trial's tasks run in its bundles, and the numbers equal the local run's
    mc = BundleNodes()
    monkeypatch.setattr(runner, "_extra_callbacks", lambda: [mc])
    big = run_sweep(_spec(mc_ray=True, mc_workers=2), RunOptions(storage=str(tmp_path), name="mc", verbose=0))
    pd.testing.assert_frame_equal(big.table, df)
    assert len(mc.seen) == 6 and all(seen == nodes for seen in mc.seen)

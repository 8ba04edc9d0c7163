"""clusters/aws.yaml is a valid Ray cluster-launcher config (no cloud calls)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

CONFIG = Path(__file__).resolve().parents[1] / "clusters" / "aws.yaml"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def test_validates_against_the_schema_in_the_ray_wheel(config: dict) -> None:
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    broken = {**config, "max_worker": 3}  # a typo is rejected: the schema allows no extra keys
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_ray_prepares_and_validates_it(config: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head" and set(types) == {"head", "cpu_worker"}
    assert types["cpu_worker"]["max_workers"] >= 1 and types["cpu_worker"]["resources"]["CPU"] > 0
    assert "GPU" not in types["head"]["resources"] and "GPU" not in types["cpu_worker"]["resources"]


def test_setup_installs_pinned_torch_then_mmray(config: dict) -> None:
    cmds = config["setup_commands"]
    torch = next(i for i, c in enumerate(cmds) if "torch==2.13.0" in c)
    mmray = next(i for i, c in enumerate(cmds) if "~/mmray" in c and "pip install" in c)
    assert torch < mmray
    assert config["file_mounts"]["~/mmray"] == "."
    assert "ray[default,tune,data,rllib]==2.60.0" in cmds[mmray]
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head  # reached through `ray dashboard clusters/aws.yaml`

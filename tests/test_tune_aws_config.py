"""clusters/aws.yaml is a valid Ray cluster-launcher config (no cloud calls)."""

from __future__ import annotations

import copy
import json
import tomllib
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


def _ray_aws_default(name: str) -> str:
    """A string constant of ray/autoscaler/_private/aws/config.py (``RAY + "-v1"``...), read with
    ``ast`` without importing the module (it needs boto3)."""
    import ast

    import ray.autoscaler

    source = (Path(ray.autoscaler.__file__).parent / "_private" / "aws" / "config.py").read_text()
    values: dict[str, str] = {}

    def value(node: ast.expr) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return value(node.left) + value(node.right)
        raise KeyError(ast.dump(node))

    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = value(node.value)
            except KeyError:
                continue
    return values[name]


def test_workers_get_an_instance_profile_for_s3_storage(config: dict) -> None:
    """Trials upload their checkpoints to --storage s3://... from the node they ran on: workers need
    an instance profile. The head gets Ray's default one, which the worker names."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    types = prepared["available_node_types"]
    worker = types["cpu_worker"]["node_config"]["IamInstanceProfile"]
    assert set(worker) == {"Name"}  # boto3 IamInstanceProfileSpecification: Name or Arn
    default = _ray_aws_default("DEFAULT_RAY_INSTANCE_PROFILE")
    assert default == "ray-autoscaler-v1" == _ray_aws_default("DEFAULT_RAY_IAM_ROLE")
    assert worker["Name"] == default
    # the head's node type names none, so `ray up` creates and attaches the default profile (and role)
    assert "IamInstanceProfile" not in types["head"]["node_config"]
    # the one-time iam:PassRole grant the head's role needs to launch such workers is documented
    text = CONFIG.read_text()
    assert "iam:PassRole" in text and f"role/{default}" in text and "put-role-policy" in text
    docs = (CONFIG.parents[1] / "docs" / "tuning.md").read_text()
    assert "iam:PassRole" in docs and "IamInstanceProfile" in docs


def _check_setup():
    """scripts/check_setup.py as a module (scripts/ is not a package)."""
    import importlib.util

    path = CONFIG.parents[1] / "scripts" / "check_setup.py"
    spec = importlib.util.spec_from_file_location("check_setup", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_setup_installs_pinned_cpu_torch_then_mmray(config: dict) -> None:
    """The same torch pin as the Makefile, from the CPU wheel index (PyPI's Linux wheel pulls the
    CUDA packages), alone and before anything that could install another torch; one Ray version for
    the image and the setup. (Whether the installed torch and Ray are these versions is a fact about
    the machine: scripts/check_setup.py, which `make test` runs, checks it.)"""
    import shlex

    makefile = (CONFIG.parents[1] / "Makefile").read_text()
    check = _check_setup()
    version = check.makefile_torch_pin(makefile)  # the Makefile installs one pinned torch before mmray
    assert makefile.index(f"torch=={version}") < makefile.index("pip install -e")

    cmds = config["setup_commands"]
    torch = [i for i, c in enumerate(cmds) if "torch" in c]
    assert len(torch) == 1, cmds
    tokens = shlex.split(cmds[torch[0]])
    assert tokens[:4] == ["python", "-m", "pip", "install"]
    assert tokens[tokens.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert "--extra-index-url" not in tokens  # would let pip take the CUDA build from PyPI
    packages = [t for t in tokens[4:] if not t.startswith("-") and t != "https://download.pytorch.org/whl/cpu"]
    assert packages == [f"torch=={version}"]  # exactly pinned, nothing else from that index

    mmray = next(i for i, c in enumerate(cmds) if "~/mmray" in c and "pip install" in c)
    assert torch[0] < mmray
    for later in cmds[torch[0] + 1:]:  # nothing afterwards may replace the CPU build
        assert not {"--upgrade", "-U", "--force-reinstall", "--upgrade-strategy"} & set(shlex.split(later)), later
    deps = " ".join(tomllib.loads((CONFIG.parents[1] / "pyproject.toml").read_text())["project"]["dependencies"])
    assert "torch" not in deps  # `pip install -e ~/mmray` keeps the torch installed first
    assert config["file_mounts"]["~/mmray"] == "."
    pins = check.cluster_ray_pins(config)
    assert set(pins) == {"docker.image", f"setup_commands[{mmray}]"} and len(set(pins.values())) == 1, pins
    assert f"ray[default,tune,data,rllib]=={pins['docker.image']}" in shlex.split(cmds[mmray])
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head  # reached through `ray dashboard clusters/aws.yaml`


def test_setup_check_compares_the_installed_versions_with_the_pins(config: dict) -> None:
    check = _check_setup()
    makefile = (CONFIG.parents[1] / "Makefile").read_text()
    torch, ray = check.makefile_torch_pin(makefile), check.cluster_ray_pins(config)["docker.image"]
    assert check.findings(makefile, config, {"torch": f"{torch}+cpu", "ray": ray}.__getitem__) == []
    found = check.findings(makefile, config, {"torch": "2.0.1", "ray": "9.9.9"}.__getitem__)
    assert found[0].startswith(f"FAIL torch 2.0.1 is installed, the Makefile pins torch=={torch}")
    wheres = check.cluster_ray_pins(config)
    assert [f.split(":")[0] for f in found[1:]] == [
        f"FAIL ray 9.9.9 is installed, clusters/aws.yaml {where} pins {ray}" for where in wheres]
    # `make test` runs the check before pytest
    assert "scripts/check_setup.py" in makefile.split("\ntest:")[1].split("\n\n")[0]

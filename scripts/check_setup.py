"""Setup check: the installed environment matches the pins the repository declares.

These are facts about the machine, not about the code, so they are checked here (``make test``
runs this before pytest; ``make check-setup`` alone) instead of in the unit tests:

* the installed torch is the version the Makefile pins (``pip install "torch==X"``, CPU build);
* the installed Ray is the version the cluster config pins (``clusters/aws.yaml``: the docker
  image ``rayproject/ray:X-py311-cpu`` and the ``ray[...]==X`` of its setup commands), so that a
  sweep written here runs on the cluster's Ray.

Exit status 0 when everything matches, 1 otherwise (one line per finding, with the fix).
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def makefile_torch_pin(makefile: str) -> str:
    """The torch version the Makefile installs (exactly one ``pip install "torch==X"``)."""
    pins = re.findall(r'pip install "torch==([0-9][0-9.]*)"', makefile)
    if len(pins) != 1:
        raise ValueError(f"the Makefile should install one pinned torch, found {pins}")
    return pins[0]


def cluster_ray_pins(config: Mapping[str, Any]) -> dict[str, str]:
    """The Ray versions ``clusters/aws.yaml`` pins: its docker image and its setup commands."""
    pins: dict[str, str] = {}
    image = re.fullmatch(r"rayproject/ray:([0-9][0-9.]*)-py\d+-cpu", str(config.get("docker", {}).get("image", "")))
    if image:
        pins["docker.image"] = image.group(1)
    for i, command in enumerate(config.get("setup_commands", [])):
        for token in shlex.split(command):
            found = re.fullmatch(r"ray(\[[a-z,]+\])?==([0-9][0-9.]*)", token)
            if found:
                pins[f"setup_commands[{i}]"] = found.group(2)
    return pins


def findings(makefile: str, config: Mapping[str, Any], installed: Callable[[str], str]) -> list[str]:
    """What does not match, as ``FAIL ...`` lines (empty: all good); ``installed(name)`` is the version
    of an installed distribution (``importlib.metadata.version``)."""
    out = []
    pin = makefile_torch_pin(makefile)
    torch = installed("torch").split("+")[0]
    if torch != pin:
        out.append(f"FAIL torch {torch} is installed, the Makefile pins torch=={pin}: rerun `make clean test` "
                   f"or `pip install \"torch=={pin}\" --index-url https://download.pytorch.org/whl/cpu`")
    ray = installed("ray")
    pins = cluster_ray_pins(config)
    if not pins:
        out.append("FAIL clusters/aws.yaml pins no Ray version (docker image rayproject/ray:X-py311-cpu, ray==X)")
    for where, version in pins.items():
        if version != ray:
            out.append(f"FAIL ray {ray} is installed, clusters/aws.yaml {where} pins {version}: a sweep run here "
                       f"would meet another Ray on the cluster; update the pins or install ray=={version}")
    return out


def main() -> int:
    makefile = (ROOT / "Makefile").read_text()
    config = yaml.safe_load((ROOT / "clusters" / "aws.yaml").read_text())
    problems = findings(makefile, config, importlib.metadata.version)
    for line in problems:
        print(f"setup check: {line}", file=sys.stderr)
    if not problems:
        print(f"setup check: ok (torch {importlib.metadata.version('torch')}, ray {importlib.metadata.version('ray')}"
              " as pinned)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

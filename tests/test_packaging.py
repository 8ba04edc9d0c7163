"""The wheel: every package of the source tree is in it under its ``mmray.*`` name and imports from it.

The wheel is built (``pip wheel --no-deps --no-build-isolation``) from a copy of the sources, with
one extra sub-package added under each mapped directory, so the test also shows that a new
sub-package needs no edit of pyproject.toml.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: package name -> source directory (pyproject.toml's [tool.setuptools.package-dir])
PACKAGE_DIRS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
PROBE = "zz_packaging_probe"  # the sub-package added to the copy under each directory


def _packages(root: Path) -> set[str]:
    """Package names of every directory holding an ``__init__.py`` under the mapped directories of ``root``."""
    return {".".join((name, *init.parent.relative_to(root / directory).parts))
            for name, directory in PACKAGE_DIRS.items() for init in (root / directory).rglob("__init__.py")}


def _modules(root: Path) -> set[str]:
    """Every ``.py`` file under the mapped directories of ``root``, as the path it installs to."""
    return {"/".join((*name.split("."), *py.relative_to(root / directory).parts))
            for name, directory in PACKAGE_DIRS.items() for py in (root / directory).rglob("*.py")}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(copy of the sources, wheel)``."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for directory in PACKAGE_DIRS.values():
        shutil.copytree(ROOT / directory, src / directory, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (src / directory / PROBE).mkdir()
        (src / directory / PROBE / "__init__.py").write_text('"""Added by tests/test_packaging.py."""\n')
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index",
                          "-q", "-w", str(tmp / "dist")], cwd=src, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = (tmp / "dist").glob("mmray-*.whl")
    return src, wheel


def test_wheel_holds_every_package_and_module(built: tuple[Path, Path]) -> None:
    src, wheel = built
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {n.removesuffix("/__init__.py").replace("/", ".") for n in names if n.endswith("/__init__.py")}
    expected = _packages(src)
    assert {f"{name}.{PROBE}" for name in PACKAGE_DIRS} <= expected
    assert {"mmray", "mmray.envs", "mmray.solvers", "mmray.tuning"} <= expected
    assert not expected - packages, f"packages missing from the wheel: {sorted(expected - packages)}"
    assert not _modules(src) - names, f"modules missing from the wheel: {sorted(_modules(src) - names)}"


def test_every_package_imports_from_the_wheel_alone(built: tuple[Path, Path], tmp_path: Path) -> None:
    """Only the unpacked wheel and the dependencies on the path (``-S``: not the editable install)."""
    src, wheel = built
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    deps = dict.fromkeys((sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]))
    code = (
        "import importlib, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        out[name] = importlib.import_module(name).__file__\n"
        "    except Exception as exc:\n"
        "        out[name] = f'{type(exc).__name__}: {exc}'\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(site), *deps)), "MPLBACKEND": "Agg"}
    packages = sorted(_packages(src))
    out = subprocess.run([sys.executable, "-S", "-c", code, *packages], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    files = json.loads(out.stdout.strip().splitlines()[-1])
    wrong = {name: f for name, f in files.items() if not str(f).startswith(str(site))}
    assert not wrong, f"not imported from the wheel: {wrong}"

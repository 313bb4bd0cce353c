"""Installed names: the CLI installs as ``taichi_pvd_cli``, never as the global module name
``cli``, and importing it stays light (no Taichi, no torch)."""

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import click

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def test_no_installed_package_takes_the_name_cli():
    assert [p for p in SETUPTOOLS["packages"] if p.split(".")[0] == "cli"] == []
    assert SETUPTOOLS["package-dir"] == {"taichi_pvd_cli": "cli"}
    assert "taichi_pvd_cli" in SETUPTOOLS["packages"]


def test_every_package_of_the_library_is_installed():
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "taichi_pvd").rglob("__init__.py")}
    listed = {p for p in SETUPTOOLS["packages"] if p.split(".")[0] == "taichi_pvd"}
    assert listed == found
    assert [init.parent for init in (REPO / "cli").rglob("__init__.py")] == [REPO / "cli"]


def test_the_pvd_ti_entry_point_is_the_click_group():
    module, _, name = PYPROJECT["project"]["scripts"]["pvd-ti"].partition(":")
    assert module == "taichi_pvd_cli.main"
    assert isinstance(getattr(importlib.import_module(module), name), click.Group)


def test_importing_the_cli_imports_neither_taichi_nor_torch(tmp_path):
    code = ("import sys, taichi_pvd_cli.main; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'taichi', 'torch'}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

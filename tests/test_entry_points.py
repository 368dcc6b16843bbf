"""Every user command exists under both names: `python -m <module>` and its console script."""

from __future__ import annotations

import ast
import importlib.util
import os
import pathlib
import subprocess
import sys
import tomllib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
# The documented `python -m` commands and the console script that runs the same code.
COMMANDS = {
    "mim4d_jax.train": "mim4d-train",
    "mim4d_jax.evaluate": "mim4d-evaluate",
    "mim4d_jax.probe": "mim4d-probe",
    "mim4d_jax.compare": "mim4d-compare",
    "mim4d_jax.export_torch": "mim4d-export",
    "mim4d_jax.import_torch": "mim4d-import",
    "mim4d_jax.torch_ref.verify": "mim4d-verify",
    "data_prep.convert_nuscenes": "mim4d-convert",
    "data_prep.synthetic_nuscenes": "mim4d-synthetic",
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_console_scripts_name_top_level_functions(script):
    """Read, not imported: the absl entry points each define --config/--workdir, so two of
    them cannot share one process (each command is its own process)."""
    module_name, _, attr = SCRIPTS[script].partition(":")
    path = pathlib.Path(importlib.util.find_spec(module_name).origin)
    functions = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
    assert attr in functions, f"{SCRIPTS[script]}: no top-level function {attr!r} in {path}"


def test_every_documented_command_has_its_console_script():
    assert set(COMMANDS.values()) <= set(SCRIPTS)
    for module in COMMANDS:
        assert importlib.util.find_spec(module) is not None, module


@pytest.mark.parametrize("module", ["mim4d_jax.compare", "mim4d_jax.import_torch"])
def test_python_m_help_runs(module):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0 and "usage" in result.stdout.lower(), result.stderr[-2000:]

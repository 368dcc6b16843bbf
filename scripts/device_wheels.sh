#!/usr/bin/env bash
# Fill .device_wheels/ (git-ignored) with the pure-Python wheels that benchmarks/device_suite.sh
# may need on an accelerator host whose image has jax, flax, optax and torch but no network:
# ml_collections (configs), absl-py (logging in the trainer modules) and etils (flax/orbax
# helpers; usually present). The versions are this repository's pins (requirements.txt, and
# the .venv's own for etils). device_suite.sh installs from here only what fails to import.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="${PIP:-.venv/bin/pip}"
[ -x "$PIP" ] || PIP="python3 -m pip"
pin() {  # pin NAME: the version requirements.txt pins, else the one installed in .venv
  local v
  v=$(grep -i -E "^$1==" requirements.txt | head -1 | cut -d= -f3 || true)
  if [ -z "$v" ] && [ -x .venv/bin/python ]; then
    v=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true)
  fi
  if [ -n "$v" ]; then echo "$1==$v"; else echo "$1"; fi
}
mkdir -p .device_wheels
# shellcheck disable=SC2046
$PIP download --no-deps --python-version 3.12 --only-binary=:all: --dest .device_wheels \
  $(pin ml-collections) $(pin absl-py) $(pin etils)
ls -1 .device_wheels

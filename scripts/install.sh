#!/usr/bin/env bash
# Idempotent set-up: creates .venv in the repository and installs the pinned stack into it.
# A second run is a no-op: the stamp records a hash of the requirement files it installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
DEVKIT="nuscenes-devkit==1.2.0"
stamp=.venv/.mim4d_install_stamp
want=$(cat requirements.txt scripts/install.sh | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
  echo "install: .venv is complete (stamp matches), nothing to do"
  exit 0
fi

if [ ! -x .venv/bin/python ]; then
  echo "install: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
echo "install: installing requirements.txt (a few minutes on a fresh machine)"
.venv/bin/python -m pip install --quiet -r requirements.txt
# Separate step: the devkit's numpy<2 pin is wrong for us (see requirements.txt).
.venv/bin/python -m pip install --quiet --no-deps "$DEVKIT"
.venv/bin/python -c "import jax, flax, orbax.checkpoint, tensorflow_datasets, torch, nuscenes" \
  || { echo "install: import check failed" >&2; exit 1; }
echo "$want" > "$stamp"
echo "install: done"

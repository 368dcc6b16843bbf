#!/usr/bin/env bash
# Idempotent set-up: creates .venv in the repository and installs the pinned stack into it.
# A second run is a no-op: the stamp records a hash of the requirement files it installed.
#
# Accelerator hosts: MIM4D_ACCELERATOR=cuda13 | cuda12 | tpu adds the matching jax build
# ("jax[cuda13]==<pinned jax>" etc.) on top of the CPU stack; unset = CPU only.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
DEVKIT="nuscenes-devkit==1.2.0"
stamp=.venv/.mim4d_install_stamp
ACCELERATOR="${MIM4D_ACCELERATOR:-}"
case "$ACCELERATOR" in
  ""|cuda12|cuda13|tpu) ;;
  *) echo "install: MIM4D_ACCELERATOR=$ACCELERATOR is not one of cuda12, cuda13, tpu" >&2; exit 2 ;;
esac
want=$( (cat requirements.txt requirements-beam.txt pyproject.toml scripts/install.sh; echo "$ACCELERATOR") \
  | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ] \
  && [ -x .venv-beam/bin/python ]; then
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
if [ -n "$ACCELERATOR" ]; then
  jax_pin=$(grep -E '^jax==' requirements.txt)
  echo "install: adding ${jax_pin/==/[$ACCELERATOR]==}"
  .venv/bin/python -m pip install --quiet "${jax_pin/==/[$ACCELERATOR]==}"
fi
# The project itself, editable: `import mim4d_jax` and the mim4d-* console scripts work without
# PYTHONPATH (no dependency resolution: the pins above are the environment).
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
.venv/bin/python -c "import jax, flax, orbax.checkpoint, tensorflow_datasets, torch, nuscenes, mim4d_jax" \
  || { echo "install: import check failed" >&2; exit 1; }

# The Beam converter's own environment (apache-beam cannot join .venv: requirements-beam.txt).
if [ ! -x .venv-beam/bin/python ]; then
  "$PYTHON" -m venv .venv-beam
fi
echo "install: installing requirements-beam.txt into .venv-beam"
.venv-beam/bin/python -m pip install --quiet --upgrade pip
.venv-beam/bin/python -m pip install --quiet -r requirements-beam.txt
.venv-beam/bin/python -m pip install --quiet --no-deps "$DEVKIT"
.venv-beam/bin/python -c "import apache_beam, tensorflow_datasets, nuscenes" \
  || { echo "install: .venv-beam import check failed" >&2; exit 1; }
echo "$want" > "$stamp"
echo "install: done"

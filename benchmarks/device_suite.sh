#!/usr/bin/env bash
# The accelerator benchmark suite in one command (benchmarks/device_suite.py says what it
# measures). Runs under the host's own Python: .venv/bin/python where this checkout has one,
# else python3 (or $PYTHON). Pure-Python packages the image lacks are installed from the
# wheels scripts/device_wheels.sh put in .device_wheels/ (no network needed).
#
#   bash benchmarks/device_suite.sh [--smoke] [--out DIR] [--only SECTION ...]
#
# --smoke: the same code on a CPU with the tiny config. The last line printed is the summary
# JSON; every figure is also under DIR (default device_suite_out/).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
for arg in "$@"; do
  [ "$arg" = "--smoke" ] && smoke=1
done

if [ -n "${PYTHON:-}" ]; then
  py="$PYTHON"
elif [ -x .venv/bin/python ]; then
  py=.venv/bin/python
else
  py=python3
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# module:distribution pairs the measured code imports beyond jax/flax/optax/torch.
need=()
for pair in ml_collections:ml-collections absl:absl-py etils:etils; do
  "$py" -c "import ${pair%%:*}" 2>/dev/null || need+=("${pair#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  site=.device_wheels/site
  if ! ls .device_wheels/*.whl >/dev/null 2>&1; then
    echo "missing ${need[*]} and no wheels in .device_wheels/: run scripts/device_wheels.sh" \
      "on a machine with network access and carry the folder here" >&2
    exit 2
  fi
  echo "[device_suite] installing ${need[*]} from .device_wheels into $site" >&2
  if "$py" -m pip --version >/dev/null 2>&1; then
    "$py" -m pip install --quiet --no-index --no-deps --find-links .device_wheels \
      --target "$site" "${need[@]}" >&2
  else  # no pip in the image: pure-Python wheels are zip files of the package tree
    for dist in "${need[@]}"; do
      wheel=$(ls .device_wheels/"${dist//-/_}"-*.whl | head -1)
      "$py" -m zipfile -e "$wheel" "$site"
    done
  fi
  export PYTHONPATH="$PYTHONPATH:$PWD/$site"
fi

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Progress lines as they happen, also when the output is piped into a log.
export PYTHONUNBUFFERED=1
if [ "$smoke" = 1 ]; then
  export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=""
else
  # Room for the largest batch that fits; the PyTorch section runs in its own process later.
  export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}"
fi
exec "$py" -m benchmarks.device_suite "$@"

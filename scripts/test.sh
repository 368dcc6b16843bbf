#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite on 8 fake CPU devices (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh

# Quiet TensorFlow's C++ logging; the tests never use a GPU.
export TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES=""
exec .venv/bin/python -m pytest "$@"

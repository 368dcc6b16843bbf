#!/usr/bin/env bash
# The main job on the embedded synthetic dataset, on a CPU:
#   install -> generate the synthetic nuScenes world -> convert to TFRecords -> evaluate the
#   initial model -> pre-train configs/mim4d_tiny.py -> evaluate again -> export to PyTorch
#   (verified against a golden file) -> summary.
# Everything goes under $DEMO_OUT (default demo_out/); a rerun starts from scratch.
# Extra arguments go to the trainer (e.g. --config.total_steps=100); $DEMO_SYNTH_ARGS to the
# generator (e.g. "--scenes 2 --samples-per-scene 3"); DEMO_LEARNING_CHECK=0 reports the
# learning check without failing on it (the shortened end-to-end test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TF_CPP_MIN_LOG_LEVEL=2
PY=.venv/bin/python
OUT="${DEMO_OUT:-demo_out}"
CONFIG=configs/mim4d_tiny.py
WORKDIR="$OUT/workdir"
start=$(date +%s)
stage() { echo; echo "=== [$(( $(date +%s) - start )) s] $*"; }

rm -rf "$OUT"
mkdir -p "$OUT"

stage "1/6 generating the synthetic nuScenes world -> $OUT/synthetic"
# shellcheck disable=SC2086  # DEMO_SYNTH_ARGS is a list of flags
$PY -m data_prep.synthetic_nuscenes --out "$OUT/synthetic" ${DEMO_SYNTH_ARGS:-}

stage "2/6 converting it to sharded TFRecords -> $OUT/clips"
# Resized offline to the tiny model's input size: the trainer then decodes small JPEGs.
$PY -m data_prep.convert_nuscenes --dataroot "$OUT/synthetic" --version v1.0-mini \
  --out "$OUT/clips" --image-size 160x90 --workers 2
DATA="--config.data.dir=$OUT/clips"

stage "3/6 evaluating the initial model (step 0)"
$PY -m mim4d_jax.evaluate --config "$CONFIG" --workdir "$WORKDIR" --step 0 "$DATA" \
  --depth_gt "$OUT/synthetic" >/dev/null

stage "4/6 pre-training $CONFIG"
$PY -m mim4d_jax.train --config "$CONFIG" --workdir "$WORKDIR" "$DATA" "$@"

stage "5/6 evaluating the trained model"
$PY -m mim4d_jax.evaluate --config "$CONFIG" --workdir "$WORKDIR" "$DATA" \
  --depth_gt "$OUT/synthetic" >/dev/null

stage "6/6 exporting to PyTorch and verifying the export"
$PY -m mim4d_jax.export_torch --workdir "$WORKDIR" --out "$OUT/mim4d_tiny.pth" \
  --golden "$OUT/golden.npz"
$PY -m mim4d_jax.torch_ref.verify --ckpt "$OUT/mim4d_tiny.pth" --golden "$OUT/golden.npz"

stage "done in $(( $(date +%s) - start )) s"
$PY scripts/demo_summary.py --workdir "$WORKDIR" --out "$OUT" \
  --learning-check "${DEMO_LEARNING_CHECK:-1}"

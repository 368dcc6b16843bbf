#!/usr/bin/env bash
# The main job on the embedded synthetic dataset, on a CPU:
#   install -> generate the synthetic nuScenes world -> convert to TFRecords -> evaluate the
#   initial model -> pre-train configs/mim4d_tiny.py -> evaluate again -> export to PyTorch
#   (verified against a golden file) -> BEV vehicle probe (frozen features) of the
#   pre-trained model and of random init -> summary with the learning check.
# Everything goes under $DEMO_OUT (default demo_out/); a rerun starts from scratch.
# Extra arguments go to the trainer (e.g. --config.total_steps=100); $DEMO_SYNTH_ARGS to the
# generator (e.g. "--scenes 2 --samples-per-scene 3"); DEMO_LEARNING_CHECK=0 reports the
# learning check without failing on it (the shortened end-to-end test); $DEMO_PROBE_STEPS
# (default 300, a short probe: the benchmark's is 1000) and $DEMO_PROBE_ARGS go to both probes
# (e.g. --config.checkpoint_every=100); DEMO_GATE=image|probe|pretext picks the
# learning check that is the exit status (scripts/demo_summary.py; default image).
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

stage "1/7 generating the synthetic nuScenes world -> $OUT/synthetic"
# shellcheck disable=SC2086  # DEMO_SYNTH_ARGS is a list of flags
$PY -m data_prep.synthetic_nuscenes --out "$OUT/synthetic" ${DEMO_SYNTH_ARGS:-}

stage "2/7 converting it to sharded TFRecords -> $OUT/clips"
# Resized offline to the tiny model's input size: the trainer then decodes small JPEGs.
$PY -m data_prep.convert_nuscenes --dataroot "$OUT/synthetic" --version v1.0-mini \
  --out "$OUT/clips" --image-size 160x90 --workers 2
DATA="--config.data.dir=$OUT/clips"

stage "3/7 evaluating the initial model (step 0)"
$PY -m mim4d_jax.evaluate --config "$CONFIG" --workdir "$WORKDIR" --step 0 "$DATA" \
  --depth_gt "$OUT/synthetic" >/dev/null
# Random init with another clip's images: the image check's control, in the same run. The
# controls compare LiDAR-ray depth only, so they skip the pixel renders (--lidar_only).
$PY -m mim4d_jax.evaluate --config "$CONFIG" --workdir "$WORKDIR" --step 0 "$DATA" --shuffled \
  --lidar_only >/dev/null

stage "4/7 pre-training $CONFIG"
$PY -m mim4d_jax.train --config "$CONFIG" --workdir "$WORKDIR" "$DATA" "$@"

stage "5/7 evaluating the trained model"
# No --config: the model and data are the workdir's config.json (the trainer's overrides
# included); a --config file would have to match it.
$PY -m mim4d_jax.evaluate --workdir "$WORKDIR" \
  --depth_gt "$OUT/synthetic" >/dev/null
# The same checkpoint with its input images removed (eval/blind/) and with every clip fed
# another clip's images (eval/shuffled/): a scene prior scores the same in all three.
for inputs in --blind --shuffled; do
  $PY -m mim4d_jax.evaluate --workdir "$WORKDIR" "$inputs" --lidar_only >/dev/null
done

stage "6/7 exporting to PyTorch and verifying the export"
$PY -m mim4d_jax.export_torch --workdir "$WORKDIR" --out "$OUT/mim4d_tiny.pth" \
  --golden "$OUT/golden.npz"
$PY -m mim4d_jax.torch_ref.verify --ckpt "$OUT/mim4d_tiny.pth" --golden "$OUT/golden.npz"

stage "7/7 BEV vehicle probe on frozen features: pre-trained vs random init"
for init in pretrained random; do
  src="$WORKDIR"; [ "$init" = random ] && src=random
  # shellcheck disable=SC2086  # DEMO_PROBE_ARGS is a list of flags
  $PY -m mim4d_jax.probe --config configs/probe_bev.py:tiny --workdir "$OUT/probe_$init" \
    --init "$src" --freeze lift "$DATA" --config.total_steps="${DEMO_PROBE_STEPS:-300}" \
    ${DEMO_PROBE_ARGS:-} >/dev/null
done

stage "done in $(( $(date +%s) - start )) s"
$PY scripts/demo_summary.py --workdir "$WORKDIR" --out "$OUT" \
  --probe "$OUT/probe_pretrained/probe/result.json" --random-probe "$OUT/probe_random/probe/result.json" \
  --learning-check "${DEMO_LEARNING_CHECK:-1}" --gate "${DEMO_GATE:-image}"

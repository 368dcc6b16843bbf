#!/usr/bin/env bash
# The main job on the embedded synthetic dataset, on a CPU:
#   install -> generate the synthetic nuScenes world -> convert to TFRecords -> pre-train
#   configs/mim4d_tiny.py -> evaluate the initial and the trained model -> export to PyTorch
#   (verified against a golden file) -> BEV vehicle probe (frozen features) of the
#   pre-trained model and of random init -> summary with the learning check.
# Everything goes under $DEMO_OUT (default demo_out/); a rerun starts from scratch.
# Extra arguments go to the trainer (e.g. --config.total_steps=100) after the demo's own
# --config.data.num_rays=64, so they win; $DEMO_SYNTH_ARGS go to the generator (e.g.
# "--scenes 2 --samples-per-scene 3"); DEMO_LEARNING_CHECK=0 reports the learning check
# without failing on it (the shortened end-to-end test); $DEMO_PROBE_STEPS (default 300, a
# short probe: the benchmark's is 1000) and $DEMO_PROBE_ARGS go to both probes (e.g.
# --config.checkpoint_every=100); DEMO_GATE=image|probe|pretext picks the learning check that
# is the exit status (scripts/demo_summary.py; default image).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh

PY=.venv/bin/python
OUT="${DEMO_OUT:-demo_out}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TF_CPP_MIN_LOG_LEVEL=2
# One compilation cache for the processes of this run (deleted with it): the evaluations
# compile the same function, and so do the two probes (about 5 s saved per reuse here).
export JAX_COMPILATION_CACHE_DIR="$OUT/jax_cache"
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

stage "3/6 pre-training $CONFIG"
# 64 LiDAR/top-up rays per camera instead of the config's 128: the renderer is three quarters
# of a tiny step, so this takes 1.4 s/step instead of 2.1 on the 2-core CPU, and the image
# check ends as with 128 (own / shuffled 0.80 at step 300; benchmarks/README.md, "The demo").
$PY -m mim4d_jax.train --config "$CONFIG" --workdir "$WORKDIR" "$DATA" \
  --config.data.num_rays=64 "$@"

stage "4/6 evaluating the initial model (step 0) and the trained model"
# No --config: the model and data are the workdir's config.json (the trainer's overrides
# included), and step 0 is the trainer's initial parameters (drawn from its seed). Step 0 and
# the controls score LiDAR-ray depth only (--lidar_only: no pixel renders), which is all the
# learning checks compare: random init with its own and with another clip's images (the image
# check's control), then the trained model with its input images removed (eval/blind/) and
# with every clip fed another clip's images (eval/shuffled/); a scene prior scores the same in
# all three. The trained model alone gets the full evaluation (dense depth, PSNR, panels).
$PY -m mim4d_jax.evaluate --workdir "$WORKDIR" --step 0 --lidar_only >/dev/null
$PY -m mim4d_jax.evaluate --workdir "$WORKDIR" --step 0 --shuffled --lidar_only >/dev/null
$PY -m mim4d_jax.evaluate --workdir "$WORKDIR" --depth_gt "$OUT/synthetic" >/dev/null
for inputs in --blind --shuffled; do
  $PY -m mim4d_jax.evaluate --workdir "$WORKDIR" "$inputs" --lidar_only >/dev/null
done

stage "5/6 exporting to PyTorch and verifying the export"
$PY -m mim4d_jax.export_torch --workdir "$WORKDIR" --out "$OUT/mim4d_tiny.pth" \
  --golden "$OUT/golden.npz"
$PY -m mim4d_jax.torch_ref.verify --ckpt "$OUT/mim4d_tiny.pth" --golden "$OUT/golden.npz"

stage "6/6 BEV vehicle probe on frozen features: pre-trained vs random init"
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

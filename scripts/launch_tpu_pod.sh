#!/usr/bin/env bash
# Launch MIM4D pre-training on every worker of a Cloud TPU VM pod slice.
#
# Usage:
#   scripts/launch_tpu_pod.sh [--dry-run] TPU_NAME ZONE WORKDIR [CONFIG] [extra train flags...]
#   --dry-run (or DRY_RUN=1): print the gcloud command line, shell-quoted, and run nothing.
# Example:
#   scripts/launch_tpu_pod.sh mim4d-v5p-64 us-east5-a gs://my-bucket/mim4d_vs01 \
#       configs/mim4d_vs01.py --config.data.dir=gs://my-bucket/nuscenes_clips
#
# The same command runs on all workers (--worker=all). Each worker is one JAX process;
# mim4d_jax.train detects the pod (TPU_WORKER_HOSTNAMES) and calls jax.distributed.initialize()
# with no arguments. WORKDIR must be shared storage (a gs:// bucket) so that every process
# writes its checkpoint shards to the same place and process 0's config.json/metrics are
# visible to all. A preempted slice gets SIGTERM: JAX's preemption sync manager makes all
# workers save at the same step; re-running this script resumes from the latest checkpoint.
#
# Assumes the repository is checked out at REPO_DIR (default ~/mim4d_jax) on every worker with
# its venv installed (MIM4D_ACCELERATOR=tpu bash scripts/install.sh), e.g. via a previous
# `--worker=all --command=...`.
set -euo pipefail

DRY_RUN=${DRY_RUN:-0}
if [[ ${1:-} == --dry-run ]]; then
  DRY_RUN=1
  shift
fi
if [[ $# -lt 3 ]]; then
  sed -n '2,21p' "$0"
  exit 2
fi
TPU_NAME=$1
ZONE=$2
WORKDIR=$3
CONFIG=${4:-configs/mim4d_vs01.py}
shift $(( $# < 4 ? $# : 4 ))
REPO_DIR=${REPO_DIR:-'~/mim4d_jax'}
PROJECT_FLAG=${GCLOUD_PROJECT:+--project=$GCLOUD_PROJECT}

# printf %q keeps extra flags with spaces intact through the remote shell (no flags: nothing,
# not the empty argument '' that printf would make of an empty list).
EXTRA=""
if [[ $# -gt 0 ]]; then
  EXTRA=$(printf ' %q' "$@")
fi
COMMAND="cd ${REPO_DIR} && PYTHONPATH=\$PWD .venv/bin/python -m mim4d_jax.train \
  --config=${CONFIG} --workdir=${WORKDIR}${EXTRA} 2>&1 | tee -a \$HOME/mim4d_train.log"

CMD=(gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}")
if [[ -n ${PROJECT_FLAG} ]]; then
  CMD+=("${PROJECT_FLAG}")
fi
CMD+=(--worker=all --command="${COMMAND}")

if [[ ${DRY_RUN} == 1 ]]; then
  # One line that a shell reads back as exactly this argument vector.
  printf '%q ' "${CMD[@]}" | sed 's/ $//'
  echo
  exit 0
fi
"${CMD[@]}"

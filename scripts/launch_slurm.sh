#!/usr/bin/env bash
# SLURM batch script: MIM4D pre-training on a GPU cluster, one JAX process per GPU.
#
# Usage (edit the #SBATCH lines for your cluster):
#   sbatch scripts/launch_slurm.sh WORKDIR [CONFIG] [extra train flags...]
#   DRY_RUN=1 bash scripts/launch_slurm.sh ...   prints the srun command line and runs nothing
# Example, 2 nodes x 8 GPUs = 16 processes:
#   sbatch --nodes=2 scripts/launch_slurm.sh /shared/runs/mim4d_vs01 configs/mim4d_vs01.py \
#       --config.data.dir=/shared/nuscenes_clips --config.batch_size=16
#
# srun starts one task per GPU; mim4d_jax.train sees SLURM_NTASKS > 1 and calls
# jax.distributed.initialize(), which reads the coordinator, process count and process id from
# SLURM's environment. Each process sees only its own GPU (--gpus-per-task=1, and
# JAX_LOCAL_DEVICE_IDS below). WORKDIR must be on a filesystem shared by all nodes; .venv needs
# the CUDA build of jax (MIM4D_ACCELERATOR=cuda13 bash scripts/install.sh). SLURM sends SIGTERM
# to the tasks before the time limit (--signal below); all processes save a checkpoint at one
# agreed step and exit 0, and `sbatch` again (or --requeue) resumes from it.
# tests/test_slurm.py runs this script under a one-node SLURM (scripts/slurm_localhost.sh).
#SBATCH --job-name=mim4d
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=12
#SBATCH --time=48:00:00
#SBATCH --signal=TERM@300
#SBATCH --requeue
#SBATCH --output=mim4d-%j.out
set -euo pipefail

if [[ $# -lt 1 ]]; then
  sed -n '2,18p' "$0"
  exit 2
fi
WORKDIR=$1
CONFIG=${2:-configs/mim4d_vs01.py}
shift $(( $# < 2 ? $# : 2 ))
REPO_DIR=${REPO_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}
cd "${REPO_DIR}"
export PYTHONPATH="${REPO_DIR}${PYTHONPATH:+:$PYTHONPATH}"
# Let each process pre-allocate most of its own GPU, not the default 75%.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
# srun does not inherit sbatch's --cpus-per-task (Slurm >= 22.05): pass it on, or each task
# gets one CPU for its input pipeline.
if [[ -n ${SLURM_CPUS_PER_TASK:-} ]]; then
  export SRUN_CPUS_PER_TASK=${SRUN_CPUS_PER_TASK:-${SLURM_CPUS_PER_TASK}}
fi
# --gpus-per-task binds each task to its own GPU(s), which it sees as CUDA devices 0..n-1;
# jax.distributed's SLURM auto-detection would otherwise pick device SLURM_LOCALID (which
# only exists when every task sees all of the node's GPUs, e.g. with --gpus-per-node).
if [[ -n ${SLURM_GPUS_PER_TASK:-} ]]; then
  export JAX_LOCAL_DEVICE_IDS=${JAX_LOCAL_DEVICE_IDS:-$(seq -s, 0 $((${SLURM_GPUS_PER_TASK##*:} - 1)))}
fi

# --kill-on-bad-exit: one failing process (e.g. the NaN stop) ends the whole step.
CMD=(srun --kill-on-bad-exit=1 .venv/bin/python -m mim4d_jax.train
  --config="${CONFIG}" --workdir="${WORKDIR}" "$@")
if [[ ${DRY_RUN:-0} == 1 ]]; then
  printf '%q ' "${CMD[@]}" | sed 's/ $//'
  echo
  exit 0
fi
"${CMD[@]}"

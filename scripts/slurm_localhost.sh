#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests (tests/test_slurm.py) and local tries.
#
#   bash scripts/slurm_localhost.sh install      apt-get install slurm-wlm munge (if missing)
#   bash scripts/slurm_localhost.sh start DIR    munged + slurmctld + slurmd, all state under DIR
#   bash scripts/slurm_localhost.sh stop DIR     stops them (nothing of DIR's keeps running)
#   export SLURM_CONF=DIR/slurm.conf             then sbatch / squeue / scancel use it
#
# Runs as root, without systemd: the daemons run as plain background processes (root), with
# their own munge key and socket, ports, config, state, spool, pid and log files under DIR, so
# nothing in /etc is read or written. One node named $(hostname -s) with the machine's CPUs
# (at least 2, configured, not probed) and 2 fake GPUs (gres `gpu` on two empty files under
# DIR), so scripts/launch_slurm.sh's `--gpus-per-task=1` is satisfied on a CPU machine.
# `start` is idempotent: it first stops whatever a previous (crashed) start in DIR left.
set -euo pipefail

usage() {
  sed -n '2,14p' "$0"
  exit 2
}

pids_of_dir() {  # daemons started from DIR (their command lines name DIR's files)
  local dir=$1
  pgrep -f -- "--key-file=${dir}/munge/munge.key" || true
  pgrep -f -- "-f ${dir}/slurm.conf" || true
}

do_install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
    command -v sbatch >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d 101: the packages' postinst must not start system daemons (ours run from DIR).
  local policy=/usr/sbin/policy-rc.d created=0 rc=0
  if [[ ! -e ${policy} ]]; then
    printf '#!/bin/sh\nexit 101\n' >"${policy}" && chmod +x "${policy}" && created=1
  fi
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null || rc=$?
  ((created)) && rm -f "${policy}"
  ((rc == 0)) && command -v slurmctld >/dev/null && command -v munged >/dev/null
}

job_pids_of_dir() {  # job steps and tasks of DIR's cluster (their environment names DIR)
  local dir=$1 f pid env
  for f in /proc/[0-9]*/environ; do
    pid=${f#/proc/}
    pid=${pid%/environ}
    [[ ${pid} == "$$" ]] && continue
    env=$( (tr '\0' '\n' <"${f}") 2>/dev/null) || continue
    grep -qx "SLURM_CONF=${dir}/slurm.conf" <<<"${env}" || continue
    grep -q "^SLURM_JOB_ID=" <<<"${env}" || continue
    echo "${pid}"
  done
}

do_stop() {
  local dir=$1 pid
  [[ -d ${dir} ]] || return 0
  if [[ -f ${dir}/slurm.conf ]] && pgrep -f -- "-f ${dir}/slurm.conf" >/dev/null; then
    # Jobs first, through SLURM (their steps end cleanly), for at most 10 s.
    export SLURM_CONF=${dir}/slurm.conf
    scancel --quiet --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 50); do
      [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
      sleep 0.2
    done
  fi
  for pid in $(pids_of_dir "${dir}"); do kill -TERM "${pid}" 2>/dev/null || true; done
  for _ in $(seq 50); do
    [[ -z $(pids_of_dir "${dir}") ]] && break
    sleep 0.2
  done
  for pid in $(pids_of_dir "${dir}"); do kill -KILL "${pid}" 2>/dev/null || true; done
  # What a crash can leave: job steps and tasks whose daemons are gone.
  for pid in $(job_pids_of_dir "${dir}"); do kill -KILL "${pid}" 2>/dev/null || true; done
  rm -f "${dir}"/munge/munge.socket* "${dir}"/munge/*.pid "${dir}"/*.pid
}

free_port() {  # a TCP port nobody listens on, from a range above the usual ones
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
      echo "${port}"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

show_logs() {
  local dir=$1 f
  for f in "${dir}"/log/*.log; do
    [[ -f ${f} ]] && { echo "==== ${f}"; tail -n 40 "${f}"; }
  done
  SLURM_CONF=${dir}/slurm.conf sinfo -N -l 2>&1 || true
}

do_start() {
  local dir host cpus ctld_port slurmd_port
  mkdir -p "$1"
  dir=$(cd "$1" && pwd)
  do_stop "${dir}"
  host=$(hostname -s)
  cpus=$(nproc)
  ((cpus < 2)) && cpus=2
  mkdir -p "${dir}"/{munge,state,spool,log}
  chmod 755 "${dir}/munge"
  touch "${dir}"/fakegpu{0,1}  # gres device files: only their names matter

  # ---- munge: a fresh key and socket of this cluster's own. ----
  if [[ ! -s ${dir}/munge/munge.key ]]; then
    dd if=/dev/urandom of="${dir}/munge/munge.key" bs=1024 count=1 status=none
  fi
  chmod 400 "${dir}/munge/munge.key"
  munged --force --key-file="${dir}/munge/munge.key" --socket="${dir}/munge/munge.socket" \
    --pid-file="${dir}/munge/munged.pid" --log-file="${dir}/log/munged.log" \
    --seed-file="${dir}/munge/munged.seed" </dev/null >>"${dir}/log/munged.log" 2>&1 || {
    show_logs "${dir}"
    return 1
  }

  # ---- slurm.conf and gres.conf (read from slurm.conf's folder). ----
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  while [[ ${slurmd_port} == "${ctld_port}" ]]; do slurmd_port=$(free_port); done
  cat >"${dir}/slurm.conf" <<EOF
# Written by scripts/slurm_localhost.sh: a one-node test cluster on ${host}.
ClusterName=localhost
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${ctld_port}
SlurmdPort=${slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${dir}/munge/munge.socket
StateSaveLocation=${dir}/state
SlurmdSpoolDir=${dir}/spool
SlurmctldPidFile=${dir}/slurmctld.pid
SlurmdPidFile=${dir}/slurmd.pid
SlurmctldLogFile=${dir}/log/slurmctld.log
SlurmdLogFile=${dir}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=${dir}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Configured, not probed: the node is what this file says (a 1-core machine still has 2 CPUs).
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=60
SlurmdTimeout=60
InactiveLimit=0
KillWait=30
MinJobAge=600
GresTypes=gpu
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} Gres=gpu:2 State=UNKNOWN
PartitionName=local Nodes=${host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
  cat >"${dir}/gres.conf" <<EOF
AutoDetect=off
NodeName=${host} Name=gpu File=${dir}/fakegpu[0-1]
EOF
  : >"${dir}/plugstack.conf"

  # ---- the daemons: foreground mode (-D) in the background, all output in their logs. ----
  export SLURM_CONF=${dir}/slurm.conf
  setsid slurmctld -D -c -i -f "${dir}/slurm.conf" </dev/null >>"${dir}/log/slurmctld.out" 2>&1 &
  setsid slurmd -D -c -f "${dir}/slurm.conf" </dev/null >>"${dir}/log/slurmd.out" 2>&1 &
  local state=""
  for _ in $(seq 120); do
    state=$(sinfo -h -N -n "${host}" -o %t 2>/dev/null || true)
    [[ ${state} == idle ]] && break
    sleep 0.5
  done
  if [[ ${state} != idle ]]; then
    echo "slurm_localhost: node ${host} not idle after 60 s (state '${state}')" >&2
    show_logs "${dir}" >&2
    do_stop "${dir}"
    return 1
  fi
  echo "SLURM_CONF=${dir}/slurm.conf"
}

case ${1:-} in
  install) do_install ;;
  start) [[ $# -eq 2 ]] || usage; do_start "$2" ;;
  stop) [[ $# -eq 2 ]] || usage; do_stop "$(cd "$2" 2>/dev/null && pwd || echo "$2")" ;;
  *) usage ;;
esac

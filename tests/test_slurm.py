"""scripts/launch_slurm.sh under a real SLURM: a one-node cluster on this machine.

scripts/slurm_localhost.sh installs slurm-wlm and munge (apt-get, where missing) and starts
munged, slurmctld and slurmd for this module, with 2 fake GPUs (gres) so the launcher's
`--gpus-per-task=1` is satisfied unchanged; the tests override only what a CPU machine lacks on
the sbatch command line (`--ntasks-per-node=2 --cpus-per-task=1`). Each job is 2 tasks x 4 fake
CPU devices training configs/mim4d_tiny.py:test on a converted synthetic dataset through the
real CLI: jax.distributed finds the coordinator in SLURM's environment (no coordinator flags).

- `straight`: STEPS steps uninterrupted, the reference (one mesh of 8 devices, a checkpoint).
- preemption: a second run gets `scancel --signal=TERM` mid-run (what `--signal=TERM@300` does
  before the time limit): both processes save one agreed step and exit 0; a third run resumes
  from that step and ends with the straight run's losses and parameters, bit for bit.

Three jobs; the first compiles the step (minutes on 2 cores), the others load it from the
session's persistent compilation cache. Gloo (CPU collectives) waits only 30 s for a peer at a
collective, so both processes must start each program within 30 s of each other. Two things
break that, and a sitecustomize on the jobs' PYTHONPATH (`_JOB_SHIM`, tests only) fixes both:
JAX writes cache entries from process 0 only while on CPU the key differs per process (process
1 would recompile in every job while process 0 loads from the cache), and two cold compiles on
a loaded 2-core machine can end more than 30 s apart.

Skipped only when SLURM is missing and apt-get cannot install it.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import time

import jax
import numpy as np
import pytest
from train_fixtures import (
    REPO_ROOT,
    TINY_TEST,
    compilation_cache_fixture,  # noqa: F401 (registers the session fixture)
    subprocess_env,
)

from mim4d_jax.training import checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("compilation_cache")]

CLUSTER = REPO_ROOT / "scripts" / "slurm_localhost.sh"
LAUNCHER = REPO_ROOT / "scripts" / "launch_slurm.sh"
STEPS = 6  # room for a preemption after step 2 that is not the last step
JOB_TIMEOUT_S = 1800  # a cold compile of the step takes minutes on a loaded 2-core machine

_JOB_SHIM = '''\
"""Tests only (tests/test_slurm.py), in every task of the jobs before mim4d_jax.train runs."""
import collections

from jax._src import compilation_cache, compiler, distributed
from jax._src.lib.mlir import ir

# 1. Every process writes its own persistent-cache entries (JAX writes only process 0's; on
#    CPU the key differs per process, so process 1 would recompile in every job).
_write = compiler._cache_write


def _cache_write(cache_key, compile_time_secs, module_name, backend, executable, callbacks):
    if distributed.global_state.process_id == 0 or callbacks:
        return _write(cache_key, compile_time_secs, module_name, backend, executable, callbacks)
    compilation_cache.put_executable_and_time(
        cache_key, module_name, executable, backend, int(compile_time_secs)
    )


compiler._cache_write = _cache_write

# 2. After compiling (or loading) one of the big programs, the processes meet at a barrier
#    (15 min timeout) before running it: a cold compile can end tens of seconds apart on a
#    loaded machine, longer than Gloo waits for its peers at the first collective (30 s).
_compile = compiler.compile_or_get_cached
_BIG = ("jit__init_params", "jit__init_state", "jit__train_step")
_seen = collections.Counter()


def compile_or_get_cached(backend, computation, devices, *args, **kwargs):
    executable = _compile(backend, computation, devices, *args, **kwargs)
    name = ir.StringAttr(computation.operation.attributes["sym_name"]).value
    client = distributed.global_state.client
    if client is not None and name in _BIG and len({d.process_index for d in devices.flat}) > 1:
        _seen[name] += 1
        client.wait_at_barrier(f"test_slurm/{name}/{_seen[name]}", 15 * 60 * 1000)
    return executable


compiler.compile_or_get_cached = compile_or_get_cached
'''


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> dict[str, str]:
    """A running one-node cluster; yields the environment for SLURM commands and jobs."""
    install = subprocess.run(
        ["bash", str(CLUSTER), "install"], capture_output=True, text=True, timeout=1200
    )
    if install.returncode != 0:
        pytest.skip(
            "SLURM is not installed and `apt-get install slurm-wlm munge` failed: "
            + _tail(install.stdout + install.stderr, 5)
        )
    state = tmp_path_factory.mktemp("slurm")
    try:
        start = subprocess.run(
            ["bash", str(CLUSTER), "start", str(state)], capture_output=True, text=True, timeout=300
        )
        assert start.returncode == 0, f"cluster did not start:\n{start.stdout}\n{start.stderr}"
        yield {"SLURM_CONF": str(state / "slurm.conf")}
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop", str(state)], timeout=120, check=False)


@pytest.fixture(scope="module")
def job_env(slurm, tmp_path_factory, compilation_cache) -> dict[str, str]:
    """sbatch's environment, which the jobs inherit (sbatch --export=ALL)."""
    shim = tmp_path_factory.mktemp("cache_shim")
    (shim / "sitecustomize.py").write_text(_JOB_SHIM)
    env = subprocess_env(4, compilation_cache)  # 4 fake CPU devices per task, shared cache
    env = {k: v for k, v in env.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env.update(slurm)
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = f"{shim}:{REPO_ROOT}"
    env["SLURM_LABELIO"] = "1"  # srun --label: every output line starts with "<task>: "
    return env


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> pathlib.Path:
    from data_fixtures import synthetic_dataset

    root = tmp_path_factory.mktemp("clips")
    synthetic_dataset(root, num_clips=8)
    return root


class Job:
    """`sbatch --wait scripts/launch_slurm.sh WORKDIR configs/mim4d_tiny.py:test ...`."""

    def __init__(self, env: dict[str, str], workdir: pathlib.Path, data: pathlib.Path) -> None:
        self.env, self.workdir = env, workdir
        logs = workdir.parent / "logs"
        logs.mkdir(exist_ok=True)
        args = ["sbatch", "--wait", "--parsable", "--ntasks-per-node=2", "--cpus-per-task=1"]
        args += [f"--output={logs}/slurm-%j.out", str(LAUNCHER), str(workdir), TINY_TEST]
        args += [f"--config.data.dir={data}", f"--config.total_steps={STEPS}"]
        args += ["--config.checkpoint_every=100"]  # saves: at STEPS and on SIGTERM only
        self.sbatch = subprocess.Popen(
            args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.sbatch.stdout.readline().strip()
        if not line:
            raise AssertionError(f"sbatch failed: {self.sbatch.communicate()}")
        self.id = int(line.split(";")[0])
        self.log_path = logs / f"slurm-{self.id}.out"

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait(self) -> str:
        """Waits for the job to end; asserts it completed with exit status 0; returns its log."""
        try:
            code = self.sbatch.wait(timeout=JOB_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.scontrol("scancel", str(self.id))
            raise AssertionError(f"job {self.id} timed out:\n{_tail(self.log())}") from None
        state = self.scontrol("scontrol", "show", "job", str(self.id))
        assert code == 0 and "JobState=COMPLETED" in state, f"{state}\n{_tail(self.log(), 120)}"
        return self.log()

    def scontrol(self, *args: str) -> str:
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60)
        return done.stdout + done.stderr

    def wait_for_step(self, step: int) -> None:
        """Until process 0 has logged `step` to metrics.jsonl (the run is mid-training)."""
        metrics = self.workdir / "metrics.jsonl"
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while not (metrics.exists() and len(metrics.read_text().splitlines()) >= step):
            if self.sbatch.poll() is not None:
                raise AssertionError(f"job {self.id} ended before step {step}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.scontrol("scancel", str(self.id))
                raise AssertionError(f"job {self.id} timed out:\n{_tail(self.log())}")
            time.sleep(0.5)


def _per_process(log: str, pattern: str) -> dict[int, tuple[str, ...]]:
    """{task: groups} of the lines matching `pattern` (srun's "<task>: " label in front)."""
    found = {}
    for line in log.splitlines():
        if match := re.match(r"^\s*(\d+): .*" + pattern, line):
            found[int(match.group(1))] = match.groups()[1:]
    return found


def _metrics(workdir: pathlib.Path) -> dict[int, dict]:
    """Step -> logged values (the resumed run appends; timings dropped)."""
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: {k: v for k, v in r.items() if k != "steps_per_sec"} for r in records}


def _assert_same_leaves(a, b) -> None:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def straight(job_env, dataset, tmp_path_factory) -> tuple[pathlib.Path, str, Job]:
    workdir = tmp_path_factory.mktemp("straight") / "run"
    job = Job(job_env, workdir, dataset)
    return workdir, job.wait(), job


def test_two_tasks_form_one_mesh_and_save(straight) -> None:
    workdir, log, job = straight
    meshes = _per_process(log, r"distributed: process (\d+) of (\d+), (\d+) local / (\d+) global")
    assert meshes == {0: ("0", "2", "4", "8"), 1: ("1", "2", "4", "8")}, _tail(log)
    # The coordinator came from SLURM's environment (the job's first node), not from flags.
    node = job.scontrol("scontrol", "show", "job", str(job.id))
    node = re.search(r"\bBatchHost=(\S+)", node).group(1)
    coordinators = _per_process(log, r"Connecting to JAX distributed service on (\S+):\d+")
    assert coordinators == {0: (node,), 1: (node,)}, _tail(log)
    # The launcher bound each task to its one (fake) GPU as device 0.
    visible = _per_process(log, r"JAX distributed initialized with visible devices: (\S+)")
    assert visible == {0: ("0",), 1: ("0",)}, _tail(log)
    assert checkpoint.make_manager(workdir, read_only=True).all_steps() == [STEPS]
    assert sorted(_metrics(workdir)) == list(range(1, STEPS + 1))


def test_sigterm_mid_run_saves_one_agreed_step_and_resumes_exactly(
    straight, job_env, dataset, tmp_path
) -> None:
    straight_dir, _, _ = straight
    workdir = tmp_path / "run"
    job = Job(job_env, workdir, dataset)
    job.wait_for_step(2)
    # No --full/--batch: SLURM signals the job's steps (srun's tasks), not the batch shell,
    # exactly as --signal=TERM@300 does before the time limit.
    job.scontrol("scancel", "--signal=TERM", str(job.id))
    log = job.wait()  # both processes exited 0 after saving
    preempted = _per_process(log, r"preempted: checkpoint saved at step (\d+), exiting")
    assert set(preempted) == {0, 1} and preempted[0] == preempted[1], _tail(log)
    step = int(preempted[0][0])
    assert 2 <= step < STEPS, f"preempted at {step}: not mid-run"
    assert checkpoint.make_manager(workdir, read_only=True).all_steps() == [step]

    resumed = Job(job_env, workdir, dataset)
    log = resumed.wait()
    resumed_at = _per_process(log, r"resumed from \S+ at step (\d+)")
    assert resumed_at == {0: (str(step),), 1: (str(step),)}, _tail(log)
    assert checkpoint.make_manager(workdir, read_only=True).all_steps() == [step, STEPS]
    # Same losses at every step (steps 1..step from the preempted run, the rest resumed) and
    # the same final parameters and batch statistics, bit for bit.
    assert _metrics(workdir) == _metrics(straight_dir)
    _, p_straight, b_straight, s1 = checkpoint.restore_params(straight_dir)
    _, p_resumed, b_resumed, s2 = checkpoint.restore_params(workdir)
    assert s1 == s2 == STEPS
    _assert_same_leaves(p_straight, p_resumed)
    _assert_same_leaves(b_straight, b_resumed)

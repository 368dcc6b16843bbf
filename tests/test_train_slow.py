"""Trainer tests that run separate processes: the CLI, SIGKILL/SIGTERM, two JAX processes.

Children train configs/mim4d_tiny.py:test on `SyntheticBatches` (tests/train_fixtures.py run
as a script) and share the session's persistent compilation cache.
"""

from __future__ import annotations

import json
import pathlib
import random
import signal
import subprocess
import time

import numpy as np
import pytest
from train_fixtures import (
    REPO_ROOT,
    compilation_cache_fixture,  # noqa: F401 (registers the session fixture)
    free_port,
    start_child,
)

from mim4d_jax.training import checkpoint

CHILD = str(REPO_ROOT / "tests" / "train_fixtures.py")
TIMEOUT_S = 1200

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("compilation_cache")]


def _finish(child: subprocess.Popen, log: pathlib.Path) -> tuple[int, str]:
    child.wait(timeout=TIMEOUT_S)
    return child.returncode, log.read_text()


def _result(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def _wait_for(predicate, child: subprocess.Popen, log: pathlib.Path, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        if child.poll() is not None:
            raise AssertionError(f"child exited before {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_cli_rejects_unknown_config_key(tmp_path, compilation_cache) -> None:
    args = ["-m", "mim4d_jax.train", "--config=configs/mim4d_tiny.py:test"]
    log = tmp_path / "child.log"
    child = start_child(
        [*args, f"--workdir={tmp_path}", "--config.no_such_key=1"], compilation_cache, log
    )
    code, output = _finish(child, log)
    assert code != 0 and "unknown config key 'no_such_key'" in output, output


def test_cli_dry_run_prints_a_json_report(tmp_path, compilation_cache) -> None:
    args = ["-m", "mim4d_jax.train", "--config=configs/mim4d_tiny.py:test", "--dry_run"]
    log = tmp_path / "child.log"
    code, output = _finish(start_child(args, compilation_cache, log), log)
    assert code == 0, output
    report = _result(output)
    assert report["total_params"] > 0 and report["flops_per_step_per_device"] > 0
    assert report["peak_bytes_per_device"] > 0 and report["mesh"]["data"] == 8


def test_sigkill_after_first_save_then_resume_completes(tmp_path, compilation_cache) -> None:
    workdir, log = tmp_path / "run", tmp_path / "killed.log"
    child = start_child([CHILD, str(workdir), "checkpoint_every=1"], compilation_cache, log)
    first = workdir / "checkpoints" / "1"
    _wait_for(first.is_dir, child, log, "the first checkpoint")  # committed (atomic rename)
    time.sleep(random.uniform(0.0, 10.0))
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    steps = checkpoint.make_manager(workdir, read_only=True).all_steps()
    assert steps and steps[-1] < 4, steps  # killed mid-run, after at least one save

    log = tmp_path / "resumed.log"
    child = start_child([CHILD, str(workdir), "checkpoint_every=1"], compilation_cache, log)
    code, output = _finish(child, log)
    assert code == 0, output
    result = _result(output)
    assert result["step"] == 4
    resumed_steps = sorted(int(s) for s in result["losses"])
    assert resumed_steps == list(range(steps[-1] + 1, 5))
    assert np.all(np.isfinite(list(result["losses"].values())))
    assert checkpoint.restore_params(workdir)[3] == 4


def test_sigterm_saves_the_current_step(tmp_path, compilation_cache) -> None:
    workdir, log = tmp_path / "run", tmp_path / "child.log"
    child = start_child([CHILD, str(workdir), "checkpoint_every=100"], compilation_cache, log)
    metrics = workdir / "metrics.jsonl"
    _wait_for(lambda: metrics.is_file() and metrics.read_text().strip(), child, log, "metrics")
    child.send_signal(signal.SIGTERM)
    code, output = _finish(child, log)
    assert code == 0, output
    result = _result(output)
    assert 1 <= result["step"] < 4  # stopped early ...
    steps = checkpoint.make_manager(workdir, read_only=True).all_steps()
    assert steps == [result["step"]]  # ... with a checkpoint at exactly that step


def test_two_processes_train_together(tmp_path, compilation_cache) -> None:
    """2 processes x 4 fake devices joined by jax.distributed on 127.0.0.1 (fsdp=2 mesh),
    with the parameter EMA on (saved as its own item, read back by restore_params)."""
    port, workdir = free_port(), tmp_path / "run"
    args = [CHILD, str(workdir), "total_steps=2", "mesh.fsdp=2", "optim.ema_decay=0.5"]
    args += ["--num_processes=2"]
    logs = [tmp_path / f"process{i}.log" for i in range(2)]
    children = [
        start_child(
            [*args, f"--process_id={i}", f"--port={port}"],
            compilation_cache,
            logs[i],
            num_devices=4,
        )
        for i in range(2)
    ]
    outputs = [_finish(child, log) for child, log in zip(children, logs, strict=True)]
    for code, output in outputs:
        assert code == 0, output
    results = [_result(output) for _, output in outputs]
    assert results[0] == results[1] and results[0]["step"] == 2
    assert np.all(np.isfinite(list(results[0]["losses"].values())))
    assert checkpoint.make_manager(workdir, read_only=True).all_steps() == [2]
    _, params, _, _ = checkpoint.restore_params(workdir)
    _, ema, _, _ = checkpoint.restore_params(workdir, ema=True)
    kernel = params["img_neck"]["fpn_convs"][0]["conv"]["kernel"]
    ema_kernel = ema["img_neck"]["fpn_convs"][0]["conv"]["kernel"]
    assert np.all(np.isfinite(ema_kernel)) and not np.array_equal(kernel, ema_kernel)


def test_cli_trains_on_a_converted_dataset(tmp_path, compilation_cache) -> None:
    """The real entry point end to end: input pipeline, progress line, metrics, checkpoints."""
    from data_fixtures import synthetic_dataset

    synthetic_dataset(tmp_path / "data", num_clips=8)
    workdir, log = tmp_path / "run", tmp_path / "child.log"
    args = ["-m", "mim4d_jax.train", "--config=configs/mim4d_tiny.py:test"]
    args += [f"--workdir={workdir}", f"--config.data.dir={tmp_path / 'data'}"]
    args += ["--config.profile.start_step=2", "--config.profile.num_steps=1"]
    code, output = _finish(start_child(args, compilation_cache, log), log)
    assert code == 0, output
    assert "step 4/4" in output and "steps/s ETA" in output
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in records)
    assert checkpoint.make_manager(workdir, read_only=True).all_steps() == [2, 4]
    assert list((workdir / "profile").rglob("*.xplane.pb"))  # the jax.profiler trace of step 3

"""The pod and SLURM launchers: --dry-run / DRY_RUN=1 print the exact command lines, and the
real mode runs exactly those (checked with stand-in gcloud and srun executables on PATH)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest
from train_fixtures import REPO_ROOT

TPU = str(REPO_ROOT / "scripts" / "launch_tpu_pod.sh")
SLURM = str(REPO_ROOT / "scripts" / "launch_slurm.sh")


def _stand_ins(tmp_path):
    """gcloud and srun that record their argument vectors as JSON lines."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    record = tmp_path / "calls.jsonl"
    for name in ("gcloud", "srun"):
        script = bin_dir / name
        script.write_text(
            f"#!{sys.executable}\nimport json, sys\n"
            f"open({str(record)!r}, 'a').write(json.dumps(sys.argv) + '\\n')\n"
        )
        script.chmod(0o755)
    return bin_dir, record


def _run(args, tmp_path, **env):
    bin_dir, record = _stand_ins(tmp_path)
    full_env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", **env}
    if "GCLOUD_PROJECT" not in env:
        full_env.pop("GCLOUD_PROJECT", None)
    done = subprocess.run(["bash", *args], capture_output=True, text=True, env=full_env)
    calls = (
        [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    )
    return done, calls


def _remote_train_args(gcloud_argv: list[str]) -> list[str]:
    command = next(a for a in gcloud_argv if a.startswith("--command="))[len("--command=") :]
    words = shlex.split(command)
    start = words.index("mim4d_jax.train") + 1
    return words[start : words.index("2>&1")]


def test_tpu_dry_run_prints_the_gcloud_line_and_runs_nothing(tmp_path) -> None:
    args = [
        TPU,
        "--dry-run",
        "pod-1",
        "us-east5-a",
        "gs://b/run",
        "configs/mim4d_vs01.py",
        "--config.data.dir=/data/with space",
        "--config.batch_size=16",
    ]
    done, calls = _run(args, tmp_path)
    assert done.returncode == 0, done.stderr
    assert calls == []  # nothing was executed
    argv = shlex.split(done.stdout)
    assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod-1"]
    assert "--zone=us-east5-a" in argv and "--worker=all" in argv
    assert not any(a.startswith("--project") for a in argv)
    assert _remote_train_args(argv) == [
        "--config=configs/mim4d_vs01.py",
        "--workdir=gs://b/run",
        "--config.data.dir=/data/with space",
        "--config.batch_size=16",
    ]


def test_tpu_real_mode_runs_exactly_the_printed_line(tmp_path) -> None:
    args = ["pod-1", "zone-b", "/mnt/run", "configs/x.py", "--config.seed=3"]
    dry, _ = _run([TPU, *args], tmp_path / "dry", DRY_RUN="1", GCLOUD_PROJECT="proj")
    real, calls = _run([TPU, *args], tmp_path / "real", GCLOUD_PROJECT="proj")
    assert real.returncode == 0, real.stderr
    assert len(calls) == 1 and calls[0][1:] == shlex.split(dry.stdout)[1:]
    assert "--project=proj" in calls[0]


def test_tpu_without_extra_flags_passes_no_empty_argument(tmp_path) -> None:
    done, _ = _run([TPU, "--dry-run", "pod", "zone", "/w"], tmp_path)
    assert _remote_train_args(shlex.split(done.stdout)) == [
        "--config=configs/mim4d_vs01.py",
        "--workdir=/w",
    ]


@pytest.mark.parametrize("script", [TPU, SLURM])
def test_launchers_print_usage_and_exit_2_without_arguments(script, tmp_path) -> None:
    done, calls = _run([script], tmp_path, DRY_RUN="1")
    assert done.returncode == 2 and "Usage" in done.stdout and calls == []


def test_slurm_dry_run_and_real_mode(tmp_path) -> None:
    args = [SLURM, "/shared/run", "configs/mim4d_vs01.py", "--config.data.dir=/d e"]
    dry, calls = _run(args, tmp_path / "dry", DRY_RUN="1")
    assert dry.returncode == 0 and calls == []
    argv = shlex.split(dry.stdout)
    assert argv[:5] == ["srun", "--kill-on-bad-exit=1", ".venv/bin/python", "-m", "mim4d_jax.train"]
    assert argv[5:] == [
        "--config=configs/mim4d_vs01.py",
        "--workdir=/shared/run",
        "--config.data.dir=/d e",
    ]
    real, calls = _run(args, tmp_path / "real")
    assert real.returncode == 0 and [c[1:] for c in calls] == [argv[1:]]

"""The Apache Beam conversion (DirectRunner, in the .venv-beam environment that
scripts/install.sh builds from requirements-beam.txt) writes the same dataset as the local path."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from data_prep import convert_nuscenes
from data_prep.synthetic_nuscenes import generate
from tests.convert_helpers import assert_records_equal, read_records

REPO = pathlib.Path(__file__).resolve().parents[1]
BEAM_PYTHON = REPO / ".venv-beam" / "bin" / "python"


@pytest.mark.slow
def test_direct_runner_writes_the_local_records(tmp_path):
    if not BEAM_PYTHON.exists():
        raise FileNotFoundError(f"{BEAM_PYTHON} missing: run scripts/install.sh")
    dataroot = generate(tmp_path / "syn", scenes=2, samples_per_scene=3, width=64, height=36)
    convert_nuscenes.convert(dataroot, "v1.0-mini", tmp_path / "local", frames=3)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [
            str(BEAM_PYTHON),
            "-m",
            "data_prep.convert_nuscenes",
            "--dataroot",
            str(dataroot),
            "--version",
            "v1.0-mini",
            "--out",
            str(tmp_path / "beam"),
            "--frames",
            "3",
            "--runner",
            "DirectRunner",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    local_dir = convert_nuscenes.dataset_dir(tmp_path / "local")
    beam_dir = convert_nuscenes.dataset_dir(tmp_path / "beam")
    shards = sorted(p.name for p in local_dir.glob("*.tfrecord-*"))
    assert shards and shards == sorted(p.name for p in beam_dir.glob("*.tfrecord-*"))
    for name in shards:  # the same writer on the same work items: identical bytes
        assert (local_dir / name).read_bytes() == (beam_dir / name).read_bytes(), name
    for split in ("train", "val"):
        assert_records_equal(read_records(beam_dir, split), read_records(local_dir, split))

"""Failure injection on checkpoints and the workdir: damaged steps, bit flips, overwrites,
two trainers, model-changing resumes. A two-parameter model keeps every train() call to
seconds (reliability_fixtures.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from reliability_fixtures import flip_byte, largest_file, train_small
from train_fixtures import REPO_ROOT, TINY_TEST, subprocess_env

from mim4d_jax import user_errors
from mim4d_jax.training import checkpoint, workdir
from mim4d_jax.user_errors import CheckpointDamagedError, ConfigError, WorkdirLockedError


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A workdir with steps 2 and 4, both with manifests."""
    path = tmp_path_factory.mktemp("trained")
    result = train_small(path)
    assert result["step"] == 4
    return path


def _copy(trained, tmp_path):
    target = tmp_path / "w"
    shutil.copytree(trained, target)
    return target


def test_every_saved_step_has_a_manifest_that_verifies(trained) -> None:
    steps_dir = trained / "checkpoints"
    assert sorted(int(p.name) for p in steps_dir.iterdir()) == [2, 4]
    for step in (2, 4):
        manifest = json.loads((steps_dir / str(step) / checkpoint.MANIFEST_NAME).read_text())
        assert "params/_METADATA" in manifest["files"] and len(manifest["files"]) > 10
        assert checkpoint.verify_step(checkpoint.epath.Path(steps_dir / str(step))) is None
    assert not (trained / workdir.LOCK_NAME).exists()  # released at the end of the run


def test_removed_metadata_of_newest_step_is_damage_not_mismatch(trained, tmp_path) -> None:
    w = _copy(trained, tmp_path)
    (w / "checkpoints" / "4" / "params" / "_METADATA").unlink()
    with pytest.raises(CheckpointDamagedError) as info:
        train_small(w, "total_steps=6")
    message = str(info.value)
    assert "checkpoint step 4" in message and "damaged" in message
    assert "params/_METADATA is missing" in message and "newest intact step is 2" in message
    assert "does not match" not in message
    assert "--config.resume.fallback=True" in info.value.hint and "step 2" in info.value.hint
    assert (w / "checkpoints" / "4").is_dir()  # nothing moved without the flag


def test_fallback_resumes_from_the_newest_intact_step_and_keeps_the_damaged_one(
    trained, tmp_path
) -> None:
    w = _copy(trained, tmp_path)
    data_file = next((w / "checkpoints" / "4" / "opt_state" / "ocdbt.process_0" / "d").iterdir())
    data_file.unlink()
    result = train_small(w, "total_steps=6", "resume.fallback=True")
    assert result["step"] == 6 and sorted(result["losses"]) == [3, 4, 5, 6]  # resumed at 2
    assert (w / "damaged_checkpoints" / "4" / "opt_state").is_dir()
    steps = checkpoint.make_manager(w, read_only=True).all_steps()
    assert list(steps)[-1] == 6 and 2 in steps


def test_bit_flip_in_checkpoint_data_is_detected(trained, tmp_path) -> None:
    w = _copy(trained, tmp_path)
    target = largest_file(w / "checkpoints" / "4" / "opt_state" / "ocdbt.process_0" / "d")
    flip_byte(target)
    with pytest.raises(CheckpointDamagedError, match=r"sha256 mismatch") as info:
        train_small(w, "total_steps=6")
    assert str(target.relative_to(w / "checkpoints" / "4")) in str(info.value)


def test_without_manifest_a_missing_data_file_is_still_one_line_of_damage(
    trained, tmp_path
) -> None:
    w = _copy(trained, tmp_path)
    step4 = w / "checkpoints" / "4"
    (step4 / checkpoint.MANIFEST_NAME).unlink()
    for path in (step4 / "params" / "ocdbt.process_0" / "d").iterdir():
        path.unlink()
    for path in (step4 / "params" / "d").iterdir():
        path.unlink()
    with pytest.raises(CheckpointDamagedError, match="checkpoint step 4 .* is damaged") as info:
        train_small(w, "total_steps=6")
    assert len(str(info.value).splitlines()) == 1 and len(str(info.value)) < 600


def test_a_committed_step_is_never_overwritten(trained, tmp_path) -> None:
    w = _copy(trained, tmp_path)
    manager = checkpoint.make_manager(w)
    before = checkpoint._digest(checkpoint.epath.Path(largest_file(w / "checkpoints" / "4")))
    with pytest.raises(checkpoint.StepExistsError, match="refusing to save checkpoint step 4"):
        checkpoint.save(manager, 4, {}, {}, None)
    with pytest.raises(checkpoint.StepExistsError, match="older than step 4"):
        checkpoint.save(manager, 3, {}, {}, None)
    manager.close()
    assert (
        checkpoint._digest(checkpoint.epath.Path(largest_file(w / "checkpoints" / "4"))) == before
    )


def test_second_trainer_on_a_workdir_is_refused(trained, tmp_path) -> None:
    w = _copy(trained, tmp_path)
    with workdir.WorkdirLock(w) as held:
        with pytest.raises(WorkdirLockedError, match=f"pid {os.getpid()} on this host"):
            train_small(w, "total_steps=6")
        assert held.path.exists()
    assert not (w / workdir.LOCK_NAME).exists()
    assert sorted(int(p.name) for p in (w / "checkpoints").iterdir()) == [2, 4]


def test_stale_lock_of_a_dead_local_process_is_taken_over(tmp_path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(child.stdout)
    lock = workdir.WorkdirLock(tmp_path)
    record = dict(lock.record, pid=dead_pid, process="gone:1")
    (tmp_path / workdir.LOCK_NAME).write_text(json.dumps(record))
    with workdir.WorkdirLock(tmp_path) as taken:
        assert json.loads(taken.path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / workdir.LOCK_NAME).exists()
    assert not list(tmp_path.glob(".lock.json*"))  # no temporary or stale copies left


def test_lock_of_another_host_is_refused_with_how_to_clear_it(tmp_path) -> None:
    record = {"host": "node-17", "pid": 4242, "started": "2026-01-01T00:00:00+00:00"}
    (tmp_path / workdir.LOCK_NAME).write_text(json.dumps(record))
    with pytest.raises(WorkdirLockedError, match="pid 4242 on host node-17") as info:
        workdir.WorkdirLock(tmp_path).acquire()
    assert f"rm {tmp_path / workdir.LOCK_NAME}" in info.value.hint


def test_model_changing_resume_is_refused_by_key(trained, tmp_path) -> None:
    w = _copy(trained, tmp_path)
    with pytest.raises(ConfigError, match=r"model.depth_max: trained 48.0, now 96.0"):
        train_small(w, "total_steps=6", "model.depth_max=96.0")
    assert checkpoint.read_config(w).model.depth_max == 48.0


def test_run_cli_prints_user_errors_as_one_line_and_tracebacks_when_verbose(
    monkeypatch, capsys
) -> None:
    def main(argv):
        assert "--verbose" not in argv  # taken out before the entry point parses its flags
        raise ConfigError("bad config value x=0: must be an integer >= 1")

    monkeypatch.delenv("MIM4D_VERBOSE", raising=False)
    with pytest.raises(SystemExit) as info:
        user_errors.run_cli(main, ["prog"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[:2] == [
        "ERROR: bad config value x=0: must be an integer >= 1",
        f"hint: {ConfigError.default_hint}",
    ]
    with pytest.raises(SystemExit):
        user_errors.run_cli(main, ["prog", "--verbose"])
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("MIM4D_VERBOSE", "1")
    with pytest.raises(SystemExit):
        user_errors.run_cli(main, ["prog"])
    assert "Traceback" in capsys.readouterr().err
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback and exception
        user_errors.run_cli(lambda argv: 1 / 0, ["prog"])


@pytest.mark.slow
def test_train_cli_stops_on_a_bad_config_value_before_building_anything(tmp_path) -> None:
    args = [
        sys.executable,
        "-m",
        "mim4d_jax.train",
        f"--config={TINY_TEST}",
        f"--workdir={tmp_path}",
        "--config.data.image_size=(160,)",  # the shell's view of ="(160,)"
    ]
    env = subprocess_env(1, tmp_path / "cache")
    run = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 2, run.stderr[-2000:]
    assert (
        "ERROR: bad config value data.image_size=(160,): must be a pair (W, H) of integers >= 1"
        in run.stderr
    )
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "checkpoints").exists()

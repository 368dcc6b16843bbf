"""Evaluation, export and import trust nothing they are given: model-changing overrides,
checkpoints saved under another model, damaged steps, truncated or NaN weight files and
unwritable outputs are each one named error."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import safetensors.torch
import torch
from flax import nnx
from reliability_fixtures import flip_byte, largest_file
from train_fixtures import REPO_ROOT, TINY_TEST, subprocess_env, tiny_config

from mim4d_jax.interop import export_torch, import_torch
from mim4d_jax.interop.torch_ref.io import read_state_dict, write_state_dict
from mim4d_jax.models.mim4d import build_model
from mim4d_jax.training import checkpoint
from mim4d_jax.user_errors import BadInputError, CheckpointDamagedError, ConfigError, OutputError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """configs/mim4d_tiny.py:test with zero parameters saved at steps 5 and 7 (manifests on)."""
    workdir = tmp_path_factory.mktemp("run")
    config = tiny_config()
    model = nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0)))
    _, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    zeros = lambda tree: jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), nnx.to_pure_dict(tree))  # noqa: E731
    state = {"params": zeros(params), "batch_stats": zeros(stats)}
    checkpoint.write_config(workdir, config)
    manager = checkpoint.make_manager(workdir)
    for step in (5, 7):
        checkpoint.save(manager, step, state, {}, config)
    manager.close()
    return workdir


def _copy(run_dir, tmp_path) -> pathlib.Path:
    shutil.copytree(run_dir, tmp_path / "w")
    return tmp_path / "w"


def test_evaluation_refuses_a_model_changing_override_by_name(run_dir) -> None:
    file_config = tiny_config("model.depth_max=96.0")
    with pytest.raises(
        ConfigError,
        match=r"--config.model.depth_max=96.0: the run was trained "
        r"with 48.0, and evaluation cannot change it",
    ):
        checkpoint.workdir_config(run_dir, file_config, {"model.depth_max": 96.0})
    # The same value as the run, and evaluation-side keys, are fine; the model is config.json's.
    config = checkpoint.workdir_config(
        run_dir, tiny_config(), {"model.depth_max": 48.0, "data.dir": "/elsewhere"}
    )
    assert config.data.dir == "/elsewhere" and config.model.depth_max == 48.0


def test_evaluation_refuses_a_config_file_of_another_model(run_dir) -> None:
    with pytest.raises(
        ConfigError,
        match=r"model.backbone: the --config file has 'nano', the "
        r"run was trained with 'tiny'",
    ):
        checkpoint.workdir_config(run_dir, tiny_config("model.backbone=nano"), {})


@pytest.mark.slow
def test_evaluate_cli_refuses_a_model_changing_override_in_one_line(run_dir, tmp_path) -> None:
    """The reported case: --config.model.depth_max=96 on a run trained with 48."""
    args = [
        sys.executable,
        "-m",
        "mim4d_jax.evaluate",
        f"--config={TINY_TEST}",
        f"--workdir={run_dir}",
        "--config.model.depth_max=96",
    ]
    env = subprocess_env(1, tmp_path / "cache")
    run = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 2, run.stderr[-3000:]
    assert "ERROR: the evaluation config does not describe the trained model:" in run.stderr
    assert "--config.model.depth_max=96.0: the run was trained with 48.0" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (run_dir / "eval").exists()


def test_export_refuses_a_model_changing_override(run_dir, tmp_path) -> None:
    out = tmp_path / "x.pth"
    argv = ["--workdir", str(run_dir), "--out", str(out), "--config.model.fpn_channels=16"]
    with pytest.raises(
        ConfigError,
        match=r"--config.model.fpn_channels=16: the run was trained "
        r"with 32, and export cannot change it",
    ):
        export_torch.main(argv)
    assert not out.exists()


def test_checkpoint_config_is_checked_against_config_json(run_dir, tmp_path) -> None:
    w = _copy(run_dir, tmp_path)
    saved = json.loads((w / "config.json").read_text())
    saved["total_steps"] = 99  # a run-side change (a longer resumed run): accepted
    (w / "config.json").write_text(json.dumps(saved))
    assert checkpoint.restore_params(w, 7)[3] == 7
    saved["model"]["depth_max"] = 96.0  # config.json rewritten with another model
    (w / "config.json").write_text(json.dumps(saved))
    with pytest.raises(
        ConfigError,
        match=r"step 7 .* saved with a different model .*"
        r"model.depth_max: saved 48.0, now 96.0",
    ):
        checkpoint.restore_params(w, 7)


def test_damaged_step_in_export_names_it_and_the_intact_one(run_dir, tmp_path) -> None:
    w = _copy(run_dir, tmp_path)
    flip_byte(largest_file(w / "checkpoints" / "7" / "params"))
    out = tmp_path / "x.pth"
    with pytest.raises(CheckpointDamagedError, match="checkpoint step 7 .* is damaged") as info:
        export_torch.main(["--workdir", str(w), "--out", str(out)])
    assert info.value.hint == "pass --step 5 (the newest intact step)"
    assert not out.exists()


def _torch_file(tmp_path, tensors, fmt) -> pathlib.Path:
    path = tmp_path / f"weights.{fmt}"
    write_state_dict(path, tensors, {"iter": 1}, fmt)
    return path


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_truncated_weight_files_are_named(tmp_path, fmt) -> None:
    path = _torch_file(tmp_path, {"w": torch.ones(1000)}, fmt)
    assert read_state_dict(path)[0]["w"].shape == (1000,)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BadInputError, match=f"{path} cannot be read as a .*truncated or damaged"):
        import_torch.load_backbone_params(path, "nano")


def test_nan_weights_are_refused_naming_the_tensor(tmp_path) -> None:
    gamma = torch.ones(8)
    gamma[3] = float("nan")
    path = _torch_file(tmp_path, {"stages.0.0.gamma": gamma, "ok": torch.ones(2)}, "safetensors")
    with pytest.raises(
        BadInputError, match=r"non-finite .* 1 tensors: stages.0.0.gamma \(1 values"
    ):
        import_torch.load_backbone_params(path, "nano")
    npz = tmp_path / "b.npz"
    np.savez(npz, **{"stages/0/0/gamma": np.array([np.inf, 1.0], np.float32)})
    with pytest.raises(BadInputError, match="stages/0/0/gamma"):
        import_torch.load_backbone_params(npz, "nano")
    npz.write_bytes(npz.read_bytes()[:50])
    with pytest.raises(BadInputError, match=f"{npz} cannot be read as an .npz"):
        import_torch.load_backbone_params(npz, "nano")


def test_unwritable_export_path_is_named_and_nothing_is_half_written(tmp_path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "export.pth"
    with pytest.raises(OutputError, match=f"cannot write {out}"):
        write_state_dict(out, {"w": torch.ones(2)}, {}, "pth")
    good = tmp_path / "export.safetensors"
    write_state_dict(good, {"w": torch.ones(2)}, {}, "safetensors")
    assert safetensors.torch.load_file(str(good))["w"].shape == (2,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "export.safetensors"]

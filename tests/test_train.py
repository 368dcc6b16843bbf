"""Trainer tests on 8 fake CPU devices with the real tiny model (configs/mim4d_tiny.py:test).

Subprocess tests (SIGKILL/SIGTERM, two processes, CLI) are in test_train_slow.py.
"""

from __future__ import annotations

import os
import signal

import jax
import numpy as np
import optax
import pytest
from train_fixtures import SyntheticBatches, batches_factory, tiny_config

from mim4d_jax import train as train_lib
from mim4d_jax.training import checkpoint, dry_run
from mim4d_jax.training import mesh as mesh_lib
from mim4d_jax.training import optimizer as optim_lib
from mim4d_jax.training import step as step_lib


def _leaves_close(a, b, **tol) -> None:
    flat_a, flat_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(flat_a) == len(flat_b)
    for x, y in zip(flat_a, flat_b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


# ---------------------------------------------------------------------------------------------
# Pieces: mesh, schedule, optimiser groups.


def test_mesh_shape_resolution() -> None:
    assert mesh_lib.resolve_mesh_shape({"data": -1, "fsdp": 2, "tensor": 1}, 8) == (4, 2, 1)
    assert mesh_lib.resolve_mesh_shape({"data": 2, "fsdp": 2, "tensor": 2}, 8) == (2, 2, 2)
    with pytest.raises(ValueError, match="at most one"):
        mesh_lib.resolve_mesh_shape({"data": -1, "fsdp": -1, "tensor": 1}, 8)
    with pytest.raises(ValueError, match="does not divide"):
        mesh_lib.resolve_mesh_shape({"data": -1, "fsdp": 3, "tensor": 1}, 8)
    mesh = mesh_lib.make_mesh({"data": -1, "fsdp": 2, "tensor": 1}, jax.devices()[:4])
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 1}


def test_schedule_warmup_then_cosine() -> None:
    config = tiny_config("total_steps=110", "optim.warmup_steps=10", "optim.lr=1.0")
    schedule = optim_lib.make_schedule(config.optim, config.total_steps)
    np.testing.assert_allclose(schedule(0), config.optim.warmup_start_factor, rtol=1e-6)
    np.testing.assert_allclose(schedule(5), (1 / 3 + 1) / 2, rtol=1e-6)
    np.testing.assert_allclose(schedule(10), 1.0, rtol=1e-6)
    np.testing.assert_allclose(schedule(60), (1 + config.optim.min_lr_ratio) / 2, rtol=1e-5)
    np.testing.assert_allclose(schedule(110), config.optim.min_lr_ratio, rtol=1e-5)


def test_optimizer_freezes_early_stages_and_slows_backbone() -> None:
    """Frozen leaves get exactly zero updates (also from weight decay); backbone lr x0.1."""
    config = tiny_config("optim.warmup_steps=0")
    params = {
        "img_backbone": {
            "downsample_layers": {0: {"kernel": np.ones((2, 2))}, 1: {"kernel": np.zeros((2, 2))}},
            "stages": {0: {0: {"gamma": np.ones(2)}}, 1: {0: {"gamma": np.zeros(2)}}},
            "stages_extra": {"w": np.zeros(2)},  # a name that only shares a prefix: not frozen
        },
        "render_conv": {"kernel": np.zeros((3,))},
    }
    params = jax.tree.map(lambda x: jax.numpy.asarray(x, jax.numpy.float32), params)
    tx, _ = optim_lib.make_optimizer(config, params)
    grads = jax.tree.map(jax.numpy.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    backbone = updates["img_backbone"]
    assert not np.any(np.asarray(backbone["downsample_layers"][0]["kernel"]))
    assert not np.any(np.asarray(backbone["stages"][0][0]["gamma"]))
    # First Adam step on zero params: update = -lr * g / (|g| + eps) = -lr.
    lr = config.optim.lr
    np.testing.assert_allclose(updates["render_conv"]["kernel"], -lr, rtol=1e-5)
    np.testing.assert_allclose(
        backbone["stages"][1][0]["gamma"], -lr * config.optim.backbone_lr_mult, rtol=1e-5
    )
    np.testing.assert_allclose(
        backbone["stages_extra"]["w"], -lr * config.optim.backbone_lr_mult, rtol=1e-5
    )
    # Clipping sees only the trainable gradients: 2*2 + 2 + 2 + 3 = 11 ones.
    np.testing.assert_allclose(optim_lib.trainable_grad_norm(grads, 1), np.sqrt(11.0), rtol=1e-6)
    assert np.isclose(float(optax.tree.norm(grads)), np.sqrt(17.0))


# ---------------------------------------------------------------------------------------------
# The real tiny model: training, sharding, resume, restore, failures.


def test_loss_falls_on_a_repeated_batch(tmp_path) -> None:
    config = tiny_config("total_steps=8", "checkpoint_every=100", "optim.lr=2e-3")
    result = train_lib.train(config, tmp_path, pipeline_factory=batches_factory(repeat=True))
    losses = [result["losses"][s] for s in range(1, 9)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.9 * np.mean(losses[:2]), losses
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 8 and '"loss"' in lines[0]
    assert (tmp_path / "config.json").is_file() and any((tmp_path / "tensorboard").iterdir())
    assert checkpoint.make_manager(tmp_path, read_only=True).all_steps() == [8]


def test_sharded_step_matches_single_device() -> None:
    config = tiny_config("mesh.fsdp=2")
    losses, params = [], []
    for devices in (jax.devices(), jax.devices()[:1]):
        mesh = mesh_lib.make_mesh(
            config.mesh if len(devices) > 1 else {"data": 1, "fsdp": 1, "tensor": 1}, devices
        )
        with jax.set_mesh(mesh):
            fns = step_lib.make_train_fns(config, mesh)
            state = fns.init_state(*fns.init_params())
            batch = next(SyntheticBatches(config, mesh))
            state, metrics = fns.train_step(state, batch)
            losses.append(float(metrics["loss"]))
            params.append(jax.device_get(state["params"]))
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    _leaves_close(params[0], params[1], rtol=1e-3, atol=1e-5)


class _StopAfter(SyntheticBatches):
    """Sends this process SIGTERM while fetching batch `stop_at` (a preemption mid-run)."""

    def __init__(self, config, mesh, stop_at: int) -> None:
        super().__init__(config, mesh)
        self.stop_at = stop_at

    def __next__(self):
        if self.index == self.stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().__next__()


def test_resume_is_exact_and_sigterm_saves_current_step(tmp_path) -> None:
    """2N steps straight == N steps, SIGTERM, resume to 2N: same losses, same parameters."""
    config = tiny_config("total_steps=4", "checkpoint_every=100")
    straight = train_lib.train(config, tmp_path / "straight", pipeline_factory=batches_factory())
    stopped = train_lib.train(
        config, tmp_path / "resumed", pipeline_factory=lambda c, m: _StopAfter(c, m, stop_at=1)
    )
    assert stopped["step"] == 2  # the step during which SIGTERM arrived completed, then saved
    assert checkpoint.make_manager(tmp_path / "resumed", read_only=True).all_steps() == [2]
    resumed = train_lib.train(config, tmp_path / "resumed", pipeline_factory=batches_factory())
    assert sorted(resumed["losses"]) == [3, 4]
    joined = {**stopped["losses"], **resumed["losses"]}
    assert joined == straight["losses"]  # bit-identical per step
    _, p_straight, b_straight, s1 = checkpoint.restore_params(tmp_path / "straight")
    _, p_resumed, b_resumed, s2 = checkpoint.restore_params(tmp_path / "resumed")
    assert s1 == s2 == 4
    _leaves_close(p_straight, p_resumed, rtol=0, atol=0)
    _leaves_close(b_straight, b_resumed, rtol=0, atol=0)


def test_restore_onto_fewer_devices(tmp_path) -> None:
    config = tiny_config("total_steps=2", "checkpoint_every=2")
    train_lib.train(config, tmp_path, pipeline_factory=batches_factory())
    _, saved_params, _, _ = checkpoint.restore_params(tmp_path)
    # Restore onto a 4-device mesh with fsdp sharding (a different layout than it was saved in).
    four = jax.devices()[:4]
    config4 = tiny_config("total_steps=3", "checkpoint_every=2", "mesh.fsdp=2")
    mesh = mesh_lib.make_mesh(config4.mesh, four)
    with jax.set_mesh(mesh):
        fns = step_lib.make_train_fns(config4, mesh)
        manager = checkpoint.make_manager(tmp_path, read_only=True)
        state, data_state = checkpoint.restore(manager, 2, fns.abstract_state, tmp_path)
        manager.close()
    assert data_state == {"index": 2}
    assert all(set(x.sharding.device_set) <= set(four) for x in jax.tree.leaves(state))
    _leaves_close(state["params"], saved_params, rtol=0, atol=0)
    # ... and training continues there.
    result = train_lib.train(config4, tmp_path, devices=four, pipeline_factory=batches_factory())
    assert sorted(result["losses"]) == [3] and np.isfinite(result["losses"][3])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path) -> None:
    config = tiny_config("total_steps=4", "checkpoint_every=2")
    with pytest.raises(train_lib.NonFiniteLossError, match=r"at step 3.*step 2"):
        train_lib.train(config, tmp_path, pipeline_factory=batches_factory(nan_at=2))
    assert checkpoint.make_manager(tmp_path, read_only=True).all_steps() == [2]
    _, params, _, step = checkpoint.restore_params(tmp_path)
    assert step == 2 and all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))


def test_mismatched_checkpoint_is_an_error(tmp_path) -> None:
    config = tiny_config("total_steps=1", "checkpoint_every=1")
    train_lib.train(config, tmp_path, pipeline_factory=batches_factory())
    other = tiny_config("total_steps=2", "model.fpn_channels=16")
    with pytest.raises(ValueError, match="does not match the config's model"):
        train_lib.train(other, tmp_path, pipeline_factory=batches_factory())
    assert checkpoint.read_config(tmp_path).model.fpn_channels == 32  # config.json untouched


def test_dry_run_reports_params_flops_memory() -> None:
    config = tiny_config("mesh.fsdp=2")
    report = dry_run.run(config)
    assert report["mesh"] == {"data": 4, "fsdp": 2, "tensor": 1}
    assert {"img_backbone", "img_neck", "render_model"} <= set(report["param_counts"])
    assert report["total_params"] == sum(report["param_counts"].values()) > 0
    assert report["flops_per_step_per_device"] > 0
    assert report["peak_bytes_per_device"] > report["temp_bytes_per_device"] > 0

"""Trainer tests on 8 fake CPU devices with the real tiny model (configs/mim4d_tiny.py:test).

One 4-step run (`straight`, module fixture) is shared by the resume, restore and reader tests;
every run with the same config reuses its compiled step through the persistent cache.
Subprocess tests (SIGKILL, SIGTERM, two processes, the CLI) are in test_train_slow.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal

import jax
import numpy as np
import optax
import pytest
from train_fixtures import (
    SyntheticBatches,
    batches_factory,
    compilation_cache_fixture,  # noqa: F401 (registers the session fixture)
    tiny_config,
)

from mim4d_jax import train as train_lib
from mim4d_jax.training import backbone_init, checkpoint, dry_run
from mim4d_jax.training import mesh as mesh_lib
from mim4d_jax.training import optimizer as optim_lib
from mim4d_jax.training import step as step_lib
from mim4d_jax.training.logger import MetricsLogger
from mim4d_jax.training.overlay import overlay
from mim4d_jax.user_errors import UserError


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
    # The reference's 0.1 (the tiny config's own 1.0 would not tell the groups apart).
    config = tiny_config("optim.warmup_steps=0", "optim.backbone_lr_mult=0.1")
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

pytestmark = pytest.mark.usefixtures("compilation_cache")


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple:
    """(workdir, result) of 4 uninterrupted steps of configs/mim4d_tiny.py:test."""
    request.getfixturevalue("compilation_cache")  # compile once, share with later runs
    workdir = tmp_path_factory.mktemp("straight")
    return workdir, train_lib.train(tiny_config(), workdir, pipeline_factory=batches_factory())


@pytest.mark.slow
def test_straight_run_writes_metrics_and_checkpoints(straight) -> None:
    workdir, result = straight
    assert result["step"] == 4 and all(np.isfinite(list(result["losses"].values())))
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 and '"loss"' in lines[0] and '"lr"' in lines[0]
    assert any((workdir / "tensorboard").iterdir())
    assert checkpoint.read_config(workdir).to_dict() == tiny_config().to_dict()
    assert checkpoint.make_manager(workdir, read_only=True).all_steps() == [2, 4]


@pytest.mark.slow
def test_loss_falls_on_a_repeated_batch(tmp_path) -> None:
    result = train_lib.train(tiny_config(), tmp_path, pipeline_factory=batches_factory(repeat=True))
    losses = [result["losses"][s] for s in range(1, 5)]
    assert losses[3] < 0.95 * losses[0] and losses[2] < losses[0], losses


@pytest.mark.slow
def test_single_device_matches_sharded_run(straight) -> None:
    """The same two steps on one device give the 8-device run's losses."""
    _, result = straight
    config = tiny_config()
    mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
    with jax.set_mesh(mesh):
        fns = step_lib.make_train_fns(config, mesh)
        state = fns.init_state(*fns.init_params())
        batches = SyntheticBatches(config, mesh)
        for step in (1, 2):
            state, metrics = fns.train_step(state, next(batches))
            np.testing.assert_allclose(float(metrics["loss"]), result["losses"][step], rtol=2e-4)


class _StopAfter(SyntheticBatches):
    """Sends this process SIGTERM while fetching batch `stop_at` (a preemption mid-run)."""

    def __init__(self, config, mesh, stop_at: int) -> None:
        super().__init__(config, mesh)
        self.stop_at = stop_at

    def __next__(self):
        if self.index == self.stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().__next__()


@pytest.mark.slow
def test_sigterm_then_resume_is_exact(straight, tmp_path) -> None:
    """4 steps straight == 3 steps, SIGTERM, resume to 4: same losses, same parameters."""
    straight_dir, straight_result = straight
    stopped = train_lib.train(
        tiny_config(), tmp_path, pipeline_factory=lambda c, m: _StopAfter(c, m, stop_at=2)
    )
    # SIGTERM arrived while step 3 was being prepared: step 3 ran, was saved, and the run ended
    # (3 is not a checkpoint_every multiple).
    assert stopped["step"] == 3
    assert checkpoint.make_manager(tmp_path, read_only=True).all_steps() == [2, 3]
    resumed = train_lib.train(tiny_config(), tmp_path, pipeline_factory=batches_factory())
    assert sorted(resumed["losses"]) == [4]
    assert {**stopped["losses"], **resumed["losses"]} == straight_result["losses"]  # bitwise
    _, p_straight, b_straight, s1 = checkpoint.restore_params(straight_dir)
    config, p_resumed, b_resumed, s2 = checkpoint.restore_params(tmp_path)
    assert s1 == s2 == 4 and config.model.backbone == "tiny"
    _leaves_close(p_straight, p_resumed, rtol=0, atol=0)
    _leaves_close(b_straight, b_resumed, rtol=0, atol=0)


@pytest.mark.slow
def test_restore_onto_four_devices(straight, tmp_path) -> None:
    """A checkpoint written on 8 devices (data=8) restores onto 4 (data=2, fsdp=2)."""
    shutil.copytree(straight[0], tmp_path, dirs_exist_ok=True)
    _, saved_params, _, _ = checkpoint.restore_params(tmp_path)
    four = jax.devices()[:4]
    config = tiny_config("mesh.fsdp=2")
    mesh = mesh_lib.make_mesh(config.mesh, four)
    with jax.set_mesh(mesh):
        fns = step_lib.make_train_fns(config, mesh)
        manager = checkpoint.make_manager(tmp_path, read_only=True)
        state, data_state = checkpoint.restore(manager, 4, fns.abstract_state, tmp_path)
        manager.close()
    assert data_state == {"index": 4} and int(state["step"]) == 4
    for leaf, sharding in zip(jax.tree.leaves(state), jax.tree.leaves(fns.shardings), strict=True):
        assert leaf.sharding == sharding and leaf.sharding.device_set <= set(four)
    assert any("fsdp" in str(s.spec) for s in jax.tree.leaves(fns.shardings["params"]))
    _leaves_close(state["params"], saved_params, rtol=0, atol=0)
    # The trainer takes the same path: it resumes at step 4 on the 4-device mesh (and is done).
    result = train_lib.train(config, tmp_path, devices=four, pipeline_factory=batches_factory())
    assert result == {"step": 4, "losses": {}}


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path) -> None:
    with pytest.raises(train_lib.NonFiniteLossError, match=r"at step 3.*step 2") as error:
        train_lib.train(tiny_config(), tmp_path, pipeline_factory=batches_factory(nan_at=2))
    # A user error (one line and a hint on the command line), not a traceback.
    assert isinstance(error.value, UserError) and "resume" in error.value.hint
    assert checkpoint.make_manager(tmp_path, read_only=True).all_steps() == [2]
    _, params, _, step = checkpoint.restore_params(tmp_path)
    assert step == 2 and all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))


@pytest.mark.slow
def test_mismatched_checkpoint_is_an_error(straight, tmp_path) -> None:
    shutil.copytree(straight[0], tmp_path, dirs_exist_ok=True)
    other = tiny_config("model.fpn_channels=16")
    with pytest.raises(ValueError, match="does not match the config's model"):
        train_lib.train(other, tmp_path, pipeline_factory=batches_factory())
    assert checkpoint.read_config(tmp_path).model.fpn_channels == 32  # config.json untouched


@pytest.mark.slow
def test_dry_run_reports_params_flops_memory() -> None:
    report = dry_run.run(tiny_config())
    assert report["mesh"] == {"data": 8, "fsdp": 1, "tensor": 1}
    assert {"img_backbone", "img_neck", "render_model"} <= set(report["param_counts"])
    assert report["total_params"] == sum(report["param_counts"].values()) > 0
    assert report["flops_per_step_per_device"] > 0
    assert report["peak_bytes_per_device"] > report["temp_bytes_per_device"] > 0


def test_ema_update() -> None:
    ema = {"w": np.zeros(3, np.float32)}
    params = {"w": np.ones(3, np.float32)}
    np.testing.assert_allclose(optim_lib.ema_update(ema, params, 0.9)["w"], 0.1, rtol=1e-6)


def test_merge_backbone_and_overlay_replace_all_and_reject_misfits() -> None:
    mesh = mesh_lib.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    params = {
        "img_backbone": {"stages": {0: {"w": np.zeros((2, 3), np.float32)}}},
        "img_neck": {"w": np.zeros(2, np.float32)},
    }
    shardings = jax.tree.map(lambda _: mesh_lib.replicated(mesh), params)
    imported = {"stages": {"0": {"w": np.ones((2, 3))}}}  # string list keys, float64
    merged = backbone_init.merge_backbone(params, imported, shardings)
    np.testing.assert_array_equal(merged["img_backbone"]["stages"][0]["w"], 1.0)
    assert merged["img_backbone"]["stages"][0]["w"].dtype == np.float32
    assert merged["img_neck"] is params["img_neck"]
    with pytest.raises(ValueError, match=r"stages\.0\.w: init.backbone \(3, 2\) vs model \(2, 3\)"):
        backbone_init.merge_backbone(params, {"stages": {"0": {"w": np.ones((3, 2))}}}, shardings)
    with pytest.raises(ValueError, match="missing"):
        backbone_init.merge_backbone(params, {"stages": {}}, shardings)
    extra = {"stages": {"0": {"w": np.ones((2, 3)), "b": np.ones(3)}}}
    with pytest.raises(ValueError, match=r"img_backbone\.stages\.0\.b: not a parameter"):
        backbone_init.merge_backbone(params, extra, shardings)
    # The probe's use: everything but a skipped new head, which keeps its own values.
    params["head"] = {"w": np.full(2, 7.0, np.float32)}
    shardings["head"] = {"w": mesh_lib.replicated(mesh)}
    pre = {"img_backbone": imported, "img_neck": {"w": np.full(2, 3.0)}}
    merged = overlay(params, pre, shardings, source_name="ckpt", skip=("head",))
    np.testing.assert_array_equal(merged["img_neck"]["w"], 3.0)
    np.testing.assert_array_equal(merged["head"]["w"], 7.0)


def test_metrics_logger_is_one_step_late_and_writes_images(tmp_path) -> None:
    import tensorflow as tf

    logger = MetricsLogger(tmp_path, total_steps=2, log_every=1, image_log_every=2, start_step=0)

    def metrics(loss: float) -> dict:
        images = {"rgb": np.full((2, 4, 4, 3), 0.5), "depth": np.arange(16.0).reshape(4, 4)}
        scalars = {"loss": loss, "grad_norm": 1.0, "lr": 0.25, "rgb_loss": loss / 2}
        return {
            **{k: jax.numpy.asarray(v) for k, v in scalars.items()},
            "finite": jax.numpy.asarray(np.isfinite(loss)),
            "images": images,
        }

    assert logger.push(1, metrics(3.0)) is None  # nothing read until step 2 is queued
    assert logger.push(2, metrics(np.nan)) == {
        "step": 1,
        "loss": 3.0,
        "grad_norm": 1.0,
        "lr": 0.25,
        "rgb_loss": 1.5,
        "finite": True,
    }
    assert logger.flush()["finite"] is False
    logger.close()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2] and lines[0]["loss"] == 3.0
    tags = {
        value.tag
        for path in (tmp_path / "tensorboard").iterdir()
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    }
    assert {"loss", "rgb_loss", "lr", "render/rgb", "render/depth"} <= tags

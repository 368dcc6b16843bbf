"""The BEV probe: its IoU, its loss, the image-blind control, and a resumed end-to-end run."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from train_fixtures import compilation_cache_fixture  # noqa: F401 (session fixture)

from mim4d_jax import probe as probe_lib
from mim4d_jax.data.example import make_example
from mim4d_jax.data.reader import ClipReader
from mim4d_jax.evaluation.bev_probe import BEVIoU, segmentation_losses
from mim4d_jax.models.bev_head import build_probe
from mim4d_jax.training.config_files import load_config
from tests import data_fixtures


def test_iou_of_a_hand_made_prediction():
    target = np.zeros((8, 8))
    target[2:4, 1:6] = 1.0  # 10 vehicle cells
    prob = np.full((8, 8), 0.1)
    prob[2:4, 1:4] = 0.9  # 6 of them found confidently
    prob[6, 6:8] = 0.7  # 2 false positives between the thresholds 0.65 and 0.9
    scores = BEVIoU()
    scores.add(prob, target)
    result = scores.result()
    assert result["iou"] == pytest.approx(6 / (6 + 2 + 4))  # at 0.5
    # Above 0.7 the false positives vanish: IoU 6 / 10, the sweep's best.
    assert result["best_iou"] == pytest.approx(0.6)
    assert 0.7 < result["best_threshold"] <= 0.9
    assert result["positive_fraction"] == pytest.approx(10 / 64)
    # A second, empty-prediction sample adds its cells as misses (dataset-level IoU).
    scores.add(np.zeros((8, 8)), target)
    assert scores.result()["iou"] == pytest.approx(6 / (6 + 2 + 4 + 10))


@pytest.mark.parametrize("loss", ["focal_dice", "bce_dice"])
def test_segmentation_loss_is_small_for_a_confident_right_answer(loss):
    probe = ml_collections.ConfigDict(
        dict(loss=loss, focal_gamma=2.0, focal_alpha=0.25, dice_weight=1.0)
    )
    target = jnp.zeros((1, 6, 6)).at[0, 1:3, 1:4].set(1.0)
    right = segmentation_losses(jnp.where(target > 0, 12.0, -12.0), target, probe)
    wrong = segmentation_losses(jnp.where(target > 0, -12.0, 12.0), target, probe)
    assert float(right["cls"]) < 1e-4 and float(right["dice"]) < 1e-3
    assert float(wrong["cls"]) > 1.0 and float(wrong["dice"]) > 0.9


def _dataset(tmp_path, frames=2):
    root = tmp_path / "data"
    clips = [data_fixtures.make_clip(i, frames, (320, 180), 0) for i in range(10)]
    data_fixtures.write_dataset(
        root, clips[:8], frames=frames, stored_wh=(320, 180), split="train", with_boxes=True
    )
    return data_fixtures.write_dataset(
        root, clips[8:], frames=frames, stored_wh=(320, 180), split="val", with_boxes=True
    )


def _probe_config(data_dir, *overrides):
    return load_config(
        "configs/probe_bev.py:tiny",
        [
            f"data.dir={data_dir.parent.parent}",
            "data.frames=2",
            "data.num_rays=16",
            "batch_size=8",
            "data.bev_hw=(32, 32)",
            "probe.head_channels=8",
            "probe.eval_max_samples=2",
            "probe.panels=1",
            "log_every=1",
            "optim.warmup_steps=1",
            *overrides,
        ],
    )


def test_bev_target_marks_the_fixture_cars(tmp_path):
    data_dir = _dataset(tmp_path)
    config = _probe_config(data_dir)
    reader = ClipReader(config, "train")
    clip, where = reader.read_clip(0)
    reader.close()
    target = make_example(clip, config, seed=0, position=0, train=False, where=where)["bev_target"]
    # 1.6 m cells over 51.2 m: the 1.9 x 4.5 m car at (6, 4) covers the cells around
    # column (6 + 25.6) / 1.6 = 19.75 and row (4 + 25.6) / 1.6 = 18.5; the pedestrian is not a
    # vehicle, and the second car lies along x (yaw pi/2).
    assert target[18, 19] == 1.0 and target[18, 17] == 0.0
    row, col = int((-10 + 25.6) / 1.6), int((-8 + 25.6) / 1.6)
    assert target[row, col] == 1.0
    assert target[int((3 + 25.6) / 1.6), int((3 + 25.6) / 1.6)] == 0.0


def test_blind_images_removes_all_image_information(tmp_path):
    data_dir = _dataset(tmp_path)
    config = _probe_config(data_dir, "ablation.blind_images=True")
    reader = ClipReader(config, "train")
    clip, where = reader.read_clip(0)
    reader.close()
    other = {**clip, "jpegs": [[data_fixtures.gradient_jpeg(320, 180, 999)] * 2] * 6}
    a = make_example(clip, config, seed=0, position=0, train=False, where=where)
    b = make_example(other, config, seed=0, position=0, train=False, where=where)
    assert not np.any(a["images"]) and not np.any(b["images"])
    assert not np.allclose(a["ray_rgb"], b["ray_rgb"])  # the targets still see the images
    np.testing.assert_array_equal(a["bev_target"], b["bev_target"])
    config = probe_lib.resolve_config(config, "random", "lift")
    model = build_probe(config, nnx.Rngs(0))
    logits = [
        model.bev_logits(
            jnp.asarray(e["images"])[None],
            jnp.asarray(e["lidar2img"])[None],
            freeze_lift=True,
            train=False,
        )
        for e in (a, b)
    ]
    np.testing.assert_array_equal(np.asarray(logits[0]), np.asarray(logits[1]))


def test_probe_refuses_a_dataset_without_boxes(tmp_path):
    clips = [data_fixtures.make_clip(i, 2, (320, 180), 0) for i in range(2)]
    data_dir = data_fixtures.write_dataset(tmp_path / "old", clips, frames=2, stored_wh=(320, 180))
    config = probe_lib.resolve_config(_probe_config(data_dir), "random", "lift")
    with pytest.raises(ValueError, match=r"has no 3D boxes.*re-convert"):
        probe_lib.run(config, str(tmp_path / "run"))


def test_probe_trains_resumes_and_scores(tmp_path, compilation_cache):
    data_dir = _dataset(tmp_path)
    workdir = tmp_path / "run"
    config = probe_lib.resolve_config(
        _probe_config(data_dir, "total_steps=2", "checkpoint_every=1"), "random", "lift"
    )
    first = probe_lib.run(config, str(workdir))
    assert first["step"] == 2 and 0.0 <= first["iou"] <= 1.0 and first["num_samples"] == 2
    frozen = {k: v for k, v in _params(workdir).items() if not k.startswith("bev_head")}
    # Resume to step 4: the run continues from checkpoint 2, the frozen lift never moves.
    config = probe_lib.resolve_config(
        _probe_config(data_dir, "total_steps=4", "checkpoint_every=1"), "random", "lift"
    )
    result = probe_lib.run(config, str(workdir))
    steps = [json.loads(line)["step"] for line in (workdir / "probe/metrics.jsonl").open()]
    assert steps == [1, 2, 3, 4]
    assert result["step"] == 4 and result["freeze"] == "lift" and result["init"] == "random"
    saved = json.loads((workdir / "probe/result.json").read_text())
    assert saved["iou"] == result["iou"] and (workdir / "probe/panel_0.png").exists()
    # The head is also scored on the split it was fitted on (probe.eval_max_samples=2 of it).
    assert saved["fit_split"] == "train" and saved["fit_num_samples"] == 2
    assert 0.0 <= saved["fit_iou"] <= saved["fit_best_iou"] <= 1.0
    after = _params(workdir)
    for key, value in frozen.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    assert any(
        not np.array_equal(after[k], v)
        for k, v in _params_at(workdir, 2).items()
        if k.startswith("bev_head")
    )


def _params_at(workdir, step):
    from mim4d_jax.training import checkpoint

    config = checkpoint.read_config(workdir / "probe")
    _, params, _, _ = checkpoint.restore_params(
        workdir / "probe", step, config=config, build=build_probe
    )
    return {
        ".".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
    }


def _params(workdir):
    return _params_at(workdir, None)

"""Evaluation: a volume with known geometry scores the expected error through the same chain
as `mim4d_jax.evaluate` (lidar2img -> camera rays -> renderer -> metrics)."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from render_fixtures import analytic_field, configs, sdf_volume
from train_fixtures import compilation_cache_fixture  # noqa: F401 (session fixture)

from mim4d_jax.evaluation import metrics as eval_metrics
from mim4d_jax.geometry import camera_rays
from mim4d_jax.rendering.renderer import Renderer

PLANE_Z = -1.0
WIDTH, HEIGHT, FOCAL = 48, 32, 40.0


def _camera() -> tuple[np.ndarray, np.ndarray]:
    """lidar2img of a camera 2 m above the volume origin, looking along +y, pitched 35 degrees
    down (camera x right, y down, z forward), and its camera -> volume transform."""
    pitch = np.deg2rad(35.0)
    forward = np.array([0.0, np.cos(pitch), -np.sin(pitch)])
    right = np.array([1.0, 0.0, 0.0])
    down = np.cross(forward, right)
    cam2vol = np.eye(4)
    cam2vol[:3, :3] = np.stack([right, down, forward], axis=1)
    cam2vol[:3, 3] = [0.0, 0.0, 2.0]
    k44 = np.eye(4)
    k44[:3, :3] = [[FOCAL, 0, WIDTH / 2 - 0.5], [0, FOCAL, HEIGHT / 2 - 0.5], [0, 0, 1]]
    return k44 @ np.linalg.inv(cam2vol), cam2vol


def _analytic_range(cam2vol: np.ndarray, uv_p2: np.ndarray) -> np.ndarray:
    """Euclidean distance from the camera to the plane z = PLANE_Z along each pixel ray."""
    dirs_cam = np.stack(
        [(uv_p2[:, 0] - (WIDTH / 2 - 0.5)) / FOCAL, (uv_p2[:, 1] - (HEIGHT / 2 - 0.5)) / FOCAL],
        axis=-1,
    )
    dirs_cam = np.concatenate([dirs_cam, np.ones((len(uv_p2), 1))], axis=-1)
    dirs_vol = dirs_cam @ cam2vol[:3, :3].T
    t = (PLANE_Z - cam2vol[2, 3]) / dirs_vol[:, 2]  # camera z-depth: dirs_cam has z = 1
    return np.where(t > 0, t * np.linalg.norm(dirs_cam, axis=-1), 0.0)


def test_plane_scores_expected_depth_and_colour_errors():
    render_cfg, model_cfg = configs()
    field = analytic_field(render_cfg, colour=0.3, inv_s=2000.0)
    renderer = Renderer.from_configs(render_cfg, model_cfg)
    vol = sdf_volume(model_cfg, lambda p: p[..., 2] - PLANE_Z)
    lidar2img, cam2vol = _camera()
    uv_p2 = camera_rays.pixel_grid((WIDTH, HEIGHT), stride=2).reshape(-1, 2)
    rgb, depth, z_to_range = renderer.render_pixels(
        field, vol, jnp.asarray(lidar2img[None], jnp.float32), jnp.asarray(uv_p2)
    )
    truth = _analytic_range(cam2vol, uv_p2)
    # Only pixels whose plane hit lies inside the 6.4 m volume carry a valid target.
    hit_inside = (truth > 0) & (truth < 6.0)
    gt = np.where(hit_inside, truth, 0.0)
    assert hit_inside.sum() > 50

    exact = eval_metrics.DepthErrors()
    exact.add(np.asarray(depth[0]), gt)
    assert exact.result()["depth_abs_rel"] < 0.02
    assert exact.result()["depth_rmse_m"] < 0.08

    # Ground truth 10 % nearer than the surface: the prediction is 1/0.9 - 1 = 11.1 % too far.
    biased = eval_metrics.DepthErrors()
    biased.add(np.asarray(depth[0]), 0.9 * gt)
    assert biased.result()["depth_abs_rel"] == pytest.approx(1 / 0.9 - 1, abs=0.02)

    colour = eval_metrics.ColourErrors()
    colour.add(np.asarray(rgb[0][hit_inside]), np.full((hit_inside.sum(), 3), 0.4))
    assert colour.result()["rgb_psnr_db"] == pytest.approx(20.0, abs=0.2)  # MSE 0.01

    # z -> range factors are the pixel rays' lengths at camera depth 1.
    fx = (uv_p2 - np.array([WIDTH / 2 - 0.5, HEIGHT / 2 - 0.5])) / FOCAL
    np.testing.assert_allclose(z_to_range[0], np.sqrt(1 + (fx**2).sum(-1)), rtol=1e-5)


def test_metrics_ignore_rays_without_depth_and_reject_empty():
    errors = eval_metrics.DepthErrors()
    errors.add(np.array([2.0, 5.0, 7.0]), np.array([1.0, -1.0, 0.0]))
    assert errors.result() == {"depth_abs_rel": 1.0, "depth_rmse_m": 1.0, "depth_count": 1}
    with pytest.raises(ValueError, match="no valid depth"):
        eval_metrics.DepthErrors().result()


def test_blind_evaluation_equals_the_blind_control_and_keeps_its_own_file(
    tmp_path, compilation_cache
):
    """`--blind` feeds the model exactly what `ablation.blind_images` feeds it (zeros), scores
    the same LiDAR targets, and writes eval/blind/ without touching eval/step_N.json."""
    # Through the command line, as users run it.
    import subprocess
    import sys

    from train_fixtures import REPO_ROOT, subprocess_env, tiny_config

    from mim4d_jax.training import checkpoint
    from tests import data_fixtures

    clips = [data_fixtures.make_clip(i, 3, (320, 180), 0) for i in range(2)]
    data_dir = tmp_path / "data"
    data_fixtures.write_dataset(data_dir, clips, frames=3, stored_wh=(320, 180), split="val")
    results = {}
    for name, blind_images in (("seeing", False), ("control", True)):
        workdir = tmp_path / name
        config = tiny_config(f"data.dir={data_dir}", f"ablation.blind_images={blind_images}")
        checkpoint.write_config(workdir, config)
        for blind in (False, True) if name == "seeing" else (False,):
            args = ["--workdir", str(workdir), "--step", "0", "--max_clips", "1"]
            args += ["--stride", "8", "--panels", "0", f"--blind={blind}"]
            subprocess.run(
                [sys.executable, "-m", "mim4d_jax.evaluate", *args],
                cwd=REPO_ROOT,
                env=subprocess_env(1, compilation_cache),
                check=True,
                capture_output=True,
            )
            found = workdir / ("eval/blind" if blind else "eval") / "step_0.json"
            results[name, blind] = json.loads(found.read_text())
    seeing, removed = results["seeing", False], results["seeing", True]
    control = results["control", False]
    assert removed["blind"] and not seeing["blind"]
    for volume in ("direct", "predicted"):
        assert removed[volume]["depth_abs_rel"] == pytest.approx(
            control[volume]["depth_abs_rel"], rel=1e-5
        )
        # The images change the (random-init) model's renders: removing them is not a no-op.
        assert removed[volume]["depth_abs_rel"] != pytest.approx(
            seeing[volume]["depth_abs_rel"], rel=1e-4
        )
    # The blind evaluation did not replace the seeing one's file.
    assert json.loads((tmp_path / "seeing" / "eval" / "step_0.json").read_text()) == seeing


def test_shuffled_evaluation_feeds_each_clip_another_clips_images(tmp_path, compilation_cache):
    """`--shuffled` on clips [c0, c1] scores what a plain evaluation scores on a dataset whose
    clips carry each other's images ([c0 with c1's images, c1 with c0's]): the depth targets
    stay the clip's own, only the model's input comes from the other clip."""
    import subprocess
    import sys

    from train_fixtures import REPO_ROOT, subprocess_env, tiny_config

    from mim4d_jax.training import checkpoint
    from tests import data_fixtures

    clips = [data_fixtures.make_clip(i, 3, (320, 180), 0) for i in range(2)]
    swapped = [
        {**clips[0], "images": clips[1]["images"]},
        {**clips[1], "images": clips[0]["images"]},
    ]
    results = {}
    runs = (
        ("shuffled", clips, True, False),
        ("swapped", swapped, False, False),
        # The controls' fast mode: the same LiDAR-ray depth without the pixel renders.
        ("shuffled_lidar_only", clips, True, True),
    )
    for name, dataset, shuffled, lidar_only in runs:
        data_dir = tmp_path / f"data_{name}"
        data_fixtures.write_dataset(data_dir, dataset, frames=3, stored_wh=(320, 180), split="val")
        workdir = tmp_path / name
        checkpoint.write_config(workdir, tiny_config(f"data.dir={data_dir}"))
        args = ["--workdir", str(workdir), "--step", "0", "--stride", "8", "--panels", "0"]
        args += [f"--shuffled={shuffled}", f"--lidar_only={lidar_only}"]
        subprocess.run(
            [sys.executable, "-m", "mim4d_jax.evaluate", *args],
            cwd=REPO_ROOT,
            env=subprocess_env(1, compilation_cache),
            check=True,
            capture_output=True,
        )
        found = workdir / "eval" / ("shuffled" if shuffled else "") / "step_0.json"
        results[name] = json.loads(found.read_text())
    assert results["shuffled"]["shuffled"] and results["shuffled"]["num_clips"] == 2
    for volume in ("direct", "predicted"):
        for key in ("depth_abs_rel", "depth_rmse_m", "depth_count"):
            assert results["shuffled"][volume][key] == pytest.approx(
                results["swapped"][volume][key], rel=1e-5
            ), (volume, key)
            assert results["shuffled_lidar_only"][volume][key] == pytest.approx(
                results["shuffled"][volume][key], rel=1e-6
            ), (volume, key)
        assert "rgb_psnr_db" in results["shuffled"][volume]
        assert "rgb_psnr_db" not in results["shuffled_lidar_only"][volume]
    assert results["shuffled_lidar_only"]["lidar_only"]


def test_shuffled_evaluation_refuses_one_clip_and_the_blind_combination(tmp_path):
    """Each refusal names what is wrong, and a refused run leaves no eval/shuffled/ behind."""
    from train_fixtures import tiny_config

    from mim4d_jax import user_errors
    from mim4d_jax.evaluation import evaluate
    from mim4d_jax.training import checkpoint
    from tests import data_fixtures

    data_dir = tmp_path / "data"
    clip = data_fixtures.make_clip(0, 3, (320, 180), 0)
    data_fixtures.write_dataset(data_dir, [clip], frames=3, stored_wh=(320, 180), split="val")
    config = tiny_config(f"data.dir={data_dir}")
    workdir = tmp_path / "run"
    checkpoint.write_config(workdir, config)
    with pytest.raises(user_errors.ConfigError, match="--blind and --shuffled"):
        evaluate.run(config, str(workdir), 0, blind=True, shuffled=True)
    with pytest.raises(user_errors.ConfigError, match="--lidar_only .* --depth_gt"):
        evaluate.run(config, str(workdir), 0, shuffled=True, lidar_only=True, depth_gt="x")
    with pytest.raises(user_errors.DatasetError, match=r"at least 2 clips in split 'val'.* has 1"):
        evaluate.run(config, str(workdir), 0, shuffled=True)
    assert not (workdir / "eval" / "shuffled").exists()

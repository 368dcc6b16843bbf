"""The input pipeline on the one real nuScenes key frame (tests/data/nuscenes_sample),
converted by data_prep: rays must land on the scene at depths that agree with the annotations."""

import pickle

import jax
import numpy as np
import pytest
from scipy.spatial import cKDTree

from configs import mim4d_vs01
from data_prep.convert_nuscenes import convert
from data_prep.real_sample import build_real_sample_dataset
from mim4d_jax.data.pipeline import make_input_pipeline
from mim4d_jax.data.rays import RayConfig, filter_lidar
from mim4d_jax.data.reader import ClipReader


@pytest.fixture(scope="module")
def real_batch(real_sample_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    dataroot = build_real_sample_dataset(real_sample_dir, root / "nuscenes")
    convert(dataroot, "v1.0-mini", root / "clips", frames=3)
    config = mim4d_vs01.get_config()
    config.data.dir = str(root / "clips")
    config.batch_size = 1
    config.data.num_parallel_calls = 2
    mesh = jax.make_mesh(
        (1, 1, 1),
        ("data", "fsdp", "tensor"),
        devices=jax.devices()[:1],
        axis_types=(jax.sharding.AxisType.Auto,) * 3,
    )
    with make_input_pipeline(config, mesh) as pipe:
        batch = {k: np.asarray(v)[0] for k, v in next(pipe).items()}
    clip, _ = ClipReader(config, "train").read_clip(0)
    with open(next(real_sample_dir.glob("*.pkl")), "rb") as f:
        info = pickle.load(f)["data_list"][0]
    return config, batch, clip, info


def _ray_points(batch, i):
    return batch["ray_origin"][i] + batch["ray_dir"][i] * batch["ray_depth"][i, :, None]


def test_real_rays_hit_lidar_points_at_plausible_depths(real_batch):
    config, batch, clip, _ = real_batch
    assert batch["images"].shape == (6, 3, 480, 800, 3)
    depth = batch["ray_depth"]
    valid = depth > 0
    assert valid.mean() > 0.5, valid.reshape(2, 6, -1).mean(-1)
    assert depth[valid].min() > 0.5 and depth[valid].max() < 75.0
    assert 5.0 < np.median(depth[valid]) < 40.0
    # Frame-0 ray targets must sit on real LiDAR points moved into the frame-0 volume frame
    # (the LiDAR calibration at CAM_FRONT's ego pose, ~0.3 m from the LiDAR-time pose).
    points = filter_lidar(
        clip["lidar_points"][:, :3].astype(np.float64), RayConfig.from_config(config)
    )
    key2vol = np.linalg.solve(
        clip["ego2global"][0, 0] @ clip["lidar2ego"], clip["lidar_ego2global"] @ clip["lidar2ego"]
    )
    points = points @ key2vol[:3, :3].T + key2vol[:3, 3]
    targets = _ray_points(batch, 0)[valid[0]]
    nearest, _ = cKDTree(points).query(targets)
    # half-pixel snap at the widest camera (CAM_BACK f ~ 400 px at 800 px): <= 0.0018 m per m
    assert np.all(nearest < 0.0018 * np.linalg.norm(targets, axis=1) + 0.05)


def test_real_ray_depths_agree_with_annotated_boxes(real_batch):
    config, batch, _, info = real_batch
    num_rays = config.data.num_rays
    targets = _ray_points(batch, 0)
    checked, agreeing = 0, 0
    for n, cam in enumerate(config.data.cameras):
        sl = slice(n * num_rays, (n + 1) * num_rays)
        valid = batch["ray_depth"][0, sl] > 0
        proj = np.concatenate([targets[sl], np.ones((num_rays, 1))], 1) @ batch["lidar2img"][n, 0].T
        cam_depth = proj[:, 2]
        # back to 1600x900 pixel coordinates of the 2-D annotations (half-pixel convention)
        full_uv = (proj[:, :2] / cam_depth[:, None] + 0.5) * 2.0 - 0.5
        for inst in info["cam_instances"][cam]:
            x0, y0, x1, y1 = inst["bbox"]
            size_l, _, size_w = inst["bbox_3d"][3:6]
            if inst["depth"] > 45.0 or (x1 - x0) < 40:
                continue
            # the central half of the 2-D box, where the object itself is usually visible
            cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 4, (y1 - y0) / 4
            inside = valid & (np.abs(full_uv[:, 0] - cx) < hw) & (np.abs(full_uv[:, 1] - cy) < hh)
            if inside.sum() < 5:
                continue
            checked += 1
            # The visible surface lies between the box front and its centre (depth = centre z).
            # Thin objects (pedestrians, poles) let background through the box, hence the
            # 10th percentile as well as the median.
            errors = np.percentile(cam_depth[inside], [10, 50]) - inst["depth"]
            agreeing += np.any((-0.5 * max(size_l, size_w) - 1.0 < errors) & (errors < 1.0))
    assert checked >= 5
    assert agreeing >= 0.8 * checked, (agreeing, checked)

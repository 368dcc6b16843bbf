"""Geometry, masks and ray sampling of one example (host-side NumPy), on hand-made clips."""

import io

import numpy as np
import pytest
from PIL import Image

from configs import mim4d_tiny
from mim4d_jax.data import masks, rays, schema
from mim4d_jax.data.clip import decode_resize, parse_clip
from mim4d_jax.data.example import IMAGENET_MEAN, IMAGENET_STD, check_config, make_example
from mim4d_jax.geometry import poses
from tests import data_fixtures

STORED_WH = (320, 180)


def _config(frames=3, num_rays=64):
    c = mim4d_tiny.get_config("test")
    c.data.frames = frames
    c.data.num_rays = num_rays
    return c


def _clip(frames=3, index=1, stored_frames=3):
    raw = data_fixtures.make_clip(index, stored_frames, STORED_WH, seed=0)
    features = schema.clip_features(stored_frames, STORED_WH[::-1])
    return parse_clip(
        features.serialize_example(raw), stored_frames, schema.CAMERAS, frames, "t"
    ), raw


def test_resize_intrinsics_follow_the_resized_pixels():
    # A bright dot at stored pixel (200, 100) must land where the resized K puts it.
    rgb = np.zeros((STORED_WH[1], STORED_WH[0], 3), np.uint8)
    rgb[98:102, 198:202] = 255  # 4x4 block centred on (199.5, 99.5)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    for size_wh in ((160, 90), (100, 72)):
        pixels, stored = decode_resize(buf.getvalue(), size_wh, "dot")
        assert stored == STORED_WH and pixels.shape == (size_wh[1], size_wh[0], 3)
        weight = pixels[..., 0].astype(np.float64)
        vs, us = np.mgrid[0 : size_wh[1], 0 : size_wh[0]]
        centroid = np.array([(us * weight).sum(), (vs * weight).sum()]) / weight.sum()
        scale = np.array([[size_wh[0] / STORED_WH[0], size_wh[1] / STORED_WH[1]]])
        k = poses.resize_intrinsics(np.eye(3)[None, None], scale[None])[0, 0]
        np.testing.assert_allclose(centroid, (k @ [199.5, 99.5, 1.0])[:2], atol=0.05)


def test_lidar2img_and_vol2ref_match_a_direct_global_projection():
    clip, raw = _clip()
    scale = np.full((6, 3, 2), 0.5)
    k_nt33 = poses.resize_intrinsics(clip["intrinsics"], scale)
    c2v = poses.cam2vol(clip["cam2ego"], clip["ego2global"], clip["lidar2ego"], 0)
    l2i = poses.lidar2img(k_nt33, c2v)
    v2r = poses.vol2ref(clip["ego2global"], clip["lidar2ego"], 0)
    point_global = np.array([*raw["lidar_ego2global"][:2, 3] + [9.0, 4.0], 0.7, 1.0])
    point_vol = []
    for t in range(3):
        # volume frame t = LiDAR calibration at CAM_FRONT's ego pose of frame t
        vol2global = data_fixtures.ego_pose(_front_time(raw, t), 1) @ data_fixtures.LIDAR2EGO
        p_t = np.linalg.solve(vol2global, point_global)
        point_vol.append(p_t)
        np.testing.assert_allclose(v2r[t] @ p_t, point_vol[0], atol=1e-3)
        for n in range(6):
            cam_p = np.linalg.solve(raw["ego2global"][n, t] @ raw["cam2ego"][n, t], point_global)
            if cam_p[2] <= 0:
                continue
            uvz = k_nt33[n, t] @ cam_p[:3]
            proj = l2i[n, t] @ p_t
            np.testing.assert_allclose(proj[:2] / proj[2], uvz[:2] / uvz[2], atol=1e-3)
            np.testing.assert_allclose(proj[2], cam_p[2], atol=1e-4)
    assert np.linalg.norm(point_vol[2][:3] - point_vol[0][:3]) > 1.0  # the ego really moved


def _front_time(raw, t):
    return (raw["cam_timestamps"][0, t] - 1_000_000) / 1e6


def test_patch_mask_keeps_exactly_round_n_patches_per_image():
    grid = masks.patch_grid((800, 480), 32)
    assert grid == (15, 25)
    keep = masks.random_patch_keep(np.random.default_rng(3), 18, grid, 0.3)
    assert keep.shape == (18, 15, 25) and keep.dtype == np.float32
    np.testing.assert_array_equal(keep.reshape(18, -1).sum(1), round(375 * 0.7))
    assert len({k.tobytes() for k in keep}) == 18  # independent per image
    again = masks.random_patch_keep(np.random.default_rng(3), 18, grid, 0.3)
    np.testing.assert_array_equal(keep, again)
    with pytest.raises(ValueError, match="mask_patch"):
        masks.patch_grid((800, 450), 32)


def test_lidar_filters_follow_the_reference():
    cfg = rays.RayConfig.from_config(mim4d_tiny.get_config("test"))  # pc_range +-25.6, -5..3
    points = np.array(
        [
            [0.0, 10.0, 0.0],  # kept
            [1.0, 1.0, 0.5],  # 3-D norm < 2.5
            [2.0, 1.5, 2.0],  # 3-D norm > 2.5 but ground-plane norm < 3
            [0.0, 24.0, 0.0],  # kept
            [0.0, 30.0, 0.0],  # outside pc_range
            [0.0, 10.0, -6.0],  # below pc_range
        ]
    )
    np.testing.assert_array_equal(rays.filter_lidar(points, cfg), points[[0, 3]])
    cfg_far = rays.RayConfig(**{**cfg.__dict__, "lidar_max_xy": 20.0})
    np.testing.assert_array_equal(rays.filter_lidar(points, cfg_far), points[[0]])


def test_lidar_rays_reproject_to_their_pixel_and_carry_its_colour():
    config = _config()
    clip, _ = _clip()
    ex = make_example(clip, config, seed=0, position=5)
    num_cams, num_rays = 6, config.data.num_rays
    w, h = config.data.image_size
    rgb = ex["images"] * IMAGENET_STD + IMAGENET_MEAN  # back to 0..255
    assert ex["target_frames"][0] == 0 and 1 <= ex["target_frames"][1] <= 2
    checked = 0
    for i, t in enumerate(ex["target_frames"]):
        for n in range(num_cams):
            sl = slice(n * num_rays, (n + 1) * num_rays)
            origin, direction, depth = (
                ex["ray_origin"][i, sl],
                ex["ray_dir"][i, sl],
                ex["ray_depth"][i, sl],
            )
            np.testing.assert_allclose(np.linalg.norm(direction, axis=1), 1.0, atol=1e-5)
            valid = depth > 0
            length = np.where(valid, depth, 10.0)
            target = np.concatenate(
                [origin + direction * length[:, None], np.ones((num_rays, 1))], 1
            )
            proj = target @ ex["lidar2img"][n, t].T.astype(np.float64)
            uv = proj[:, :2] / proj[:, 2:3]
            pix = np.rint(uv).astype(int)
            np.testing.assert_allclose(uv, pix, atol=2e-3)  # rays go through pixel centres
            assert np.all((pix >= 0) & (pix < [w, h]))
            np.testing.assert_allclose(
                ex["ray_rgb"][i, sl] * 255, rgb[n, t, pix[:, 1], pix[:, 0]], atol=0.02
            )
            top_up = ~valid
            np.testing.assert_array_equal(depth[top_up], -1.0)
            assert np.all(pix[top_up, 1] >= np.ceil(config.data.sky_fraction * h))
            assert np.all(pix[top_up] % config.data.top_up_stride == 0)
            checked += valid.sum()
    assert checked > 0.5 * 2 * num_cams * num_rays


def test_lidar_ray_targets_are_the_lidar_points_seen_from_each_frame():
    # Frame-t ray targets (volume coords of frame t) lie on key-frame LiDAR points moved into
    # frame t through the poses, up to the half-pixel snap of the ray to the pixel centre.
    config = _config(num_rays=32)
    clip, raw = _clip()
    ex = make_example(clip, config, seed=1, position=0)
    pts = rays.filter_lidar(
        clip["lidar_points"][:, :3].astype(np.float64), rays.RayConfig.from_config(config)
    )
    lidar2global = raw["lidar_ego2global"] @ data_fixtures.LIDAR2EGO
    for i, t in enumerate(ex["target_frames"]):
        vol2global = data_fixtures.ego_pose(_front_time(raw, t), 1) @ data_fixtures.LIDAR2EGO
        key2vol = np.linalg.solve(vol2global, lidar2global)
        pts_vol = pts @ key2vol[:3, :3].T + key2vol[:3, 3]
        valid = ex["ray_depth"][i] > 0
        targets = (
            ex["ray_origin"][i, valid] + ex["ray_dir"][i, valid] * ex["ray_depth"][i, valid, None]
        )
        nearest = np.min(np.linalg.norm(targets[:, None] - pts_vol[None], axis=2), axis=1)
        # snap <= half a pixel diagonal (0.71 px) at the smallest resized focal (CAM_BACK,
        # 0.5 * 160 = 80 px): 0.0089 m per metre of depth; + 1 cm for float32-stored poses.
        assert np.all(nearest < 0.0089 * ex["ray_depth"][i, valid] + 0.01)
        assert np.median(nearest) < 0.05


def test_too_few_lidar_hits_are_topped_up_and_one_frame_targets_frame_zero():
    config = _config(frames=1, num_rays=200)
    clip, _ = _clip(frames=1)
    clip["lidar_points"] = clip["lidar_points"][:40]
    ex = make_example(clip, config, seed=0, position=0)
    np.testing.assert_array_equal(ex["target_frames"], [0, 0])
    assert ex["ray_depth"].shape == (2, 6 * 200)
    per_cam = (ex["ray_depth"][0].reshape(6, 200) > 0).sum(1)
    assert per_cam.max() < 40 and (ex["ray_depth"] == -1).sum() > 0


def test_examples_are_a_pure_function_of_seed_and_position():
    config = _config()
    clip, _ = _clip()
    a = make_example(clip, config, seed=0, position=11)
    b = make_example(clip, config, seed=0, position=11)
    c = make_example(clip, config, seed=0, position=12)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["patch_keep"], c["patch_keep"])
    assert not np.array_equal(a["ray_dir"], c["ray_dir"])
    ev = make_example(clip, config, seed=0, position=11, train=False)
    assert np.all(ev["patch_keep"] == 1.0)
    np.testing.assert_array_equal(ev["images"][..., :90, :, :], a["images"][..., :90, :, :])
    assert np.all(a["images"][:, :, 90:] == 0)  # zero padding below the 90-row image


def test_config_errors_name_the_key():
    config = _config()
    config.data.pad_size = (160, 80)
    with pytest.raises(ValueError, match="pad_size"):
        check_config(config)
    config = _config(num_rays=100_000)
    with pytest.raises(ValueError, match="num_rays"):
        check_config(config)
    config = _config()
    config.data.cameras = ("CAM_FRONT", "CAM_SIDE")
    with pytest.raises(ValueError, match="data.cameras"):
        check_config(config)

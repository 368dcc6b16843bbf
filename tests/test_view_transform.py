"""Lift: a synthetic single-voxel case, invalid voxels, and agreement with torch grid_sample
(the reference's Uni3DViewTrans sampling, applied at voxel centres)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mim4d_jax.geometry.grid import VoxelGrid
from mim4d_jax.models.view_transform import lift_to_volume, project_points

PAD_HW = (32, 64)
DEPTH_MAX = 15.0
DEPTH_BINS = 16  # bin k <-> k metres: d / DEPTH_MAX * (DEPTH_BINS - 1) = d
# x in -3.5..3.5, y (forward) -4..11 (integer depths), z -1.5..1.5 at the centres
GRID = VoxelGrid.from_config((-4.0, -4.5, -2.0, 4.0, 11.5, 2.0), (1.0, 1.0, 1.0))


def _lidar2img(focal: float, yaw: float = 0.0, shift_x: float = 0.0) -> np.ndarray:
    """Pinhole camera at (shift_x, 0, 0) looking along +y rotated by yaw about z."""
    c, s = np.cos(yaw), np.sin(yaw)
    # volume -> camera axes: x_cam = right, y_cam = down (-z), z_cam = forward
    rot = np.array([[c, s, 0.0], [0.0, 0.0, -1.0], [-s, c, 0.0]])
    extr = np.eye(4)
    extr[:3, :3] = rot
    extr[:3, 3] = -rot @ np.array([shift_x, 0.0, 0.0])
    intr = np.eye(4)
    intr[0, 0] = intr[1, 1] = focal
    intr[0, 2], intr[1, 2] = PAD_HW[1] / 2, PAD_HW[0] / 2
    return (intr @ extr).astype(np.float32)


def _level_coords(point_xyz: np.ndarray, l2i: np.ndarray, h: int, w: int) -> tuple:
    u, v, d, valid = project_points(
        jnp.asarray(point_xyz[None], jnp.float32), jnp.asarray(l2i), PAD_HW, DEPTH_MAX
    )
    return float(u[0]) * (w - 1), float(v[0]) * (h - 1), float(d[0]) * DEPTH_MAX, bool(valid[0])


def test_single_voxel_receives_the_patch_value() -> None:
    h, w, channels, c_val = 16, 32, 3, 2.5
    l2i = _lidar2img(focal=40.0)
    target_zyx = (1, 12, 4)  # z -0.5, y 8 m, x 0.5
    centre = GRID.centres_zyx3()[target_zyx]
    x_l, y_l, depth, valid = _level_coords(centre, l2i, h, w)
    assert valid and depth == pytest.approx(8.0)
    feat = np.zeros((1, h, w, channels), np.float32)
    x0, y0 = int(np.floor(x_l)), int(np.floor(y_l))
    feat[0, y0 : y0 + 2, x0 : x0 + 2, :] = c_val  # exactly the 4 bilinear corners
    depth_probs = np.zeros((1, h, w, DEPTH_BINS), np.float32)
    depth_probs[..., 8] = 1.0  # every pixel: all mass at 8 m
    vol = np.asarray(
        lift_to_volume(
            [jnp.asarray(feat)],
            [jnp.asarray(depth_probs)],
            jnp.asarray(l2i[None]),
            PAD_HW,
            GRID,
            DEPTH_MAX,
        )
    )
    assert vol.shape == GRID.shape_zyx + (channels,) and vol.dtype == np.float32
    np.testing.assert_allclose(vol[target_zyx], c_val, rtol=1e-5)
    others = vol.copy()
    others[target_zyx] = 0.0
    assert np.abs(others).max() < 1e-5


def test_invalid_voxels_get_zero() -> None:
    """Constant features and uniform depth: every valid voxel gets the same positive value;
    voxels behind the camera (y <= 0) and outside the image get exactly 0."""
    h, w = 8, 16
    l2i = _lidar2img(focal=20.0)
    feat = jnp.ones((1, h, w, 2))
    depth_probs = jnp.full((1, h, w, DEPTH_BINS), 1.0 / DEPTH_BINS)
    vol = np.asarray(
        lift_to_volume([feat], [depth_probs], jnp.asarray(l2i[None]), PAD_HW, GRID, DEPTH_MAX)
    )
    centres = GRID.centres_zyx3()
    behind = centres[..., 1] <= 0.0
    assert behind.any() and np.all(vol[behind] == 0.0)
    u, v, _, valid = project_points(
        jnp.asarray(centres.reshape(-1, 3)), jnp.asarray(l2i), PAD_HW, DEPTH_MAX
    )
    valid = np.asarray(valid).reshape(GRID.shape_zyx)
    assert valid.any() and (~valid & ~behind).any()  # some in front are outside the image
    np.testing.assert_array_equal(vol[~valid], 0.0)
    np.testing.assert_allclose(vol[valid], 1.0 / DEPTH_BINS, rtol=1e-5)


def _torch_lift(feats_l, depth_l, l2i_n44, centres_v3) -> np.ndarray:
    """The reference sampling (Uni3DViewTrans.coord_preparing + feat_sampling) in torch."""
    pts = torch.cat([centres_v3, torch.ones_like(centres_v3[:, :1])], -1)
    cam = torch.einsum("nij,vj->nvi", l2i_n44, pts)
    depth = cam[..., 2:3]
    mask = depth > 1e-5
    uv = cam[..., :2] / torch.maximum(depth, torch.full_like(depth, 1e-5))
    uv = uv / torch.tensor([PAD_HW[1], PAD_HW[0]], dtype=uv.dtype) * 2 - 1
    dn = depth / DEPTH_MAX * 2 - 1
    mask = mask & (uv.abs() < 1).all(-1, keepdim=True) & (dn > -1) & (dn < 1)
    total = 0.0
    for feat, prob in zip(feats_l, depth_l):
        f = F.grid_sample(feat, uv[:, :, None, :], align_corners=True)[..., 0]  # (N, C, V)
        grid3 = torch.cat([uv, dn], -1)[:, None, :, None, :]
        p = F.grid_sample(prob[:, None], grid3, align_corners=True)[:, 0, 0, :, 0]  # (N, V)
        total = total + (f * p[:, None] * mask[..., 0][:, None]).sum(0)
    return total.T.numpy()


def test_matches_torch_grid_sample_reference() -> None:
    l2is = np.stack([_lidar2img(20.0, yaw=0.3, shift_x=0.4), _lidar2img(25.0, yaw=-0.5)])
    keys = jax.random.split(jax.random.key(0), 4)
    sizes = [(8, 16), (5, 9)]  # odd sizes on purpose
    feats_l = [jax.random.normal(keys[i], (2, h, w, 4)) for i, (h, w) in enumerate(sizes)]
    depth_l = [
        jax.nn.softmax(jax.random.normal(keys[2 + i], (2, h, w, DEPTH_BINS)), -1)
        for i, (h, w) in enumerate(sizes)
    ]
    ours = lift_to_volume(feats_l, depth_l, jnp.asarray(l2is), PAD_HW, GRID, DEPTH_MAX)

    def to_torch(x: jax.Array) -> torch.Tensor:
        return torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).double()

    ref = _torch_lift(
        [to_torch(f) for f in feats_l],
        [to_torch(d) for d in depth_l],
        torch.from_numpy(l2is).double(),
        torch.from_numpy(GRID.centres_zyx3().reshape(-1, 3)).double(),
    )
    assert np.abs(ref).max() > 0.05  # the cameras do see part of the grid
    np.testing.assert_allclose(np.asarray(ours).reshape(-1, 4), ref, atol=2e-5)


def test_bf16_compute_and_gradient_flow() -> None:
    l2i = jnp.asarray(_lidar2img(20.0)[None])
    feat = jax.random.normal(jax.random.key(1), (1, 8, 16, 4))
    logits = jax.random.normal(jax.random.key(2), (1, 8, 16, DEPTH_BINS))

    def loss(feat: jax.Array, logits: jax.Array) -> jax.Array:
        probs = jax.nn.softmax(logits, -1)
        vol = lift_to_volume([feat.astype(jnp.bfloat16)], [probs], l2i, PAD_HW, GRID, DEPTH_MAX)
        assert vol.dtype == jnp.float32
        return jnp.sum(vol**2)

    g_feat, g_logits = jax.jit(jax.grad(loss, argnums=(0, 1)))(feat, logits)
    assert float(jnp.abs(g_feat).max()) > 0 and float(jnp.abs(g_logits).max()) > 0
    full = lift_to_volume([feat], [jax.nn.softmax(logits, -1)], l2i, PAD_HW, GRID, DEPTH_MAX)
    half = lift_to_volume(
        [feat.astype(jnp.bfloat16)], [jax.nn.softmax(logits, -1)], l2i, PAD_HW, GRID, DEPTH_MAX
    )
    np.testing.assert_allclose(half, full, atol=0.02 * float(jnp.abs(full).max()))


def test_voxel_grid_centres_and_indices() -> None:
    ref = VoxelGrid.from_config((-51.2, -51.2, -5.0, 51.2, 51.2, 3.0), (0.8, 0.8, 1.6))
    assert ref.shape_zyx == (5, 128, 128) and ref.shape_xyz == (128, 128, 5)
    assert ref.scene_scale == pytest.approx(1 / 51.2)
    centres = ref.centres_zyx3()
    assert centres.shape == (5, 128, 128, 3)
    np.testing.assert_allclose(centres[0, 0, 0], (-50.8, -50.8, -4.2), atol=1e-5)
    np.testing.assert_allclose(centres[4, 127, 127], (50.8, 50.8, 2.2), atol=1e-5)
    # Centres land on integer indices (i, j, k) = (x, y, z) order.
    idx = np.asarray(ref.metric_to_index(jnp.asarray(centres[3, 7, 11])))
    np.testing.assert_allclose(idx, (11, 7, 3), atol=1e-4)
    np.testing.assert_allclose(ref.metric_to_index(jnp.asarray([-51.2, -51.2, -5.0])), -0.5)
    assert hash(ref) == hash(VoxelGrid.from_config(list(ref.pc_range), list(ref.voxel_size)))
    with pytest.raises(ValueError):
        VoxelGrid.from_config((0.0, 0.0, 0.0, 1.0, 1.0, 1.0), (0.3, 0.5, 0.5))


def test_vmap_over_frames_matches_per_frame() -> None:
    l2i_f = jnp.asarray(np.stack([_lidar2img(20.0, yaw=0.2)[None], _lidar2img(18.0)[None]]))
    feat_f = jax.random.normal(jax.random.key(3), (2, 1, 8, 16, 4))
    depth_f = jax.nn.softmax(jax.random.normal(jax.random.key(4), (2, 1, 8, 16, DEPTH_BINS)), -1)
    vols = jax.vmap(lambda f, d, p: lift_to_volume([f], [d], p, PAD_HW, GRID, DEPTH_MAX))(
        feat_f, depth_f, l2i_f
    )
    for i in range(2):
        single = lift_to_volume([feat_f[i]], [depth_f[i]], l2i_f[i], PAD_HW, GRID, DEPTH_MAX)
        np.testing.assert_allclose(vols[i], single, atol=1e-5)

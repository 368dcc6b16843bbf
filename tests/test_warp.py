"""Metric SE(3) ego-motion warp: identity, whole-voxel translation, 90 degree yaw, vol2ref."""

import jax
import jax.numpy as jnp
import numpy as np

from mim4d_jax.geometry.grid import VoxelGrid
from mim4d_jax.geometry.rigid import relative_transform
from mim4d_jax.geometry.trilinear import sample_at_index
from mim4d_jax.models.warp import warp_volume

# Symmetric in x and y with square voxels, so a 90 degree yaw maps centres onto centres.
# Z, Y, X = 2, 8, 8.
GRID = VoxelGrid.from_config((-4.0, -4.0, -1.0, 4.0, 4.0, 2.0), (1.0, 1.0, 1.5))


def _rigid(yaw: float, t_xyz) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    m = np.eye(4, dtype=np.float32)
    m[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    m[:3, 3] = t_xyz
    return m


def _random_vol(seed: int, lead=()) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(*lead, *GRID.shape_zyx, 3)).astype(np.float32)


def test_identity_warp_is_identity():
    vol = _random_vol(0, lead=(2,))
    out = warp_volume(jnp.asarray(vol), jnp.eye(4)[None].repeat(2, 0), GRID)
    np.testing.assert_allclose(np.asarray(out), vol, atol=1e-5)


def test_whole_voxel_translation_shifts_indices():
    vol = _random_vol(1)
    # Target point p reads the source at p + (2 vx, -1 vy, 1 vz): target (k, j, i) = source
    # (k + 1, j - 1, i + 2); whatever falls outside the source reads zero.
    target_to_source = jnp.asarray(_rigid(0.0, (2.0, -1.0, 1.5)))
    out = np.asarray(warp_volume(jnp.asarray(vol), target_to_source, GRID))
    want = np.zeros_like(vol)
    want[:1, 1:, :-2] = vol[1:, :-1, 2:]
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_yaw_90_rotates_the_volume():
    vol = _random_vol(2)
    # target -> source rotates by +90 deg about z: target (x, y) reads source (-y, x), i.e.
    # target[:, j, i] = source[:, i, X-1-j] on this symmetric grid.
    out = np.asarray(warp_volume(jnp.asarray(vol), jnp.asarray(_rigid(np.pi / 2, (0, 0, 0))), GRID))
    x_count = GRID.shape_zyx[2]
    j, i = np.meshgrid(np.arange(x_count), np.arange(x_count), indexing="ij")
    np.testing.assert_allclose(out, vol[:, i, x_count - 1 - j], atol=1e-5)


def test_blob_lands_at_its_metric_location_after_ego_motion():
    # Frame 1's ego sits 3 m behind frame 0's and is yawed by 90 deg (x1 = y0 direction).
    vol2ref_t44 = np.stack([np.eye(4, dtype=np.float32), _rigid(np.pi / 2, (0.0, -3.0, 0.0))])
    blob_frame1_xyz = np.array([2.5, 1.5, 0.5], np.float32)  # a voxel centre of frame 1
    src = np.zeros((*GRID.shape_zyx, 3), np.float32)
    i, j, k = np.rint(np.asarray(GRID.metric_to_index(blob_frame1_xyz))).astype(int)
    src[k, j, i] = [1.0, 2.0, 3.0]

    key_to_src = jax.jit(relative_transform)(jnp.asarray(vol2ref_t44), 0, 1)
    out = np.asarray(warp_volume(jnp.asarray(src), key_to_src, GRID))

    blob_frame0_xyz = vol2ref_t44[1, :3, :3] @ blob_frame1_xyz + vol2ref_t44[1, :3, 3]
    np.testing.assert_allclose(blob_frame0_xyz, [-1.5, -0.5, 0.5], atol=1e-6)
    i0, j0, k0 = np.rint(np.asarray(GRID.metric_to_index(blob_frame0_xyz))).astype(int)
    want = np.zeros_like(src)
    want[k0, j0, i0] = [1.0, 2.0, 3.0]
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_relative_transform_composes_through_frame_zero():
    rng = np.random.default_rng(3)
    vol2ref_t44 = np.stack([_rigid(rng.uniform(-3, 3), rng.normal(size=3)) for _ in range(3)])
    fn = jax.jit(relative_transform)
    for key, src in ((0, 1), (2, 0), (1, 2)):
        got = np.asarray(fn(jnp.asarray(vol2ref_t44), jnp.int32(key), jnp.int32(src)))
        want = np.linalg.inv(vol2ref_t44[src].astype(np.float64)) @ vol2ref_t44[key]
        np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.asarray(fn(jnp.asarray(vol2ref_t44), 1, 1)), np.eye(4), atol=1e-6)


def test_trilinear_sample_interpolates_and_pads_with_zeros():
    vol = _random_vol(4)
    idx_p3 = jnp.asarray([[1.25, 2.0, 0.0], [-1.0, 0.0, 0.0], [7.5, 3.0, 1.0]])  # (i, j, k)
    got = np.asarray(sample_at_index(jnp.asarray(vol), idx_p3))
    np.testing.assert_allclose(got[0], 0.75 * vol[0, 2, 1] + 0.25 * vol[0, 2, 2], atol=1e-6)
    np.testing.assert_allclose(got[1], 0.0)
    np.testing.assert_allclose(got[2], 0.5 * vol[1, 3, 7], atol=1e-6)  # half outside: half zero

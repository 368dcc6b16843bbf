"""Trilinear lookup: centre convention, zero padding, first and second derivatives."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from mim4d_jax.geometry.grid import VoxelGrid
from mim4d_jax.geometry.trilinear import trilinear_lookup

# 4 x 3 x 2 voxels (X, Y, Z) of 0.5 x 1.0 x 2.0 m: anisotropic so axis mix-ups show.
GRID = VoxelGrid.from_config((-1.0, 0.0, -2.0, 1.0, 3.0, 2.0), (0.5, 1.0, 2.0))


def _volume(channels: int = 2, seed: int = 0) -> jnp.ndarray:
    return jax.random.normal(jax.random.key(seed), (*GRID.shape_zyx, channels))


def _numpy_lookup(vol_zyxc: np.ndarray, point_3: np.ndarray) -> np.ndarray:
    """Independent loop-over-corners reference with zero padding."""
    z_size, y_size, x_size, channels = vol_zyxc.shape
    index = (point_3 - np.array(GRID.lower_xyz)) / np.array(GRID.voxel_size) - 0.5
    base = np.floor(index).astype(int)
    frac = index - base
    out = np.zeros(channels)
    for di, dj, dk in itertools.product((0, 1), repeat=3):
        i, j, k = base[0] + di, base[1] + dj, base[2] + dk
        if not (0 <= i < x_size and 0 <= j < y_size and 0 <= k < z_size):
            continue
        w = (frac[0] if di else 1 - frac[0]) * (frac[1] if dj else 1 - frac[1])
        w *= frac[2] if dk else 1 - frac[2]
        out += w * vol_zyxc[k, j, i]
    return out


def test_centres_read_voxel_values():
    vol = _volume()
    centres = jnp.asarray(GRID.centres_zyx3())
    np.testing.assert_allclose(trilinear_lookup(vol, centres, GRID), vol, atol=1e-6)


def test_matches_numpy_reference_inside_and_outside():
    vol = _volume(3, seed=1)
    points = jax.random.uniform(
        jax.random.key(2),
        (64, 3),
        minval=jnp.array([-1.6, -0.8, -3.0]),
        maxval=jnp.array([1.6, 3.8, 3.0]),
    )
    got = trilinear_lookup(vol, points, GRID)
    want = np.stack([_numpy_lookup(np.asarray(vol), np.asarray(p)) for p in points])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_zero_padding_at_the_border():
    vol = jnp.ones((*GRID.shape_zyx, 1))
    # On the box face a point is half a voxel beyond the last centre: half the weight is outside.
    face = jnp.array([[1.0, 1.5, 0.0]])
    np.testing.assert_allclose(trilinear_lookup(vol, face, GRID), [[0.5]], atol=1e-6)
    far_outside = jnp.array([[5.0, 1.5, 0.0], [0.0, -2.0, 0.0], [0.0, 1.5, 4.0]])
    np.testing.assert_allclose(trilinear_lookup(vol, far_outside, GRID), np.zeros((3, 1)))


def test_reproduces_affine_functions_inside():
    coeff_3 = jnp.array([0.7, -1.3, 0.4])
    vol = (jnp.asarray(GRID.centres_zyx3()) @ coeff_3 + 0.25)[..., None]
    # Between the outermost centres trilinear interpolation of an affine field is exact.
    points = jax.random.uniform(
        jax.random.key(3),
        (5, 7, 3),
        minval=jnp.array([-0.75, 0.5, -1.0]),
        maxval=jnp.array([0.75, 2.5, 1.0]),
    )
    got = trilinear_lookup(vol, points, GRID)
    assert got.shape == (5, 7, 1)
    np.testing.assert_allclose(got[..., 0], points @ coeff_3 + 0.25, atol=1e-5)


def _interior_points(seed: int) -> jnp.ndarray:
    """Points away from cell boundaries, so central differences stay within one cell."""
    cells = jax.random.randint(jax.random.key(seed), (6, 3), 0, jnp.array([3, 2, 1]))
    offsets = jax.random.uniform(jax.random.key(seed + 1), (6, 3), minval=0.2, maxval=0.8)
    lower = jnp.asarray(GRID.lower_xyz)
    return lower + (cells + offsets + 0.5) * jnp.asarray(GRID.voxel_size)


def test_point_gradient_matches_finite_differences():
    vol = _volume(2, seed=4)
    points = _interior_points(5)
    weights_c = jnp.array([1.0, -0.5])
    grad = jax.grad(lambda p: jnp.sum(trilinear_lookup(vol, p, GRID) @ weights_c))(points)
    eps = 1e-2
    for axis in range(3):
        step = jnp.zeros(3).at[axis].set(eps)
        plus = trilinear_lookup(vol, points + step, GRID) @ weights_c
        minus = trilinear_lookup(vol, points - step, GRID) @ weights_c
        np.testing.assert_allclose(grad[:, axis], (plus - minus) / (2 * eps), rtol=1e-3, atol=1e-3)


def test_second_derivatives_through_the_lookup():
    """d/dvolume of (d lookup / d p), and the mixed d2/dx dy, against finite differences."""
    vol = _volume(1, seed=6)
    points = _interior_points(7)
    direction_p3 = jax.random.normal(jax.random.key(8), points.shape)

    def slope(v: jnp.ndarray) -> jnp.ndarray:
        grad_p3 = jax.grad(lambda p: jnp.sum(trilinear_lookup(v, p, GRID)))(points)
        return jnp.sum(grad_p3 * direction_p3)

    dvol = jax.grad(slope)(vol)
    assert float(jnp.abs(dvol).sum()) > 0.0
    probe = jax.random.normal(jax.random.key(9), vol.shape)
    eps = 1e-2
    numeric = (slope(vol + eps * probe) - slope(vol - eps * probe)) / (2 * eps)
    np.testing.assert_allclose(jnp.sum(dvol * probe), numeric, rtol=2e-3, atol=1e-4)

    def dfdx(p: jnp.ndarray) -> jnp.ndarray:
        return jax.grad(lambda q: jnp.sum(trilinear_lookup(vol, q, GRID)))(p)[:, 0]

    hessian_xy = jax.grad(lambda p: jnp.sum(dfdx(p)))(points)[:, 1]
    step = jnp.array([0.0, 1e-2, 0.0])
    numeric_xy = (dfdx(points + step) - dfdx(points - step)) / 2e-2
    np.testing.assert_allclose(hessian_xy, numeric_xy, rtol=2e-3, atol=2e-3)
    assert float(jnp.abs(hessian_xy).max()) > 1e-3

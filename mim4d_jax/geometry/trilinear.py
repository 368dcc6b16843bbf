"""The one trilinear sampler of (Z, Y, X, C) volumes, used by the render lookup and the
ego-motion warp.

Voxel-centre convention (docs/architecture.md): voxel (k, j, i) has its centre at
`pc_min + (index + 0.5) * voxel_size`, so the continuous index of a metric point p is
`(p - pc_min) / voxel_size - 0.5` and integer indices hit centres. Each of the 8 corners
contributes zero when it lies outside the grid (PyTorch `grid_sample(padding_mode='zeros')`),
so values fade linearly to zero over the half voxel beyond the outermost centres and a point
more than one voxel outside reads exactly zero: the lookup stays continuous.

Written with plain gathers and arithmetic, so JAX differentiates it to any order: d/dp is the
derivative of the interpolation weights, and d/dvolume of that (needed because the RGB field
takes the SDF gradient) is a scatter of weight derivatives. This replaces the reference's
custom CUDA `SmoothSampler` with double backward.
"""

from __future__ import annotations

import jax.numpy as jnp

from mim4d_jax.geometry.grid import VoxelGrid

# The 8 corners as (dx, dy, dz) offsets in {0, 1}: all handled in one gather.
_OFFSETS_83 = tuple((c & 1, (c >> 1) & 1, (c >> 2) & 1) for c in range(8))


def sample_at_index(vol_zyxc: jnp.ndarray, index_p3: jnp.ndarray) -> jnp.ndarray:
    """Sample at continuous (i, j, k) = (x, y, z) indices (P, 3) -> (P, C) in the volume dtype."""
    z_size, y_size, x_size, channels = vol_zyxc.shape
    # floor() has a zero derivative, so all derivatives w.r.t. points flow through `frac`.
    base_p3 = jnp.floor(index_p3)
    frac_p3 = index_p3 - base_p3
    base_p3 = base_p3.astype(jnp.int32)
    sizes_3 = jnp.array([x_size, y_size, z_size], jnp.int32)
    offsets_83 = jnp.array(_OFFSETS_83, jnp.int32)
    idx_p83 = base_p3[:, None, :] + offsets_83
    inside_p8 = jnp.all((idx_p83 >= 0) & (idx_p83 < sizes_3), axis=-1)
    # Weight per axis is frac for the upper corner and 1 - frac for the lower one.
    frac_p13 = frac_p3[:, None, :]
    weight_p8 = jnp.prod(jnp.where(offsets_83 == 1, frac_p13, 1.0 - frac_p13), axis=-1)
    weight_p8 = jnp.where(inside_p8, weight_p8, 0.0).astype(vol_zyxc.dtype)
    clipped_p83 = jnp.clip(idx_p83, 0, sizes_3 - 1)
    flat_p8 = (clipped_p83[..., 2] * y_size + clipped_p83[..., 1]) * x_size + clipped_p83[..., 0]
    corners_p8c = jnp.take(vol_zyxc.reshape(-1, channels), flat_p8, axis=0)
    return jnp.einsum("pk,pkc->pc", weight_p8, corners_p8c)


def trilinear_lookup(vol_zyxc: jnp.ndarray, points_p3: jnp.ndarray, grid: VoxelGrid) -> jnp.ndarray:
    """Features at metric points (x, y, z); `points_p3` may have any leading shape.

    Returns an array of shape `points_p3.shape[:-1] + (C,)` in the volume's dtype.
    """
    if tuple(vol_zyxc.shape[:3]) != tuple(grid.shape_zyx):
        raise ValueError(f"volume grid {vol_zyxc.shape[:3]} != config grid {grid.shape_zyx}")
    lead_shape = points_p3.shape[:-1]
    index_p3 = grid.metric_to_index(points_p3.reshape(-1, 3))
    return sample_at_index(vol_zyxc, index_p3).reshape(*lead_shape, vol_zyxc.shape[-1])

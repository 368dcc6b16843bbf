"""Ego-motion warp of a past frame's volume into a target frame (metric SE(3), voxel centres).

The reference (`shift_feature`) applies the metric 4x4 to voxel-index coordinates; here every
target voxel centre is mapped in metres with the rigid transform, converted to continuous
source indices with the centre convention of docs/architecture.md and trilinearly sampled
(spec section 8, quirk 3: fixed, not replicated). Sampling follows `grid_sample(...,
padding_mode='zeros')`: each of the 8 neighbours outside the volume contributes zero, so a
point more than one voxel outside reads exactly zero and the lookup stays continuous.
All geometry runs in float32 with full-precision products (TF32 matmuls on GPUs would move a
point 50 m from the origin by several centimetres).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

from mim4d_jax.geometry.grid import VoxelGrid

_HIGHEST = jax.lax.Precision.HIGHEST


def invert_rigid(m44: jax.Array) -> jax.Array:
    """Inverse of a rigid 4x4 [R | t] (R orthonormal): [R^T | -R^T t]; exact, unlike LU in fp32."""
    rot_t33 = jnp.swapaxes(m44[..., :3, :3], -1, -2)
    trans_3 = -jnp.einsum("...ij,...j->...i", rot_t33, m44[..., :3, 3], precision=_HIGHEST)
    top_34 = jnp.concatenate([rot_t33, trans_3[..., None]], axis=-1)
    return jnp.concatenate([top_34, m44[..., 3:, :]], axis=-2)


def relative_transform(
    vol2ref_t44: jax.Array, key: jax.Array | int, src: jax.Array | int
) -> jax.Array:
    """Target (frame `key`) volume coords -> source (frame `src`) volume coords, (4, 4).

    `vol2ref[t]` maps frame-t volume coords to frame-0 volume coords (the batch's `vol2ref`,
    rigid), so key -> frame 0 -> src is inv(vol2ref[src]) @ vol2ref[key]. `key` and `src` may be
    traced integers.
    """
    vol2ref_t44 = vol2ref_t44.astype(jnp.float32)
    return jnp.matmul(invert_rigid(vol2ref_t44[src]), vol2ref_t44[key], precision=_HIGHEST)


def trilinear_sample(vol_zyxc: jax.Array, idx_p3: jax.Array) -> jax.Array:
    """Sample a (Z, Y, X, C) volume at continuous (i, j, k) = (x, y, z) indices (P, 3) -> (P, C).

    Integer indices hit voxel centres; neighbours outside the volume read zero.
    """
    shape_zyx = vol_zyxc.shape[:3]
    size_xyz = jnp.asarray(shape_zyx[::-1], jnp.int32)
    floor_p3 = jnp.floor(idx_p3)
    frac_p3 = idx_p3 - floor_p3
    base_p3 = floor_p3.astype(jnp.int32)
    flat_nc = vol_zyxc.reshape(-1, vol_zyxc.shape[-1])
    # Row-major flat index of (k, j, i) in a (Z, Y, X) volume.
    strides_xyz = jnp.asarray([1, shape_zyx[2], shape_zyx[1] * shape_zyx[2]], jnp.int32)
    out_pc = jnp.zeros((idx_p3.shape[0], vol_zyxc.shape[-1]), jnp.float32)
    for corner in itertools.product((0, 1), repeat=3):
        offset_3 = jnp.asarray(corner, jnp.int32)
        corner_p3 = base_p3 + offset_3
        inside_p = jnp.all((corner_p3 >= 0) & (corner_p3 < size_xyz), axis=-1)
        weight_p = jnp.prod(jnp.where(offset_3 == 1, frac_p3, 1.0 - frac_p3), axis=-1)
        flat_p = jnp.sum(jnp.clip(corner_p3, 0, size_xyz - 1) * strides_xyz, axis=-1)
        out_pc = out_pc + jnp.where(inside_p, weight_p, 0.0)[:, None] * flat_nc[flat_p]
    return out_pc


def _warp_one(vol_zyxc: jax.Array, target_to_source_44: jax.Array, grid: VoxelGrid) -> jax.Array:
    centres_p3 = jnp.asarray(grid.centres_zyx3().reshape(-1, 3))
    m44 = target_to_source_44.astype(jnp.float32)
    source_p3 = jnp.einsum("ij,pj->pi", m44[:3, :3], centres_p3, precision=_HIGHEST) + m44[:3, 3]
    sampled_pc = trilinear_sample(vol_zyxc.astype(jnp.float32), grid.metric_to_index(source_p3))
    return sampled_pc.reshape(vol_zyxc.shape)


def warp_volume(vol_zyxc: jax.Array, target_to_source_44: jax.Array, grid: VoxelGrid) -> jax.Array:
    """Resample a source-frame volume onto the target frame's voxel centres, float32.

    vol (..., Z, Y, X, C) in the source frame; target_to_source (..., 4, 4) maps target-frame
    metric coords to source-frame metric coords (e.g. `relative_transform(vol2ref, key, src)`);
    leading dims broadcast. Returns (..., Z, Y, X, C) in the target frame.
    """
    if vol_zyxc.shape[-4:-1] != grid.shape_zyx:
        raise ValueError(f"volume {vol_zyxc.shape} does not match grid {grid.shape_zyx}")
    warp = jnp.vectorize(lambda v, m: _warp_one(v, m, grid), signature="(z,y,x,c),(i,j)->(z,y,x,c)")
    return warp(vol_zyxc, target_to_source_44)

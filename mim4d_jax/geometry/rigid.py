"""Rigid SE(3) transforms between the frames' volume coordinates, exact in float32.

All products use full precision: TF32 matmuls on GPUs would move a point 50 m from the
origin by several centimetres.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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

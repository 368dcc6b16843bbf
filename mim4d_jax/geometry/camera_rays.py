"""Rays of whole camera images, recovered from the batch's `lidar2img` projections.

`lidar2img` = [K 0; 0 1] @ vol2cam maps volume coordinates to (u d, v d, d, 1), so its
inverse maps (0, 0, 0, 1) to the camera centre and (u, v, 1, 1) to the point at camera depth
1 on pixel (u, v)'s ray. Used by evaluation and image logging to render dense images.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def pixel_grid(image_wh: tuple[int, int], stride: int) -> np.ndarray:
    """(h, w, 2) pixel-centre coordinates (u, v) every `stride` pixels of a (W, H) image."""
    w, h = image_wh
    us = np.arange(stride / 2.0 - 0.5, w, stride, dtype=np.float32)
    vs = np.arange(stride / 2.0 - 0.5, h, stride, dtype=np.float32)
    return np.stack(np.meshgrid(us, vs, indexing="xy"), axis=-1)


def image_rays(lidar2img_44: jnp.ndarray, uv_p2: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
    """(origins (P, 3), unit dirs (P, 3), z_to_range (P,)) for pixels uv in volume coords.

    `z_to_range` converts camera depth (z) along each ray into Euclidean ray length.
    """
    img2vol_44 = jnp.linalg.inv(lidar2img_44.astype(jnp.float32))
    centre_3 = (img2vol_44 @ jnp.array([0.0, 0.0, 0.0, 1.0]))[:3]
    ones_p = jnp.ones(uv_p2.shape[:1], jnp.float32)
    at_depth1_p4 = jnp.stack([uv_p2[:, 0], uv_p2[:, 1], ones_p, ones_p], axis=-1) @ img2vol_44.T
    offset_p3 = at_depth1_p4[:, :3] - centre_3
    z_to_range_p = jnp.linalg.norm(offset_p3, axis=-1)
    dirs_p3 = offset_p3 / z_to_range_p[:, None]
    return jnp.broadcast_to(centre_3, dirs_p3.shape), dirs_p3, z_to_range_p

"""L1 RGB and depth losses of the renderer (reference `SurfaceModel.loss`)."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from mim4d_jax.geometry.grid import VoxelGrid


def render_losses(
    pred: dict[str, jnp.ndarray],
    rgb_gt_r3: jnp.ndarray,
    depth_gt_r: jnp.ndarray,
    render_cfg: ml_collections.ConfigDict,
    model_cfg: ml_collections.ConfigDict,
) -> dict[str, jnp.ndarray]:
    """`rgb_loss = rgb_weight * mean|rgb - gt|` over rays x 3;
    `depth_loss = depth_weight * sum_valid |d - d_gt| / max(N_valid, 1)` with depths in the
    renderer's SCALED units (metres * scale), as the reference; valid = depth_gt > 0
    (top-up rays carry depth -1 and only supervise RGB).

    `pred` is `render_rays`' output (depth in metres); `depth_gt_r` is in metres too.
    """
    scale = VoxelGrid.from_config(model_cfg.pc_range, model_cfg.voxel_size).scene_scale
    rgb_loss = jnp.mean(jnp.abs(pred["rgb_r3"] - rgb_gt_r3))
    valid_r = (depth_gt_r > 0.0).astype(jnp.float32)
    abs_err_r = jnp.abs(pred["depth_r"] - depth_gt_r) * scale
    depth_loss = jnp.sum(valid_r * abs_err_r) / jnp.maximum(jnp.sum(valid_r), 1.0)
    return {
        "rgb_loss": float(render_cfg.rgb_weight) * rgb_loss,
        "depth_loss": float(render_cfg.depth_weight) * depth_loss,
    }

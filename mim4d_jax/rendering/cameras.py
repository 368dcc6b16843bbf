"""Dense renders of whole camera images from a volume: evaluation panels and TensorBoard.

Rays come from the batch's `lidar2img` (mim4d_jax/camera_rays.py); colours and depths from
the same renderer as training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mim4d_jax.data.example import IMAGENET_MEAN, IMAGENET_STD
from mim4d_jax.geometry import camera_rays
from mim4d_jax.models.mim4d import MIM4D
from mim4d_jax.rendering.renderer import render_rays


def render_cameras(
    model: MIM4D, vol_zyxc: jax.Array, lidar2img_n44: jax.Array, uv_p2: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(rgb (N, P, 3), depth in metres (N, P), z_to_range (N, P)) of pixels uv of N cameras."""

    def one_camera(lidar2img_44: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        origins_p3, dirs_p3, z_to_range_p = camera_rays.image_rays(lidar2img_44, uv_p2)
        out = render_rays(
            model.render_model, vol_zyxc, origins_p3, dirs_p3, model.render_cfg, model.model_cfg
        )
        return out["rgb_r3"], out["depth_r"], z_to_range_p

    return jax.lax.map(one_camera, lidar2img_n44)


def make_preview_fn(graphdef: nnx.GraphDef, config, width: int = 64):
    """Jitted (params, batch_stats, batch) -> {input, target, rgb, depth}: (N, h, w, 3) images
    in [0, 1] of the first sample's key frame, rendered from its directly lifted volume."""
    image_wh = tuple(int(v) for v in config.data.image_size)
    stride = -(-image_wh[0] // width)
    uv_hw2 = camera_rays.pixel_grid(image_wh, stride)
    h, w = uv_hw2.shape[:2]
    uv_p2 = jnp.asarray(uv_hw2.reshape(-1, 2))
    depth_max = float(config.model.depth_max)
    mean, std = jnp.asarray(IMAGENET_MEAN / 255.0), jnp.asarray(IMAGENET_STD / 255.0)

    @jax.jit
    def preview(params, batch_stats, batch) -> dict[str, jax.Array]:
        model = nnx.merge(graphdef, params, batch_stats, copy=True)
        vols_btzyxc = model.lift(
            batch["images"][:1], batch["patch_keep"][:1], batch["lidar2img"][:1]
        )
        rgb_np3, depth_np, _ = render_cameras(
            model, vols_btzyxc[0, 0], batch["lidar2img"][0, :, 0], uv_p2
        )
        images_nhw3 = batch["images"][0, :, 0] * std + mean
        keep_nhw = batch["patch_keep"][0, :, 0]
        rep = images_nhw3.shape[1] // keep_nhw.shape[1]
        keep_nhw1 = jnp.repeat(jnp.repeat(keep_nhw, rep, 1), rep, 2)[..., None]
        n = images_nhw3.shape[0]

        def block_mean(x_nhwc: jax.Array) -> jax.Array:
            crop = x_nhwc[:, : h * stride, : w * stride]
            return crop.reshape(n, h, stride, w, stride, -1).mean(axis=(2, 4))

        depth_nhw1 = jnp.clip(depth_np.reshape(n, h, w, 1) / depth_max, 0.0, 1.0)
        return {
            "input": jnp.clip(block_mean(images_nhw3 * keep_nhw1), 0.0, 1.0),
            "target": jnp.clip(block_mean(images_nhw3), 0.0, 1.0),
            "rgb": jnp.clip(rgb_np3.reshape(n, h, w, 3), 0.0, 1.0),
            "depth": jnp.repeat(depth_nhw1, 3, axis=-1),
        }

    return preview


def numpy_block_mean(image_hw3: np.ndarray, stride: int, out_hw: tuple[int, int]) -> np.ndarray:
    """Average `stride` x `stride` blocks: the colour a ray through the block centre sees."""
    h, w = out_hw
    crop = image_hw3[: h * stride, : w * stride].astype(np.float64)
    return crop.reshape(h, stride, w, stride, -1).mean(axis=(1, 3))

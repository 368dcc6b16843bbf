"""TensorBoard previews: the first sample's cameras rendered from its directly lifted volume,
with the same renderer as training (rays recovered from the batch's `lidar2img`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mim4d_jax.geometry import camera_rays
from mim4d_jax.models.convnext import upsample_keep
from mim4d_jax.rendering.images import block_mean, denormalise
from mim4d_jax.rendering.renderer import Renderer


def make_preview_fn(graphdef: nnx.GraphDef, config, width: int = 64):
    """Jitted (params, batch_stats, batch) -> {input, target, rgb, depth}: (N, h, w, 3) images
    in [0, 1] of the first sample's key frame, rendered from its directly lifted volume."""
    renderer = Renderer.from_config(config)
    image_wh = tuple(int(v) for v in config.data.image_size)
    stride = -(-image_wh[0] // width)
    uv_hw2 = camera_rays.pixel_grid(image_wh, stride)
    out_hw = uv_hw2.shape[:2]
    uv_p2 = jnp.asarray(uv_hw2.reshape(-1, 2))
    depth_max = float(config.model.depth_max)

    @jax.jit
    def preview(params, batch_stats, batch) -> dict[str, jax.Array]:
        model = nnx.merge(graphdef, params, batch_stats, copy=True)
        vols_btzyxc = model.lift(
            batch["images"][:1], batch["patch_keep"][:1], batch["lidar2img"][:1]
        )
        rgb_np3, depth_np, _ = renderer.render_pixels(
            model.render_model, vols_btzyxc[0, 0], batch["lidar2img"][0, :, 0], uv_p2
        )
        images_nhw3 = denormalise(batch["images"][0, :, 0], jnp)
        n, height, width_px = images_nhw3.shape[:3]
        keep_nhw1 = upsample_keep(batch["patch_keep"][0, :, 0], height, width_px, jnp.float32)
        depth_nhw1 = jnp.clip(depth_np.reshape(n, *out_hw, 1) / depth_max, 0.0, 1.0)
        return {
            "input": jnp.clip(block_mean(images_nhw3 * keep_nhw1, stride, out_hw, jnp), 0.0, 1.0),
            "target": jnp.clip(block_mean(images_nhw3, stride, out_hw, jnp), 0.0, 1.0),
            "rgb": jnp.clip(rgb_np3.reshape(n, *out_hw, 3), 0.0, 1.0),
            "depth": jnp.repeat(depth_nhw1, 3, axis=-1),
        }

    return preview

"""Shared renderer fixtures: a real SDFField whose SDF is a volume channel (analytic scenes)."""

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from configs import mim4d_tiny
from mim4d_jax.geometry.grid import VoxelGrid
from mim4d_jax.models.fields import SDFField

CHANNELS = 4


def configs(**render_overrides) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
    """A 32 x 32 x 16 grid of 0.4 m voxels, scale 1/6.4, and a small sample budget."""
    config = mim4d_tiny.get_config("test")
    config.model.pc_range = (-6.4, -6.4, -3.2, 6.4, 6.4, 3.2)
    config.model.voxel_size = (0.4, 0.4, 0.4)
    config.render.num_samples = 32
    config.render.num_importance = 16
    config.render.chunk_rays = 8
    for key, value in render_overrides.items():
        config.render[key] = value
    return config.render, config.model


def unit(v: jnp.ndarray) -> jnp.ndarray:
    return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def analytic_field(render_cfg: ml_collections.ConfigDict, colour: float, inv_s: float) -> SDFField:
    """A real SDFField whose weights make sdf = feature channel 0 and rgb = `colour`."""
    field = SDFField(render_cfg, CHANNELS, nnx.Rngs(0))
    params = nnx.to_pure_dict(nnx.state(field, nnx.Param))
    params = jax.tree.map(jnp.zeros_like, params)
    sdf_dec = params["sdf_decoder"]
    last = int(render_cfg.sdf_blocks)
    # With zero weights every hidden unit is softplus_100(0) = log(2) / 100 before the last
    # layer; unit 0 then gets + feature 0 from fc_c[last], and lin_last's bias removes log(2)/100.
    sdf_dec["fc_c"][last]["kernel"] = sdf_dec["fc_c"][last]["kernel"].at[0, 0].set(1.0)
    sdf_dec[f"lin{last}"]["kernel"] = sdf_dec[f"lin{last}"]["kernel"].at[0, 0].set(1.0)
    sdf_dec[f"lin{last}"]["bias"] = sdf_dec[f"lin{last}"]["bias"].at[0].set(-math.log(2.0) / 100)
    rgb_last = f"lin{int(render_cfg.rgb_blocks)}"
    params["rgb_decoder"][rgb_last]["bias"] = jnp.full((3,), math.log(colour / (1 - colour)))
    params["deviation_network"]["variance"] = jnp.array([math.log(inv_s) / 10.0])
    nnx.update(field, params)
    return field


def sdf_volume(model_cfg: ml_collections.ConfigDict, sdf_fn) -> jnp.ndarray:
    """Channel 0 = the scene's SDF (scaled units) at voxel centres; other channels are noise."""
    grid = VoxelGrid.from_config(model_cfg.pc_range, model_cfg.voxel_size)
    centres = jnp.asarray(grid.centres_zyx3())
    noise = jax.random.normal(jax.random.key(0), (*grid.shape_zyx, CHANNELS - 1))
    return jnp.concatenate([sdf_fn(centres)[..., None] * grid.scene_scale, noise], axis=-1)

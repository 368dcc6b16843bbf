"""NeuS volume rendering of rays through a feature volume (reference `NeuSModel`).

Scene normalisation: `scale = 1 / max|pc_range|`. Origins, sample positions, deltas and depths
are multiplied by it here; the fields see scaled xyz and the SDF gradient is taken w.r.t.
scaled xyz; the trilinear lookup gets metric points (scaled / scale). `render_rays` returns
depth in METRES (the scale is undone at the end); `Renderer.losses` rescales it.

Memory: rays are cut into chunks of `render.chunk_rays`; `jax.lax.map` runs the chunks in
sequence and `jax.checkpoint` keeps only each chunk's inputs for the backward pass, which
re-runs the chunk's forward (including the inner SDF-gradient pass) before differentiating it.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from mim4d_jax.geometry import camera_rays
from mim4d_jax.geometry.grid import VoxelGrid
from mim4d_jax.geometry.trilinear import trilinear_lookup
from mim4d_jax.models.fields import SDFField
from mim4d_jax.rendering.sampling import neus_samples, ray_box_near_far, weights_from_alphas


def _at_least_f32(x: jnp.ndarray) -> jnp.ndarray:
    """The renderer runs in fp32 (a bf16 volume is upcast); float64 passes through for
    finite-difference tests."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def neus_alpha(
    sdf_rs: jnp.ndarray, cos_rs: jnp.ndarray, deltas_rs: jnp.ndarray, inv_s: jnp.ndarray
) -> jnp.ndarray:
    """NeuS section alpha from the SDF at sample starts and cos = dot(dir, grad sdf).

    With the reference's fixed cos_anneal_ratio = 1 its `iter_cos` is `-relu(-cos)`: only a
    descending SDF (ray entering a surface) lowers the next-section estimate.
    """
    iter_cos_rs = -jax.nn.relu(-cos_rs)
    next_sdf_rs = sdf_rs + iter_cos_rs * deltas_rs * 0.5
    prev_sdf_rs = sdf_rs - iter_cos_rs * deltas_rs * 0.5
    prev_cdf_rs = jax.nn.sigmoid(prev_sdf_rs * inv_s)
    next_cdf_rs = jax.nn.sigmoid(next_sdf_rs * inv_s)
    return jnp.clip((prev_cdf_rs - next_cdf_rs + 1e-5) / (prev_cdf_rs + 1e-5), 0.0, 1.0)


def _render_chunk(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    vol_zyxc: jnp.ndarray,
    origins_r3: jnp.ndarray,
    dirs_r3: jnp.ndarray,
    jitter_r2: jnp.ndarray | None,
    *,
    grid: VoxelGrid,
    num_samples: int,
    num_importance: int,
    up_sample_inv_s: float,
    near_min: float,
) -> dict[str, jnp.ndarray]:
    """One chunk of rays, end to end; a pure function of arrays (the field is rebuilt from
    `graphdef` + `state` here so that checkpoint and lax.map see only pytrees)."""
    field: SDFField = nnx.merge(graphdef, state)
    scale = grid.scene_scale
    origins_r3 = origins_r3 * scale
    box_6 = jnp.asarray(grid.pc_range, origins_r3.dtype) * scale
    near_r, far_r = ray_box_near_far(origins_r3, dirs_r3, box_6, near_min * scale)

    def sdf_and_aux(
        xyz_p3: jnp.ndarray, fld: SDFField, vol: jnp.ndarray
    ) -> tuple[jnp.ndarray, tuple[jnp.ndarray, jnp.ndarray]]:
        feat_pc = trilinear_lookup(vol, xyz_p3 / scale, grid)
        sdf_p, geo_pg = fld.sdf(xyz_p3, feat_pc)
        return sdf_p, (geo_pg, feat_pc)

    # Up-sampling only picks positions: it sees constants, so no backward pass is built for it.
    frozen_field: SDFField = nnx.merge(graphdef, jax.lax.stop_gradient(state))
    frozen_vol = jax.lax.stop_gradient(vol_zyxc)
    t_rs, deltas_rs = neus_samples(
        origins_r3,
        dirs_r3,
        near_r,
        far_r,
        lambda pts: sdf_and_aux(pts, frozen_field, frozen_vol)[0],
        num_samples,
        num_importance,
        up_sample_inv_s,
        jitter_r2,
    )
    num_rays, num_s = t_rs.shape
    xyz_p3 = (origins_r3[:, None, :] + dirs_r3[:, None, :] * t_rs[..., None]).reshape(-1, 3)
    dirs_p3 = jnp.broadcast_to(dirs_r3[:, None, :], (num_rays, num_s, 3)).reshape(-1, 3)

    # Each point's SDF depends only on its own xyz, so the gradient of the sum gives every
    # per-point gradient in one backward pass; it stays differentiable for the outer loss.
    def summed_sdf(xyz: jnp.ndarray) -> tuple[jnp.ndarray, tuple[jnp.ndarray, tuple]]:
        sdf_p, aux = sdf_and_aux(xyz, field, vol_zyxc)
        return jnp.sum(sdf_p), (sdf_p, aux)

    (_, (sdf_p, (geo_pg, feat_pc))), grad_p3 = jax.value_and_grad(summed_sdf, has_aux=True)(xyz_p3)
    rgb_p3 = field.rgb(xyz_p3, dirs_p3, feat_pc, grad_p3, geo_pg)

    cos_rs = jnp.sum(dirs_p3 * grad_p3, axis=-1).reshape(num_rays, num_s)
    alpha_rs = neus_alpha(sdf_p.reshape(num_rays, num_s), cos_rs, deltas_rs, field.inv_s())
    weights_rs = weights_from_alphas(alpha_rs)
    weight_sum_r = jnp.sum(weights_rs, axis=-1)
    rgb_r3 = jnp.sum(weights_rs[..., None] * rgb_p3.reshape(num_rays, num_s, 3), axis=1)
    depth_r = jnp.sum(weights_rs * t_rs, axis=-1) / (weight_sum_r + 1e-10)
    depth_r = jnp.clip(depth_r, near_r, far_r)
    return {"rgb_r3": rgb_r3, "depth_r": depth_r / scale, "weight_sum_r": weight_sum_r}


@dataclasses.dataclass(frozen=True)
class Renderer:
    """The renderer of one config: the voxel grid, the sampling settings and the loss weights,
    built once (`from_config`) and shared by the objective, the previews and the evaluation.

    Hashable (numbers and a VoxelGrid only), so it can be closed over by jitted functions.
    """

    grid: VoxelGrid
    num_samples: int
    num_importance: int
    up_sample_inv_s: float
    near_min: float
    chunk_rays: int
    rgb_weight: float
    depth_weight: float

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> Renderer:
        """From a full config (`config.render` and the grid of `config.model`)."""
        return cls.from_configs(config.render, config.model)

    @classmethod
    def from_configs(
        cls, render_cfg: ml_collections.ConfigDict, model_cfg: ml_collections.ConfigDict
    ) -> Renderer:
        return cls(
            grid=VoxelGrid.from_config(model_cfg.pc_range, model_cfg.voxel_size),
            num_samples=int(render_cfg.num_samples),
            num_importance=int(render_cfg.num_importance),
            up_sample_inv_s=float(render_cfg.up_sample_inv_s),
            near_min=float(render_cfg.near_min),
            chunk_rays=int(render_cfg.chunk_rays),
            rgb_weight=float(render_cfg.rgb_weight),
            depth_weight=float(render_cfg.depth_weight),
        )

    def render_rays(
        self,
        field: SDFField,
        vol_zyxc: jnp.ndarray,
        origins_r3: jnp.ndarray,
        dirs_r3: jnp.ndarray,
        rng: jax.Array | None = None,
    ) -> dict[str, jnp.ndarray]:
        """Renders R rays (metric origins, unit directions) through one (Z, Y, X, C) volume.

        Returns `rgb_r3` (black background), `depth_r` (metres, clipped to the ray's
        [near, far]) and `weight_sum_r`. `rng` jitters the samples (training); None renders
        deterministically. The jitters are drawn for all rays before chunking, so the result
        does not depend on `chunk_rays`. Differentiable w.r.t. the field's parameters and the
        volume, to second order in the lookup (the RGB branch sees the SDF gradient).
        """
        grid = self.grid
        num_rays = origins_r3.shape[0]
        chunk = min(self.chunk_rays, num_rays)
        num_chunks = -(-num_rays // chunk)
        pad = num_chunks * chunk - num_rays
        # Padding rays start at the box centre and look along +x: always a valid box interval.
        centre_3 = 0.5 * (jnp.asarray(grid.pc_range[:3]) + jnp.asarray(grid.pc_range[3:]))
        origins_r3, dirs_r3, vol_zyxc = (_at_least_f32(x) for x in (origins_r3, dirs_r3, vol_zyxc))
        pad_origins_r3 = jnp.broadcast_to(centre_3, (pad, 3)).astype(origins_r3.dtype)
        pad_dirs_r3 = jnp.broadcast_to(jnp.array([1.0, 0.0, 0.0]), (pad, 3)).astype(dirs_r3.dtype)
        origins_kc3 = jnp.concatenate([origins_r3, pad_origins_r3]).reshape(num_chunks, chunk, 3)
        dirs_kc3 = jnp.concatenate([dirs_r3, pad_dirs_r3]).reshape(num_chunks, chunk, 3)
        jitter_kc2 = None
        if rng is not None:
            jitter_r2 = jnp.pad(jax.random.uniform(rng, (num_rays, 2)), ((0, pad), (0, 0)))
            jitter_kc2 = jitter_r2.reshape(num_chunks, chunk, 2)

        graphdef, state = nnx.split(field)
        chunk_fn = jax.checkpoint(
            functools.partial(
                _render_chunk,
                graphdef,
                grid=grid,
                num_samples=self.num_samples,
                num_importance=self.num_importance,
                up_sample_inv_s=self.up_sample_inv_s,
                near_min=self.near_min,
            ),
            # lax.map is a scan, which already keeps the recomputation from being CSE'd away.
            prevent_cse=False,
        )
        out_kc = jax.lax.map(
            lambda xs: chunk_fn(state, vol_zyxc, *xs), (origins_kc3, dirs_kc3, jitter_kc2)
        )
        return {
            name: value.reshape(num_chunks * chunk, *value.shape[2:])[:num_rays]
            for name, value in out_kc.items()
        }

    def render_batch(
        self,
        field: SDFField,
        vol_bzyxc: jnp.ndarray,
        origin_br3: jnp.ndarray,
        dir_br3: jnp.ndarray,
        rng: jax.Array | None = None,
    ) -> dict[str, jnp.ndarray]:
        """`render_rays` over a batch: one volume and its rays per sample."""
        keys = None if rng is None else jax.random.split(rng, vol_bzyxc.shape[0])
        return jax.vmap(lambda v, o, d, k: self.render_rays(field, v, o, d, k))(
            vol_bzyxc, origin_br3, dir_br3, keys
        )

    def render_pixels(
        self, field: SDFField, vol_zyxc: jnp.ndarray, lidar2img_n44: jnp.ndarray, uv_p2
    ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
        """Whole-image renders: (rgb (N, P, 3), depth in metres (N, P), z_to_range (N, P)) of
        pixels uv (P, 2) of N cameras given by their `lidar2img` projections."""

        def one_camera(lidar2img_44: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
            origins_p3, dirs_p3, z_to_range_p = camera_rays.image_rays(lidar2img_44, uv_p2)
            out = self.render_rays(field, vol_zyxc, origins_p3, dirs_p3)
            return out["rgb_r3"], out["depth_r"], z_to_range_p

        return jax.lax.map(one_camera, lidar2img_n44)

    def losses(
        self, pred: dict[str, jnp.ndarray], rgb_gt_r3: jnp.ndarray, depth_gt_r: jnp.ndarray
    ) -> dict[str, jnp.ndarray]:
        """L1 RGB and depth losses of one sample's rays (the reference's `SurfaceModel.loss`).

        `rgb_loss = rgb_weight * mean|rgb - gt|` over rays x 3;
        `depth_loss = depth_weight * sum_valid |d - d_gt| / max(N_valid, 1)` with depths in the
        renderer's SCALED units (metres * scene_scale), as the reference; valid = depth_gt > 0
        (top-up rays carry depth -1 and only supervise RGB). `pred` is `render_rays`' output.
        """
        scale = self.grid.scene_scale
        rgb_loss = jnp.mean(jnp.abs(pred["rgb_r3"] - rgb_gt_r3))
        valid_r = (depth_gt_r > 0.0).astype(jnp.float32)
        abs_err_r = jnp.abs(pred["depth_r"] - depth_gt_r) * scale
        depth_loss = jnp.sum(valid_r * abs_err_r) / jnp.maximum(jnp.sum(valid_r), 1.0)
        return {
            "rgb_loss": self.rgb_weight * rgb_loss,
            "depth_loss": self.depth_weight * depth_loss,
        }

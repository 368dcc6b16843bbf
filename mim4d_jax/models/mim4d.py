"""The MIM4D model: masked multi-view images -> per-frame voxel volumes -> predicted volume.

Attributes mirror the reference's PyTorch keys (docs/architecture.md), so the export is a
table of renames: `img_backbone`, `img_neck`, `input_proj`, `depth_net`, `render_conv`,
`history_decoder`, `render_model`. Model state is only `nnx.Param` and `nnx.BatchStat`;
randomness (stochastic depth) comes in as explicit keys.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from mim4d_jax.geometry.grid import VoxelGrid
from mim4d_jax.models import layers
from mim4d_jax.models.convnext import MASK_STRIDE, MaskedConvNeXt, variant_dims
from mim4d_jax.models.croco_decoder import CrocoDecoder
from mim4d_jax.models.fields import SDFField
from mim4d_jax.models.fpn import FPN
from mim4d_jax.models.heads import make_depth_net, make_input_proj, project_and_depth
from mim4d_jax.models.history_decoder import HistoryDecoder, predict_dropped_frame
from mim4d_jax.models.projection_head import ProjectionHead
from mim4d_jax.models.view_transform import lift_to_volume


def _batch_norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """BatchNorm3d with PyTorch's defaults (momentum 0.1 = flax 0.9, eps 1e-5), fp32 stats."""
    return nnx.BatchNorm(
        features,
        momentum=0.9,
        epsilon=1e-5,
        param_dtype=jnp.float32,
        scale_init=layers.scale_init(),
        bias_init=layers.bias_init(),
        rngs=rngs,
    )


def _objective_weight(config: ml_collections.ConfigDict, name: str) -> float:
    objectives = config.get("objectives", None)
    return 0.0 if objectives is None else float(objectives.get(name, 0.0))


class MIM4D(nnx.Module):
    """Backbone, neck, heads, lift, render projection, history decoder and render field."""

    def __init__(self, config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> None:
        m = config.model
        dtype = jnp.dtype(m.compute_dtype)
        self.grid = VoxelGrid.from_config(m.pc_range, m.voxel_size)
        self.pad_hw = (int(config.data.pad_size[1]), int(config.data.pad_size[0]))
        self.depth_max = float(m.depth_max)
        self.img_backbone = MaskedConvNeXt(
            m.backbone,
            drop_path_rate=float(m.drop_path_rate),
            layer_scale_init=float(m.layer_scale_init),
            frozen_stages=int(m.frozen_stages),
            compute_dtype=dtype,
            rngs=rngs,
        )
        self.img_neck = FPN(
            variant_dims(m.backbone),
            int(m.fpn_channels),
            start_level=int(m.fpn_start_level),
            num_outs=int(m.fpn_num_outs),
            compute_dtype=dtype,
            rngs=rngs,
        )
        self.input_proj = make_input_proj(int(m.fpn_channels), compute_dtype=dtype, rngs=rngs)
        self.depth_net = make_depth_net(
            int(m.fpn_channels), int(m.depth_bins), compute_dtype=dtype, rngs=rngs
        )
        conv3d = layers.conv(
            int(m.fpn_channels),
            int(m.render_channels),
            (3, 3, 3),
            padding=((1, 1),) * 3,
            dtype=dtype,
            rngs=rngs,
        )
        self.render_conv = nnx.List([conv3d, _batch_norm(int(m.render_channels), rngs)])
        self.history_decoder = HistoryDecoder(
            m.history,
            render_channels=int(m.render_channels),
            grid_zyx=self.grid.shape_zyx,
            num_frames=int(config.data.frames),
            rngs=rngs,
        )
        self.render_model = SDFField(config.render, int(m.render_channels), rngs)
        # Heads of the other pre-training objectives, only when their weight is > 0, so the
        # default model's parameters (and its export) are unchanged.
        if _objective_weight(config, "croco") > 0:
            self.croco_decoder = CrocoDecoder(
                variant_dims(m.backbone)[-1], config.croco, MASK_STRIDE, rngs=rngs
            )
        if _objective_weight(config, "pointcontrast") > 0:
            self.pc_head = ProjectionHead(int(m.render_channels), config.pointcontrast, rngs=rngs)

    def features(
        self, images_nhwc: jax.Array, keep_nhw: jax.Array | None = None, *, rng=None
    ) -> tuple[list[jax.Array], list[jax.Array]]:
        """The 4 normed backbone stage outputs and the FPN levels (before input_proj)."""
        backbone_l = self.img_backbone(images_nhwc, keep_nhw, rng=rng)
        return backbone_l, self.img_neck(backbone_l)

    def lift(
        self,
        images_bnthwc: jax.Array,
        patch_keep_bnthw: jax.Array | None,
        lidar2img_bnt44: jax.Array,
        *,
        rng: jax.Array | None = None,
        train: bool = False,
    ) -> jax.Array:
        """Masked images of every camera and frame -> per-frame volumes (B, T, Z, Y, X, C)."""
        b, n, t, h, w, _ = images_bnthwc.shape
        # Frame-major order so each frame's N cameras are contiguous for the lift.
        images = jnp.swapaxes(images_bnthwc, 1, 2).reshape(b * t * n, h, w, 3)
        keep = None
        if patch_keep_bnthw is not None:
            keep = jnp.swapaxes(patch_keep_bnthw, 1, 2).reshape(
                b * t * n, *patch_keep_bnthw.shape[3:]
            )
        _, fpn_l = self.features(images, keep, rng=rng)
        feats_l, depth_l = project_and_depth(self.input_proj, self.depth_net, fpn_l)

        def per_frame(x_l: list[jax.Array]) -> list[jax.Array]:
            return [x.reshape(b * t, n, *x.shape[1:]) for x in x_l]

        lidar2img_f44 = jnp.swapaxes(lidar2img_bnt44, 1, 2).reshape(b * t, n, 4, 4)
        vols_fzyxc = jax.vmap(
            lambda f_l, d_l, p: lift_to_volume(f_l, d_l, p, self.pad_hw, self.grid, self.depth_max)
        )(per_frame(feats_l), per_frame(depth_l), lidar2img_f44)
        conv3d, batch_norm = self.render_conv
        vols_fzyxc = conv3d(vols_fzyxc.astype(conv3d.dtype or jnp.float32))
        vols_fzyxc = batch_norm(vols_fzyxc.astype(jnp.float32), use_running_average=not train)
        vols_fzyxc = jax.nn.relu(vols_fzyxc)
        return vols_fzyxc.reshape(b, t, *vols_fzyxc.shape[1:])

    def predict(
        self, vols_btzyxc: jax.Array, vol2ref_bt44: jax.Array, key_b: jax.Array
    ) -> jax.Array:
        """The volume of frame key_b[b] predicted from the other frames: (B, Z, Y, X, C)."""
        return predict_dropped_frame(
            self.history_decoder, vols_btzyxc, vol2ref_bt44, key_b, self.grid
        )


def build_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> MIM4D:
    """The model of `config` with parameters drawn from `rngs` (deterministic per seed)."""
    return MIM4D(config, rngs)

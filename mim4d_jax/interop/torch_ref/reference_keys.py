"""Every key and shape of a full reference pre-training state dict, for a given config.

The transferable part comes from the PyTorch modules (`PerceptionRef.state_dict()`); the
pre-training-only part (history decoder, SDF field) is written out by hand from the reference's
key layout (table "Key layout" in docs/exporting.md) with the sizes taken from the config. The
export compares its output against this set, so any missing, extra or mis-shaped tensor shows up
in its report.

Not included: the reference's unused duplicate `pts_bbox_head.render_conv.*` (random, never
run; mim4d_jax has no such module) and `ema_*` buffers.
"""

import ml_collections

from mim4d_jax.interop.torch_ref.model import PerceptionRef

Shapes = dict[str, tuple[int, ...]]


def reference_shapes(config: ml_collections.ConfigDict) -> Shapes:
    shapes = {k: tuple(v.shape) for k, v in PerceptionRef.from_config(config).state_dict().items()}
    shapes.update(_history_decoder(config))
    shapes.update(_render_field(config))
    return shapes


def _grid_size(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    """(Z, Y, X) voxel counts of model.pc_range / model.voxel_size."""
    x0, y0, z0, x1, y1, z1 = config.model.pc_range
    vx, vy, vz = config.model.voxel_size
    return round((z1 - z0) / vz), round((y1 - y0) / vy), round((x1 - x0) / vx)


def _linear(name: str, out_dim: int, in_dim: int) -> Shapes:
    return {f"{name}.weight": (out_dim, in_dim), f"{name}.bias": (out_dim,)}


def _norm(name: str, dim: int) -> Shapes:
    return {f"{name}.weight": (dim,), f"{name}.bias": (dim,)}


def _history_decoder(config: ml_collections.ConfigDict) -> Shapes:
    h = config.model.history
    frames = int(config.data.frames)
    z, y, x = _grid_size(config)
    vol_channels = int(config.model.render_channels) * z  # BEV view: channel c * Z + z
    embed = int(h.embed_dims)
    embed_long = embed // int(h.reduction)
    p = "history_decoder"
    shapes: Shapes = {
        f"{p}.frame_embeds": (frames, embed),
        f"{p}.queries_long.weight": (y * x, embed_long),
        f"{p}.queries_short.weight": (y * x, embed),
        f"{p}.proj.0.weight": (embed, vol_channels, 1, 1),
        **_norm(f"{p}.proj.1", embed),
        **_linear(f"{p}.input_proj.0", embed_long, embed),
        **_norm(f"{p}.input_proj.1", embed_long),
        f"{p}.output_proj.0.weight": (vol_channels, embed + embed_long, 3, 3),
        **_norm(f"{p}.output_proj.1", vol_channels),
    }
    # The long branch attends over all T-1 other frames at once (num_bev_queue = T-1), the
    # short branch over one; one feature level; both use `num_points` sampling points.
    for branch, dim, heads, queue in (
        ("long", embed_long, int(h.long_heads), frames - 1),
        ("short", embed, int(h.short_heads), 1),
    ):
        for layer in range(int(h.num_layers)):
            lp = f"{p}.decoder_{branch}.layers.{layer}"
            points = queue * heads * int(h.num_points)
            shapes.update(_linear(f"{lp}.attentions.0.sampling_offsets", points * 2, dim))
            shapes.update(_linear(f"{lp}.attentions.0.attention_weights", points, dim))
            shapes.update(_linear(f"{lp}.attentions.0.value_proj", dim, dim))
            shapes.update(_linear(f"{lp}.attentions.0.output_proj", dim, dim))
            shapes.update(_linear(f"{lp}.ffns.0.layers.0.0", int(h.ffn_dims), dim))
            shapes.update(_linear(f"{lp}.ffns.0.layers.1", dim, int(h.ffn_dims)))
            shapes.update(_norm(f"{lp}.norms.0", dim))
            shapes.update(_norm(f"{lp}.norms.1", dim))
    return shapes


def _render_field(config: ml_collections.ConfigDict) -> Shapes:
    r = config.render
    hidden, geo = int(r.hidden_dims), int(r.geo_dims)
    feat = int(config.model.render_channels)
    p = "pts_bbox_head.render_model.field"
    shapes: Shapes = {
        f"{p}.laplace_density.beta_min": (1,),
        f"{p}.laplace_density.beta": (1,),
        f"{p}.deviation_network.variance": (1,),
    }
    # SDF MLP conditions on the feature; RGB MLP on cat[dir 3, feature, grad 3, geo].
    for name, blocks, cond, out_dim in (
        ("sdf_decoder", int(r.sdf_blocks), feat, 1 + geo),
        ("rgb_decoder", int(r.rgb_blocks), 3 + feat + 3 + geo, 3),
    ):
        shapes.update(_linear(f"{p}.{name}.fc_p", hidden, 3))
        for i in range(blocks + 1):
            shapes.update(_linear(f"{p}.{name}.fc_c.{i}", hidden, cond))
            last = i == blocks
            shapes.update(_linear(f"{p}.{name}.lin{i}", out_dim if last else hidden, hidden))
    return shapes

"""HoP-style history decoder: predicts the dropped frame's volume from the other T-1 frames.

MIM4D's `BiTemporalPredictor_longshort`. For a key frame, every other frame is
warped into the key frame (`warp.py`), viewed as BEV (B, Y, X, C*Z) with channel `c*Z + z`, and
- `proj` (1x1 conv, no bias + LayerNorm over channels) maps C*Z -> E, plus `frame_embeds[i]` by
  list position (docs/deviations.md, quirk 8; kept so exported weights mean the same thing);
- the long branch projects all T-1 frames to E/reduction and decodes learnt per-cell queries
  (`queries_long`) with `num_layers` BEVFormer layers whose "self-attention" is deformable
  attention over the T-1 value frames;
- the short branch decodes `queries_short` against the first other frame only, at width E;
- `output_proj` (3x3 conv, no bias + LayerNorm) maps concat(short, long) back to C*Z.
Attribute names mirror the exported `history_decoder.*` keys (docs/exporting.md; nnx.List gives
the integer path components `proj.0`, `layers.1`, ...). Everything runs in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mim4d_jax.geometry.grid import VoxelGrid
from mim4d_jax.geometry.rigid import relative_transform
from mim4d_jax.models.deformable_attention import TemporalCrossAttention
from mim4d_jax.models.layers import bias_init, conv_kernel_init, partitioned, scale_init
from mim4d_jax.models.warp import warp_volume

_XAVIER = nnx.initializers.xavier_uniform()


def _torch_linear_bias_init(fan_in: int) -> nnx.Initializer:
    """PyTorch's default Linear bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the reference's
    init_weights re-initialises only dim > 1 tensors, so its biases keep this."""
    bound = 1.0 / np.sqrt(fan_in)

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return partitioned(init, (None,))


def _linear(fan_in: int, fan_out: int, axes: tuple[str, str], rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        fan_in,
        fan_out,
        kernel_init=partitioned(_XAVIER, axes),
        bias_init=_torch_linear_bias_init(fan_in),
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def _layer_norm(features: int, epsilon: float, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # torch nn.LayerNorm uses 1e-5; the reference's LayerNorm2d uses 1e-6.
    return nnx.LayerNorm(
        features,
        epsilon=epsilon,
        param_dtype=jnp.float32,
        scale_init=scale_init(),
        bias_init=bias_init(),
        rngs=rngs,
    )


def _conv_no_bias(fan_in: int, fan_out: int, size: int, rngs: nnx.Rngs) -> nnx.Conv:
    pad = size // 2
    return nnx.Conv(
        fan_in,
        fan_out,
        (size, size),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        param_dtype=jnp.float32,
        kernel_init=conv_kernel_init(2, _XAVIER),
        rngs=rngs,
    )


def sine_positional_encoding(bev_yx: tuple[int, int], num_feats: int) -> np.ndarray:
    """mmdet SinePositionalEncoding(num_feats, normalize=True) of an unmasked BEV, (Y*X, 2F).

    Channels: F for y then F for x, each interleaved [sin, cos] at frequencies
    10000^(2k/F); positions are cumulative counts (1..Y) scaled to (0, 2*pi].
    """
    y_count, x_count = bev_yx
    eps, scale = 1e-6, 2.0 * np.pi
    y_embed = np.arange(1, y_count + 1, dtype=np.float32) / (y_count + eps) * scale
    x_embed = np.arange(1, x_count + 1, dtype=np.float32) / (x_count + eps) * scale
    dim_t = 10000.0 ** (2 * (np.arange(num_feats) // 2) / num_feats)

    def encode(embed_n: np.ndarray) -> np.ndarray:
        phase_nf = embed_n[:, None] / dim_t
        return np.stack([np.sin(phase_nf[:, 0::2]), np.cos(phase_nf[:, 1::2])], -1).reshape(
            len(embed_n), num_feats
        )

    pos_y = np.broadcast_to(encode(y_embed)[:, None, :], (y_count, x_count, num_feats))
    pos_x = np.broadcast_to(encode(x_embed)[None, :, :], (y_count, x_count, num_feats))
    return (
        np.concatenate([pos_y, pos_x], -1)
        .reshape(y_count * x_count, 2 * num_feats)
        .astype(np.float32)
    )


class FFN(nnx.Module):
    """mmcv FFN (2 fcs, ReLU, identity added). `layers` nests like the torch Sequential so the
    paths read `layers.0.0` (Linear E->hidden inside Linear+ReLU+Dropout) and `layers.1`."""

    def __init__(self, embed_dims: int, hidden_dims: int, *, rngs: nnx.Rngs) -> None:
        self.layers = nnx.List(
            [
                nnx.List([_linear(embed_dims, hidden_dims, ("embed", "mlp"), rngs)]),
                _linear(hidden_dims, embed_dims, ("mlp", "embed"), rngs),
            ]
        )

    def __call__(self, x_bqe: jax.Array) -> jax.Array:
        hidden = jax.nn.relu(self.layers[0][0](x_bqe))
        return x_bqe + self.layers[1](hidden)


class TemporalDecoderLayer(nnx.Module):
    """BEVFormerLayer with operation order (self_attn, norm, ffn, norm), post-norm."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        num_points: int,
        num_frames: int,
        ffn_dims: int,
        *,
        rngs: nnx.Rngs,
    ) -> None:
        self.attentions = nnx.List(
            [TemporalCrossAttention(embed_dims, num_heads, num_points, num_frames, rngs=rngs)]
        )
        self.ffns = nnx.List([FFN(embed_dims, ffn_dims, rngs=rngs)])
        self.norms = nnx.List([_layer_norm(embed_dims, 1e-5, rngs) for _ in range(2)])

    def __call__(
        self,
        query_bqe: jax.Array,
        value_bfqe: jax.Array,
        pos_qe: jax.Array,
        bev_yx: tuple[int, int],
    ) -> jax.Array:
        query_bqe = self.norms[0](self.attentions[0](query_bqe, value_bfqe, pos_qe[None], bev_yx))
        return self.norms[1](self.ffns[0](query_bqe))


class TemporalDecoder(nnx.Module):
    """Stack of layers; each layer's output is the next layer's query, values stay fixed."""

    def __init__(
        self,
        num_layers: int,
        embed_dims: int,
        num_heads: int,
        num_points: int,
        num_frames: int,
        ffn_dims: int,
        *,
        rngs: nnx.Rngs,
    ) -> None:
        self.layers = nnx.List(
            [
                TemporalDecoderLayer(
                    embed_dims, num_heads, num_points, num_frames, ffn_dims, rngs=rngs
                )
                for _ in range(num_layers)
            ]
        )

    def __call__(
        self,
        query_bqe: jax.Array,
        value_bfqe: jax.Array,
        pos_qe: jax.Array,
        bev_yx: tuple[int, int],
    ) -> jax.Array:
        for layer in self.layers:
            query_bqe = layer(query_bqe, value_bfqe, pos_qe, bev_yx)
        return query_bqe


def volume_to_bev(vol_zyxc: jax.Array) -> jax.Array:
    """(..., Z, Y, X, C) -> (..., Y, X, C*Z) with channel c*Z + z (the reference's view)."""
    *lead, z, y, x, c = vol_zyxc.shape
    return jnp.moveaxis(vol_zyxc, -4, -1).reshape(*lead, y, x, c * z)


def bev_to_volume(bev_yxk: jax.Array, num_z: int) -> jax.Array:
    """Inverse of `volume_to_bev`: (..., Y, X, C*Z) -> (..., Z, Y, X, C)."""
    *lead, y, x, k = bev_yxk.shape
    return jnp.moveaxis(bev_yxk.reshape(*lead, y, x, k // num_z, num_z), -1, -4)


class HistoryDecoder(nnx.Module):
    """Predicts a (B, Z, Y, X, C) volume from the T-1 other frames' warped BEVs."""

    def __init__(
        self,
        cfg: ml_collections.ConfigDict,
        *,
        render_channels: int,
        grid_zyx: tuple[int, int, int],
        num_frames: int,
        rngs: nnx.Rngs,
    ) -> None:
        """cfg is `config.model.history`; render_channels the volume's C; grid_zyx its shape."""
        if num_frames < 2:
            raise ValueError(f"the history decoder needs at least 2 frames, got {num_frames}")
        embed, long_embed = cfg.embed_dims, cfg.embed_dims // cfg.reduction
        num_z, num_y, num_x = grid_zyx
        bev_channels = render_channels * num_z
        self.num_z = num_z
        self.bev_yx = (num_y, num_x)
        self.num_frames = num_frames

        self.frame_embeds = nnx.Param(
            partitioned(nnx.initializers.normal(1.0), (None, None))(
                rngs.params(), (num_frames, embed), jnp.float32
            )
        )
        self.queries_long = nnx.Embed(
            num_y * num_x,
            long_embed,
            param_dtype=jnp.float32,
            embedding_init=partitioned(_XAVIER, ("queries", "embed")),
            rngs=rngs,
        )
        self.queries_short = nnx.Embed(
            num_y * num_x,
            embed,
            param_dtype=jnp.float32,
            embedding_init=partitioned(_XAVIER, ("queries", "embed")),
            rngs=rngs,
        )
        self.proj = nnx.List(
            [_conv_no_bias(bev_channels, embed, 1, rngs), _layer_norm(embed, 1e-6, rngs)]
        )
        self.input_proj = nnx.List(
            [
                _linear(embed, long_embed, ("embed", "mlp"), rngs),
                _layer_norm(long_embed, 1e-5, rngs),
            ]
        )
        self.output_proj = nnx.List(
            [
                _conv_no_bias(embed + long_embed, bev_channels, 3, rngs),
                _layer_norm(bev_channels, 1e-6, rngs),
            ]
        )
        common = dict(num_points=cfg.num_points, ffn_dims=cfg.ffn_dims, rngs=rngs)
        self.decoder_long = TemporalDecoder(
            cfg.num_layers, long_embed, cfg.long_heads, num_frames=num_frames - 1, **common
        )
        # The short branch sees only the first other frame (the reference's num_short = 1).
        self.decoder_short = TemporalDecoder(
            cfg.num_layers, embed, cfg.short_heads, num_frames=1, **common
        )

    def __call__(self, bev_bfyxk: jax.Array) -> jax.Array:
        """bev (B, T-1, Y, X, C*Z), other frames in list order -> vol (B, Z, Y, X, C) float32."""
        b, f, y, x, k = bev_bfyxk.shape
        if f != self.num_frames - 1 or (y, x) != self.bev_yx:
            want = f"(B, {self.num_frames - 1}, {self.bev_yx[0]}, {self.bev_yx[1]}, C*Z)"
            raise ValueError(f"expected BEVs of shape {want}, got {bev_bfyxk.shape}")
        feats = self.proj[1](self.proj[0](bev_bfyxk.astype(jnp.float32).reshape(b * f, y, x, k)))
        feats_bfqe = feats.reshape(b, f, y * x, -1) + self.frame_embeds[:f][None, :, None, :]

        values_long = self.input_proj[1](self.input_proj[0](feats_bfqe))
        long_bqe = self.decoder_long(
            _batched_queries(self.queries_long, b), values_long, self._pos(values_long), self.bev_yx
        )
        short_bqe = self.decoder_short(
            _batched_queries(self.queries_short, b),
            feats_bfqe[:, :1],
            self._pos(feats_bfqe),
            self.bev_yx,
        )

        fused_byxe = jnp.concatenate([short_bqe, long_bqe], axis=-1).reshape(b, y, x, -1)
        bev_byxk = self.output_proj[1](self.output_proj[0](fused_byxe))
        return bev_to_volume(bev_byxk, self.num_z)

    def _pos(self, values_bfqe: jax.Array) -> jax.Array:
        # num_feats = width / 2 (the reference's embed_dims//2 and embed_dims//2//reduction).
        return jnp.asarray(sine_positional_encoding(self.bev_yx, values_bfqe.shape[-1] // 2))


def _batched_queries(queries: nnx.Embed, batch: int) -> jax.Array:
    """The whole learnt query table, one copy per sample: (B, Y*X, E)."""
    table_qe = queries.embedding[...]
    return jnp.broadcast_to(table_qe, (batch, *table_qe.shape))


def other_frames(key_b: jax.Array, num_frames: int) -> jax.Array:
    """[j for j in range(T) if j != key] per sample with static shape (B, T-1), increasing."""
    pos_f = jnp.arange(num_frames - 1, dtype=jnp.int32)
    return jnp.where(pos_f[None, :] < key_b[:, None], pos_f[None, :], pos_f[None, :] + 1)


def predict_dropped_frame(
    decoder: HistoryDecoder,
    vols_btzyxc: jax.Array,
    vol2ref_bt44: jax.Array,
    key_b: jax.Array,
    grid: VoxelGrid,
) -> jax.Array:
    """Predict frame `key_b[b]` of each sample from its other frames, warped into its frame.

    vols (B, T, Z, Y, X, C) each in its own frame; vol2ref (B, T, 4, 4); key (B,) int in
    0..T-1 (may be traced). The key frame's own volume is never read. -> (B, Z, Y, X, C).
    """
    others_bf = other_frames(key_b.astype(jnp.int32), vols_btzyxc.shape[1])

    def warp_others(
        vols_tzyxc: jax.Array, vol2ref_t44: jax.Array, key: jax.Array, others_f: jax.Array
    ) -> jax.Array:
        key_to_src_f44 = jax.vmap(lambda src: relative_transform(vol2ref_t44, key, src))(others_f)
        return warp_volume(vols_tzyxc[others_f], key_to_src_f44, grid)

    warped_bfzyxc = jax.vmap(warp_others)(vols_btzyxc, vol2ref_bt44, key_b, others_bf)
    return decoder(volume_to_bev(warped_bfzyxc))

"""Single-level deformable attention over BEV value frames (BEVFormer/HoP TemporalCrossAttention).

Semantics follow mmcv `MultiScaleDeformableAttention` with one level, as MIM4D's
`TemporalCrossAttention` uses it in its history decoder:
- The query (plus its positional encoding) alone predicts, per head and per value frame ("BEV
  queue" entry), `num_points` sampling offsets and attention logits. The value frames are not
  concatenated into the query (the reference's `num_bev_query` is 1), which is why
  `sampling_offsets` maps E -> num_bev_queue*heads*points*2 (= 32 for both vs0.1 branches:
  2*2*4*2 long, 1*4*4*2 short) and `attention_weights` E -> num_bev_queue*heads*points (= 16).
- Output features are ordered (head, frame, point[, xy]) as in the reference's
  `view(bs, nq, heads, num_bev_queue, levels, points, 2)`, so exported weights line up.
- Softmax over the points of one (head, frame); bilinear sampling around the BEV cell centre
  with `grid_sample(align_corners=False, padding_mode='zeros')` semantics; the per-frame results
  are averaged, then `output_proj`, then the residual with the query (before its pos-encoding).
Everything here runs in float32 whatever the caller's dtype (the reference forces fp32 too:
the sampling sums many small products).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mim4d_jax.models.layers import partitioned


def bev_reference_points(bev_yx: tuple[int, int]) -> np.ndarray:
    """Normalised (x, y) cell centres ((i+0.5)/X, (j+0.5)/Y) of a row-major (Y, X) BEV: (Y*X, 2)."""
    y_count, x_count = bev_yx
    jj, ii = np.meshgrid(np.arange(y_count), np.arange(x_count), indexing="ij")
    ref_q2 = np.stack([(ii + 0.5) / x_count, (jj + 0.5) / y_count], axis=-1)
    return ref_q2.reshape(-1, 2).astype(np.float32)


def bilinear_gather_weights(
    loc_bfhqp2: jax.Array, bev_yx: tuple[int, int]
) -> tuple[jax.Array, jax.Array]:
    """Flat value indices and bilinear weights of the 4 neighbours of each sampling location.

    `loc` is normalised (x, y) in [0, 1] over the BEV; pixel = loc * (X, Y) - 0.5 is the
    align_corners=False convention. Neighbours outside the BEV get weight 0 (zeros padding)
    and a clipped, harmless index. Returns (idx_bfhqk, w_bfhqk) with k = points * 4.
    """
    y_count, x_count = bev_yx
    px = loc_bfhqp2[..., 0] * x_count - 0.5
    py = loc_bfhqp2[..., 1] * y_count - 0.5
    x0 = jnp.floor(px)
    y0 = jnp.floor(py)
    fx = px - x0
    fy = py - y0
    idx_list, w_list = [], []
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            xi = x0 + dx
            yi = y0 + dy
            inside = (xi >= 0) & (xi <= x_count - 1) & (yi >= 0) & (yi <= y_count - 1)
            xi_int = jnp.clip(xi, 0, x_count - 1).astype(jnp.int32)
            yi_int = jnp.clip(yi, 0, y_count - 1).astype(jnp.int32)
            idx_list.append(yi_int * x_count + xi_int)
            w_list.append(jnp.where(inside, wx * wy, 0.0))
    idx_bfhqpc = jnp.stack(idx_list, axis=-1)
    w_bfhqpc = jnp.stack(w_list, axis=-1)
    lead = idx_bfhqpc.shape[:-2]
    return idx_bfhqpc.reshape(*lead, -1), w_bfhqpc.reshape(*lead, -1)


def deformable_sample(
    value_bfhnd: jax.Array,
    loc_bfhqp2: jax.Array,
    attn_bfhqp: jax.Array,
    bev_yx: tuple[int, int],
) -> jax.Array:
    """Attention-weighted bilinear samples of each value frame: (B, F, H, Q, D) float32.

    value: per-frame, per-head projected values over the flattened row-major BEV (N = Y*X).
    """
    idx_bfhqk, w_bfhqk = bilinear_gather_weights(loc_bfhqp2, bev_yx)
    # Fold the attention weight of each point into its 4 bilinear weights: one weighted sum.
    w_bfhqk = w_bfhqk * jnp.repeat(attn_bfhqp, 4, axis=-1)
    b, f, h, q, k = idx_bfhqk.shape
    gathered = jnp.take_along_axis(value_bfhnd, idx_bfhqk.reshape(b, f, h, q * k, 1), axis=3)
    gathered_bfhqkd = gathered.reshape(b, f, h, q, k, -1)
    # Elementwise multiply-add (not a matmul) keeps the reduction in float32 on every backend.
    return jnp.sum(w_bfhqk[..., None] * gathered_bfhqkd, axis=4)


def offset_bias_init(num_heads: int, num_bev_queue: int, num_points: int) -> nnx.Initializer:
    """Reference init of the offset bias: head h looks along angle 2*pi*h/heads (direction
    scaled so its larger component is 1), point p at distance p+1 cells, for every frame."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        del key
        thetas = np.arange(num_heads) * (2.0 * math.pi / num_heads)
        dir_h2 = np.stack([np.cos(thetas), np.sin(thetas)], axis=-1)
        dir_h2 = dir_h2 / np.abs(dir_h2).max(axis=-1, keepdims=True)
        scale_p = np.arange(1, num_points + 1, dtype=np.float64)
        grid_hfp2 = np.broadcast_to(
            dir_h2[:, None, None, :] * scale_p[None, None, :, None],
            (num_heads, num_bev_queue, num_points, 2),
        )
        return jnp.asarray(grid_hfp2.reshape(shape), dtype=dtype)

    return init


class TemporalCrossAttention(nnx.Module):
    """Deformable attention of BEV queries over `num_bev_queue` value BEVs of the same size.

    Attribute names mirror the exported keys `...attentions.0.{sampling_offsets,
    attention_weights, value_proj, output_proj}`.
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        num_points: int,
        num_bev_queue: int,
        *,
        rngs: nnx.Rngs,
    ) -> None:
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims {embed_dims} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.num_points = num_points
        self.num_bev_queue = num_bev_queue
        zeros = nnx.initializers.zeros_init()
        xavier = nnx.initializers.xavier_uniform()
        num_samples = num_bev_queue * num_heads * num_points
        # Zero weights: at init every query samples its own head-direction grid, uniformly
        # weighted (reference init_weights).
        self.sampling_offsets = nnx.Linear(
            embed_dims,
            num_samples * 2,
            kernel_init=partitioned(zeros, ("embed", "heads")),
            bias_init=partitioned(offset_bias_init(num_heads, num_bev_queue, num_points), (None,)),
            param_dtype=jnp.float32,
            rngs=rngs,
        )
        self.attention_weights = nnx.Linear(
            embed_dims,
            num_samples,
            kernel_init=partitioned(zeros, ("embed", "heads")),
            bias_init=partitioned(zeros, (None,)),
            param_dtype=jnp.float32,
            rngs=rngs,
        )
        # Output channels of value_proj (input channels of output_proj) are head-major.
        self.value_proj = nnx.Linear(
            embed_dims,
            embed_dims,
            kernel_init=partitioned(xavier, ("embed", "heads")),
            bias_init=partitioned(zeros, (None,)),
            param_dtype=jnp.float32,
            rngs=rngs,
        )
        self.output_proj = nnx.Linear(
            embed_dims,
            embed_dims,
            kernel_init=partitioned(xavier, ("heads", "embed")),
            bias_init=partitioned(zeros, (None,)),
            param_dtype=jnp.float32,
            rngs=rngs,
        )

    def __call__(
        self,
        query_bqe: jax.Array,
        value_bfqe: jax.Array,
        query_pos_bqe: jax.Array,
        bev_yx: tuple[int, int],
    ) -> jax.Array:
        """query (B, Q, E) over the row-major BEV (Q = Y*X), values (B, F, Q, E) with
        F = num_bev_queue, query_pos (B or 1, Q, E) -> (B, Q, E) float32."""
        b, q, e = query_bqe.shape
        f, h, p = self.num_bev_queue, self.num_heads, self.num_points
        if value_bfqe.shape[1] != f:
            raise ValueError(f"expected {f} value frames, got shape {value_bfqe.shape}")
        identity_bqe = query_bqe.astype(jnp.float32)
        query_bqe = identity_bqe + query_pos_bqe.astype(jnp.float32)

        value_bfqe = self.value_proj(value_bfqe.astype(jnp.float32))
        value_bfhnd = value_bfqe.reshape(b, f, q, h, e // h).transpose(0, 1, 3, 2, 4)

        offsets_bqhfp2 = self.sampling_offsets(query_bqe).reshape(b, q, h, f, p, 2)
        logits_bqhfp = self.attention_weights(query_bqe).reshape(b, q, h, f, p)
        attn_bfhqp = jax.nn.softmax(logits_bqhfp, axis=-1).transpose(0, 3, 2, 1, 4)

        # Offsets are in BEV cells; normalise by (X, Y) around the normalised cell centre.
        y_count, x_count = bev_yx
        normaliser_2 = jnp.array([x_count, y_count], jnp.float32)
        ref_q2 = jnp.asarray(bev_reference_points(bev_yx))
        loc_bqhfp2 = ref_q2[None, :, None, None, None, :] + offsets_bqhfp2 / normaliser_2
        loc_bfhqp2 = loc_bqhfp2.transpose(0, 3, 2, 1, 4, 5)

        sampled_bfhqd = deformable_sample(value_bfhnd, loc_bfhqp2, attn_bfhqp, bev_yx)
        # Average over frames, then heads back to head-major channels.
        fused_bqe = sampled_bfhqd.mean(axis=1).transpose(0, 2, 1, 3).reshape(b, q, e)
        return self.output_proj(fused_bqe) + identity_bqe

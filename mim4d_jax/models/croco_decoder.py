"""Cross-view completion decoder (CroCo-style): predicts the pixels of view 1's masked patches
from view 1's visible tokens and the unmasked view 2.

Tokens are the stride-32 backbone output, one per SparK mask patch. Masked view-1 positions
(exact zeros out of the sparse backbone) are replaced by a learned mask token. Each block is
pre-norm: self-attention over view-1 tokens, cross-attention from view-1 to view-2 tokens,
then an MLP. Queries and keys carry 2D rotary position embeddings (half of each head's
channels rotate with the patch row, half with the column), so attention scores depend on
relative patch offsets only. A final norm and a linear layer give patch*patch*3 pixel values
per token, in (row, column, RGB) order within the patch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from mim4d_jax.models import layers


def rope_2d(x_nlhd: jax.Array, pos_l2: jax.Array, base: float) -> jax.Array:
    """Rotary embedding of (row, col) positions (L, 2) on (N, L, heads, D) queries or keys.

    The first D/2 channels encode the row, the rest the column; within each half, channel
    pairs (i, i + D/4) rotate by pos * base^(-i / (D/4)). D must be divisible by 4.
    """
    d = x_nlhd.shape[-1]
    if d % 4:
        raise ValueError(f"2D RoPE needs a head dim divisible by 4, got {d}")
    quarter = d // 4
    inv_freq_q = base ** (-jnp.arange(quarter, dtype=jnp.float32) / quarter)

    def rotate(half_nlhe: jax.Array, pos_l: jax.Array) -> jax.Array:
        angle_lq = pos_l.astype(jnp.float32)[:, None] * inv_freq_q[None]
        cos_l1q, sin_l1q = jnp.cos(angle_lq)[:, None], jnp.sin(angle_lq)[:, None]
        a, b = half_nlhe[..., :quarter], half_nlhe[..., quarter:]
        return jnp.concatenate([a * cos_l1q - b * sin_l1q, b * cos_l1q + a * sin_l1q], axis=-1)

    x32 = x_nlhd.astype(jnp.float32)
    out = jnp.concatenate(
        [rotate(x32[..., : d // 2], pos_l2[:, 0]), rotate(x32[..., d // 2 :], pos_l2[:, 1])],
        axis=-1,
    )
    return out.astype(x_nlhd.dtype)


def grid_positions(height: int, width: int) -> jax.Array:
    """(H*W, 2) integer (row, col) of a row-major token grid."""
    rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
    return jnp.stack([rows.ravel(), cols.ravel()], axis=-1)


class Attention(nnx.Module):
    """Multi-head attention with separate query and key/value inputs and 2D RoPE."""

    def __init__(self, dims: int, heads: int, rope_base: float, *, rngs: nnx.Rngs) -> None:
        if dims % heads:
            raise ValueError(f"croco.dec_dims={dims} is not divisible by croco.dec_heads={heads}")
        self.heads, self.rope_base = heads, rope_base
        self.q = layers.dense(dims, dims, out_axis="heads", rngs=rngs)
        self.kv = layers.dense(dims, 2 * dims, out_axis="heads", rngs=rngs)
        self.proj = layers.dense(dims, dims, in_axis="heads", out_axis="embed", rngs=rngs)

    def __call__(
        self, x_nlc: jax.Array, pos_l2: jax.Array, y_nmc: jax.Array, pos_m2: jax.Array
    ) -> jax.Array:
        n, length, c = x_nlc.shape
        d = c // self.heads
        q_nlhd = self.q(x_nlc).reshape(n, length, self.heads, d)
        k_nmhd, v_nmhd = jnp.split(
            self.kv(y_nmc).reshape(n, y_nmc.shape[1], 2, self.heads, d), 2, axis=2
        )
        k_nmhd, v_nmhd = k_nmhd[:, :, 0], v_nmhd[:, :, 0]
        q_nlhd = rope_2d(q_nlhd, pos_l2, self.rope_base)
        k_nmhd = rope_2d(k_nmhd, pos_m2, self.rope_base)
        out_nlhd = jax.nn.dot_product_attention(q_nlhd, k_nmhd, v_nmhd)
        return self.proj(out_nlhd.reshape(n, length, c))


class DecoderBlock(nnx.Module):
    """x += SA(LN(x)); x += CA(LN(x), LN_y(y)); x += MLP(LN(x))."""

    def __init__(self, dims: int, heads: int, mlp_ratio: float, rope_base: float, *, rngs):
        hidden = int(dims * mlp_ratio)
        self.norm1 = layers.layer_norm(dims, rngs=rngs)
        self.attn = Attention(dims, heads, rope_base, rngs=rngs)
        self.norm2 = layers.layer_norm(dims, rngs=rngs)
        self.norm_y = layers.layer_norm(dims, rngs=rngs)
        self.cross_attn = Attention(dims, heads, rope_base, rngs=rngs)
        self.norm3 = layers.layer_norm(dims, rngs=rngs)
        self.fc1 = layers.dense(dims, hidden, rngs=rngs)
        self.fc2 = layers.dense(hidden, dims, in_axis="mlp", out_axis="embed", rngs=rngs)

    def __call__(self, x_nlc: jax.Array, y_nmc: jax.Array, pos_l2: jax.Array) -> jax.Array:
        h = self.norm1(x_nlc)
        x_nlc = x_nlc + self.attn(h, pos_l2, h, pos_l2)
        x_nlc = x_nlc + self.cross_attn(self.norm2(x_nlc), pos_l2, self.norm_y(y_nmc), pos_l2)
        return x_nlc + self.fc2(jax.nn.gelu(self.fc1(self.norm3(x_nlc)), approximate=False))


class CrocoDecoder(nnx.Module):
    """(view-1 tokens, view-1 keep mask, view-2 tokens) -> per-token patch pixels."""

    def __init__(
        self, enc_dims: int, cfg: ml_collections.ConfigDict, patch: int, *, rngs: nnx.Rngs
    ) -> None:
        dims = int(cfg.dec_dims)
        self.patch = int(patch)
        self.embed = layers.dense(enc_dims, dims, out_axis="embed", rngs=rngs)
        self.mask_token = layers.param(
            0.02 * jax.random.normal(rngs.params(), (dims,), jnp.float32), (None,)
        )
        self.blocks = nnx.List(
            [
                DecoderBlock(
                    dims, int(cfg.dec_heads), float(cfg.mlp_ratio), float(cfg.rope_freq), rngs=rngs
                )
                for _ in range(int(cfg.dec_depth))
            ]
        )
        self.norm = layers.layer_norm(dims, rngs=rngs)
        self.head = layers.dense(dims, self.patch * self.patch * 3, out_axis=None, rngs=rngs)

    def __call__(
        self, tokens1_nhwc: jax.Array, keep1_nhw: jax.Array, tokens2_nhwc: jax.Array
    ) -> jax.Array:
        """(N, h, w, patch*patch*3) predictions for every view-1 position (masked or not)."""
        n, h, w, _ = tokens1_nhwc.shape
        x_nlc = self.embed(tokens1_nhwc.astype(jnp.float32).reshape(n, h * w, -1))
        keep_nl1 = keep1_nhw.reshape(n, h * w, 1).astype(jnp.float32)
        x_nlc = keep_nl1 * x_nlc + (1.0 - keep_nl1) * self.mask_token[...]
        y_nmc = self.embed(tokens2_nhwc.astype(jnp.float32).reshape(n, h * w, -1))
        pos_l2 = grid_positions(h, w)
        for block in self.blocks:
            x_nlc = block(x_nlc, y_nmc, pos_l2)
        return self.head(self.norm(x_nlc)).reshape(n, h, w, -1)

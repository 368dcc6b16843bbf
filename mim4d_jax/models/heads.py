"""`input_proj` (shared 1x1 conv on every FPN level) and `depth_net` (1x1 conv to depth bins,
softmax over bins): the reference's `UVTRSSL.input_proj` / `SimpleDepth` heads.

Both are plain convs so the top-level model's attributes export as `input_proj.{weight,bias}`
and `depth_net.{weight,bias}` with no extra nesting. As in the reference
(`extract_img_feat` then `pred_depth`), depth is predicted from the PROJECTED features.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype

from mim4d_jax.models import layers


def make_input_proj(channels: int, *, compute_dtype: Dtype | str, rngs: nnx.Rngs) -> nnx.Conv:
    """Conv2d(C, C, 1) applied to each FPN level (weights shared across levels)."""
    return layers.conv(channels, channels, (1, 1), dtype=jnp.dtype(compute_dtype), rngs=rngs)


def make_depth_net(
    channels: int, depth_bins: int, *, compute_dtype: Dtype | str, rngs: nnx.Rngs
) -> nnx.Conv:
    """Conv2d(C, depth_bins, 1) (`SimpleDepth`)."""
    return layers.conv(channels, depth_bins, (1, 1), dtype=jnp.dtype(compute_dtype), rngs=rngs)


def depth_probs(depth_net: nnx.Conv, feat_nhwc: jax.Array) -> jax.Array:
    """Softmax over depth bins of `depth_net(feat)`: (N, h, w, D) float32.

    The softmax runs in float32 (bf16 logits lose the small bin probabilities that the
    trilinear depth lookup multiplies features by)."""
    return jax.nn.softmax(depth_net(feat_nhwc).astype(jnp.float32), axis=-1)


def project_and_depth(
    input_proj: nnx.Conv, depth_net: nnx.Conv, fpn_l: Sequence[jax.Array]
) -> tuple[list[jax.Array], list[jax.Array]]:
    """Per level: feats = input_proj(P_l) (compute dtype), depth = softmax(depth_net(feats))."""
    feats_l = [input_proj(p_nhwc) for p_nhwc in fpn_l]
    return feats_l, [depth_probs(depth_net, f_nhwc) for f_nhwc in feats_l]

"""Projection head of the point-contrastive objective: volume features at points -> the
embedding space where PointInfoNCE compares them (Linear, ReLU, Linear; L2-normalised).

The head is discarded after pre-training (it is exported under `pc_head.*` for inspection);
the contrast shapes the volume features below it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from mim4d_jax.models import layers


class ProjectionHead(nnx.Module):
    def __init__(self, in_dims: int, cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> None:
        self.fc1 = layers.dense(in_dims, int(cfg.hidden_dims), rngs=rngs)
        self.fc2 = layers.dense(
            int(cfg.hidden_dims), int(cfg.out_dims), in_axis="mlp", out_axis=None, rngs=rngs
        )

    def __call__(self, feat_pc: jax.Array) -> jax.Array:
        """(..., C) features -> (..., out_dims) unit vectors (float32)."""
        z = self.fc2(jax.nn.relu(self.fc1(feat_pc.astype(jnp.float32))))
        return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-6)

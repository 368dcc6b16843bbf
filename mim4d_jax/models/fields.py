"""The NeuS SDF field of the renderer (reference `fields/sdf_field.py`, `SDFField`).

Attribute names mirror the exported PyTorch keys `pts_bbox_head.render_model.field.*`:
`sdf_decoder.{fc_p, fc_c.{0..n}, lin0..lin{n}}`, `rgb_decoder.{...}` (same layout),
`deviation_network.variance`, `laplace_density.{beta_min, beta}`. The field holds no grid
knowledge: renderer.py looks features up and passes them in. Everything is float32 and
replicated (logical axes None): the MLPs are 16 wide.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from mim4d_jax.models.layers import bias_init, dense_kernel_init, partitioned

# PyTorch nn.Linear's default kernel init is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), i.e. variance
# 1/(3 fan_in); keeping it keeps the initial SDF/RGB scale of the reference.
_TORCH_LINEAR_KERNEL = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _linear(in_dim: int, out_dim: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        in_dim,
        out_dim,
        kernel_init=dense_kernel_init(None, None, init=_TORCH_LINEAR_KERNEL),
        bias_init=bias_init(),
        param_dtype=jnp.float32,
        # Compute in the promoted dtype of inputs and params: fp32 in training (the renderer
        # feeds fp32), float64 when a test casts the params for finite differences.
        dtype=None,
        rngs=rngs,
    )


def softplus_beta100(x: jnp.ndarray) -> jnp.ndarray:
    """torch.nn.Softplus(beta=100): log(1 + exp(100 x)) / 100, smooth enough for 2nd derivatives."""
    return jax.nn.softplus(100.0 * x) / 100.0


class ConditionedMLP(nnx.Module):
    """`x = fc_p(p); for l: x = lin_l(x + fc_c[l](feat))`, activation between layers.

    The reference's SDFDecoder / RGBDecoder: `n_blocks + 1` linear layers `lin0..lin{n_blocks}`
    of width `hidden_dims`, the last one projecting to `out_dim`.
    """

    def __init__(
        self,
        cond_dim: int,
        out_dim: int,
        hidden_dims: int,
        n_blocks: int,
        activation: Callable[[jnp.ndarray], jnp.ndarray],
        rngs: nnx.Rngs,
    ) -> None:
        self.num_linear = n_blocks + 1
        self.activation = activation
        self.fc_p = _linear(3, hidden_dims, rngs)
        self.fc_c = nnx.List([_linear(cond_dim, hidden_dims, rngs) for _ in range(self.num_linear)])
        for layer in range(self.num_linear):
            out = out_dim if layer == self.num_linear - 1 else hidden_dims
            # Separate attributes (not a list): the reference names them lin0, lin1, ...
            setattr(self, f"lin{layer}", _linear(hidden_dims, out, rngs))

    def __call__(self, xyz_p3: jnp.ndarray, cond_pc: jnp.ndarray) -> jnp.ndarray:
        x_ph = self.fc_p(xyz_p3)
        for layer in range(self.num_linear):
            x_ph = getattr(self, f"lin{layer}")(x_ph + self.fc_c[layer](cond_pc))
            if layer < self.num_linear - 1:
                x_ph = self.activation(x_ph)
        return x_ph


class SingleVarianceNetwork(nnx.Module):
    """NeuS deviation: inv_s = exp(10 * variance), clipped to [1e-6, 1e6]."""

    def __init__(self, init_val: float, rngs: nnx.Rngs) -> None:
        self.variance = nnx.Param(
            partitioned(nnx.initializers.constant(init_val), (None,))(
                rngs.params(), (1,), jnp.float32
            )
        )

    def inv_s(self) -> jnp.ndarray:
        return jnp.clip(jnp.exp(10.0 * self.variance[0]), 1e-6, 1e6)


class LaplaceDensity(nnx.Module):
    """VolSDF density parameters. Kept only so the export has the reference's keys: the NeuS
    weights never use them (as in the reference). Their gradient is always zero, so an
    optimiser with weight decay should mask them (the reference never updates them)."""

    def __init__(self, init_val: float, rngs: nnx.Rngs, beta_min: float = 1e-4) -> None:
        self.beta_min = nnx.Param(
            partitioned(nnx.initializers.constant(beta_min), (None,))(
                rngs.params(), (1,), jnp.float32
            )
        )
        self.beta = nnx.Param(
            partitioned(nnx.initializers.constant(init_val), (None,))(
                rngs.params(), (1,), jnp.float32
            )
        )


class SDFField(nnx.Module):
    """SDF + geometry features from (scaled xyz, volume feature); RGB from view direction,
    feature, SDF gradient and geometry feature."""

    def __init__(
        self, render_cfg: ml_collections.ConfigDict, in_channels: int, rngs: nnx.Rngs
    ) -> None:
        self.geo_dims = int(render_cfg.geo_dims)
        hidden = int(render_cfg.hidden_dims)
        self.sdf_decoder = ConditionedMLP(
            in_channels,
            1 + self.geo_dims,
            hidden,
            int(render_cfg.sdf_blocks),
            softplus_beta100,
            rngs,
        )
        self.rgb_decoder = ConditionedMLP(
            3 + in_channels + 3 + self.geo_dims,
            3,
            hidden,
            int(render_cfg.rgb_blocks),
            jax.nn.relu,
            rngs,
        )
        self.laplace_density = LaplaceDensity(float(render_cfg.variance_init), rngs)
        self.deviation_network = SingleVarianceNetwork(float(render_cfg.variance_init), rngs)

    def sdf(self, xyz_p3: jnp.ndarray, feat_pc: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """(sdf_p, geo_pg) at scaled points with their looked-up features."""
        out_po = self.sdf_decoder(xyz_p3, feat_pc)
        return out_po[..., 0], out_po[..., 1:]

    def rgb(
        self,
        xyz_p3: jnp.ndarray,
        dirs_p3: jnp.ndarray,
        feat_pc: jnp.ndarray,
        grad_p3: jnp.ndarray,
        geo_pg: jnp.ndarray,
    ) -> jnp.ndarray:
        """(P, 3) colours in [0, 1] from cat[dir, feat, grad sdf, geo] (the reference order)."""
        cond_pk = jnp.concatenate([dirs_p3, feat_pc, grad_p3, geo_pg], axis=-1)
        return jax.nn.sigmoid(self.rgb_decoder(xyz_p3, cond_pk))

    def inv_s(self) -> jnp.ndarray:
        return self.deviation_network.inv_s()

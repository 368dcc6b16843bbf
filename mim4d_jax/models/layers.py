"""Partitioned parameter initialisers shared by every model file.

Every parameter carries logical axis names from the vocabulary in docs/architecture.md
(`embed`, `mlp`, `heads`, `queries`, `None`). The names live in the Variable's `out_sharding`
metadata; the trainer maps them to mesh axes with

    with nnx.logical_axis_rules(config.sharding_rules):
        pspecs = nnx.get_partition_spec(nnx.state(model, nnx.Param))

`eager_sharding=False` is set on every annotation so that a model can be built with no mesh
in scope (CPU tests, export, `nnx.eval_shape`): flax 0.12.8 otherwise tries to shard each
variable at creation and raises when no mesh is active. Placement is done by the trainer
(jit `out_shardings` / `nnx.get_abstract_model`), not at construction.

Default initialisers (a caller may pass `init=` for kernels):
- conv / dense kernels: flax's `lecun_normal` (truncated normal, variance 1/fan_in; fan_in of a
  depthwise 7x7 kernel is 49). PyTorch's default kaiming-uniform(a=sqrt(5)) has variance
  1/(3 fan_in): the same fan-in scaling, sqrt(3) smaller. ConvNeXt passes its own
  trunc_normal(0.02) (official ConvNeXt `_init_weights`).
- biases zeros, LayerNorm scale ones / bias zeros.
"""

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype, Initializer


def partitioned(init: Initializer, axes: Sequence[str | None]) -> Initializer:
    """Wrap `init` so the created nnx.Param carries logical `axes` (one name per dim)."""
    return nnx.with_partitioning(init, tuple(axes), eager_sharding=False)


def conv_kernel_init(spatial_dims: int = 2, init: Initializer | None = None) -> Initializer:
    """Conv kernel (*spatial, in, out): spatial dims unsharded, in = `embed`, out = `mlp`."""
    base = init if init is not None else nnx.initializers.lecun_normal()
    return partitioned(base, (None,) * spatial_dims + ("embed", "mlp"))


def depthwise_kernel_init(spatial_dims: int = 2, init: Initializer | None = None) -> Initializer:
    """Depthwise conv kernel (*spatial, 1, C): the channel dim is the model width (`embed`)."""
    base = init if init is not None else nnx.initializers.lecun_normal()
    return partitioned(base, (None,) * spatial_dims + (None, "embed"))


def dense_kernel_init(
    in_axis: str | None = "embed", out_axis: str | None = "mlp", init: Initializer | None = None
) -> Initializer:
    """Dense kernel (in, out) with logical names for both dims (e.g. ("mlp", "embed") for a
    down-projection so that the hidden dim is sharded consistently)."""
    base = init if init is not None else nnx.initializers.lecun_normal()
    return partitioned(base, (in_axis, out_axis))


def bias_init() -> Initializer:
    """Biases are small: replicated."""
    return partitioned(nnx.initializers.zeros_init(), (None,))


def scale_init() -> Initializer:
    """Norm scales (ones), replicated."""
    return partitioned(nnx.initializers.ones_init(), (None,))


def param(value: jnp.ndarray, axes: Sequence[str | None]) -> nnx.Param:
    """A hand-made nnx.Param (e.g. a layer-scale gamma) with logical axes, float32."""
    return nnx.Param(
        jnp.asarray(value, jnp.float32), out_sharding=tuple(axes), eager_sharding=False
    )


def conv(
    in_features: int,
    out_features: int,
    kernel_size: Sequence[int],
    *,
    strides: int | Sequence[int] = 1,
    padding: str | Sequence[tuple[int, int]] = "VALID",
    use_bias: bool = True,
    dtype: Dtype | None = None,
    init: Initializer | None = None,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """nnx.Conv with partitioned kernel/bias, float32 params and compute in `dtype`.

    Padding is explicit (PyTorch-style ((p, p), ...)) by default so that exported weights
    reproduce torch numerically; "SAME" differs from torch for even sizes and strides > 1.
    """
    return nnx.Conv(
        in_features,
        out_features,
        tuple(kernel_size),
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,  # float32 master weights; compute dtype is separate
        kernel_init=conv_kernel_init(len(tuple(kernel_size)), init),
        bias_init=bias_init(),
        rngs=rngs,
    )


def layer_norm(num_features: int, *, dtype: Dtype | None = None, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """LayerNorm over the last (channel) axis with eps 1e-6 (ConvNeXt/torch export value)."""
    return nnx.LayerNorm(
        num_features,
        epsilon=1e-6,
        dtype=dtype,
        param_dtype=jnp.float32,  # float32 master weights; compute dtype is separate
        scale_init=scale_init(),
        bias_init=bias_init(),
        rngs=rngs,
    )


def dense(
    in_features: int,
    out_features: int,
    *,
    in_axis: str | None = "embed",
    out_axis: str | None = "mlp",
    use_bias: bool = True,
    dtype: Dtype | None = None,
    init: Initializer | None = None,
    rngs: nnx.Rngs,
) -> nnx.Linear:
    """nnx.Linear with partitioned kernel (in_axis, out_axis) and replicated bias."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=dense_kernel_init(in_axis, out_axis, init),
        bias_init=bias_init(),
        rngs=rngs,
    )

"""mmdet FPN (add_extra_convs='on_output', relu_before_extra_convs=True), NHWC, Flax NNX.

With num_outs = used levels + 1 (vs0.1) the single extra conv gets no ReLU (mmdet applies
the ReLU only before the 2nd and later extra convs).

Attribute tree (1:1 with the exported `img_neck.*` keys):
  lateral_convs[i].conv  1x1, in_channels[start_level + i] -> out_channels
  fpn_convs[i].conv      3x3 pad 1; fpn_convs[-1] is the extra 3x3 stride-2 conv
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.typing import Dtype

from mim4d_jax.models import layers


class ConvModule(nnx.Module):
    """mmcv ConvModule with no norm and no activation: only `.conv` (export key `*.conv.*`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        *,
        stride: int = 1,
        compute_dtype: Dtype,
        rngs: nnx.Rngs,
    ) -> None:
        pad = kernel // 2
        # Explicit torch-style padding: "SAME" pads (0, 1) for a 3x3 stride-2 conv on an even
        # input, torch pads (1, 1), so exported weights would give shifted outputs.
        self.conv = layers.conv(
            in_channels,
            out_channels,
            (kernel, kernel),
            strides=stride,
            padding=((pad, pad), (pad, pad)),
            dtype=compute_dtype,
            rngs=rngs,
        )

    def __call__(self, x_nhwc: jax.Array) -> jax.Array:
        return self.conv(x_nhwc)


def _nearest_source_index(in_size: int, out_size: int) -> np.ndarray:
    """torch's `nearest_idx`: identity, exact 2x, else min(int(dst * float32(in / out)), in - 1)
    evaluated in float32 like the torch kernel, so odd sizes pick the same source rows."""
    dst = np.arange(out_size)
    if out_size == in_size:
        return dst.astype(np.int32)
    if out_size == 2 * in_size:
        return (dst >> 1).astype(np.int32)
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.floor(dst.astype(np.float32) * scale).astype(np.int32)
    return np.minimum(src, in_size - 1)


def resize_nearest(x_nhwc: jax.Array, height: int, width: int) -> jax.Array:
    """torch `F.interpolate(mode='nearest', size=(height, width))` on NHWC, any target size."""
    in_h, in_w = x_nhwc.shape[1:3]
    rows = _nearest_source_index(in_h, height)
    cols = _nearest_source_index(in_w, width)
    return jnp.take(jnp.take(x_nhwc, rows, axis=1), cols, axis=2)


class FPN(nnx.Module):
    """Feature pyramid over backbone levels start_level.. with extra stride-2 output levels."""

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        *,
        start_level: int = 1,
        num_outs: int = 4,
        compute_dtype: Dtype | str = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        compute_dtype = jnp.dtype(compute_dtype)
        used = len(in_channels) - start_level
        if used < 1 or num_outs < used:
            raise ValueError(
                f"FPN needs num_outs ({num_outs}) >= used levels ({used}) >= 1 "
                f"for in_channels={tuple(in_channels)} and start_level={start_level}"
            )
        self.start_level = start_level
        self.num_outs = num_outs
        self.lateral_convs = nnx.List(
            [
                ConvModule(c, out_channels, 1, compute_dtype=compute_dtype, rngs=rngs)
                for c in in_channels[start_level:]
            ]
        )
        fpn = [
            ConvModule(out_channels, out_channels, 3, compute_dtype=compute_dtype, rngs=rngs)
            for _ in range(used)
        ]
        # 'on_output': every extra level is a stride-2 conv on the previous output.
        fpn += [
            ConvModule(
                out_channels, out_channels, 3, stride=2, compute_dtype=compute_dtype, rngs=rngs
            )
            for _ in range(num_outs - used)
        ]
        self.fpn_convs = nnx.List(fpn)

    def __call__(self, feats_l: Sequence[jax.Array]) -> list[jax.Array]:
        """feats_l: backbone NHWC maps (all levels, e.g. strides 4..32).
        Returns `num_outs` NHWC maps with `out_channels` (strides 8, 16, 32, 64 for vs0.1)."""
        inputs = feats_l[self.start_level :]
        if len(inputs) != len(self.lateral_convs):
            raise ValueError(f"expected {len(self.lateral_convs)} levels from start_level")
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            target_h, target_w = laterals[i - 1].shape[1:3]
            laterals[i - 1] = laterals[i - 1] + resize_nearest(laterals[i], target_h, target_w)
        outs = [self.fpn_convs[i](lat) for i, lat in enumerate(laterals)]
        for i in range(len(laterals), self.num_outs):
            # mmdet applies `relu_before_extra_convs` only from the SECOND extra conv on: the
            # first extra conv reads outs[-1] as is (mmdet FPN.forward, 'on_output').
            source = outs[-1] if i == len(laterals) else jax.nn.relu(outs[-1])
            outs.append(self.fpn_convs[i](source))
        return outs

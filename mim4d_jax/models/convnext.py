"""ConvNeXt v1 with SparK sparse masking (the reference `MaskConvNeXt`), NHWC, Flax NNX.

Attribute tree (1:1 with the exported `img_backbone.*` PyTorch keys):
  downsample_layers[0] = [conv 4x4/4, LN]        -> downsample_layers.0.0 / .0.1
  downsample_layers[i] = [LN, conv 2x2/2], i=1..3 -> downsample_layers.i.0 / .i.1
  stages[s][b].{dwconv, norm, pwconv1, pwconv2, gamma}
  norm0..norm3 (output LNs)

SparK semantics (`MaskConvNeXt`): with a stride-32 keep mask, the input is multiplied by the
upsampled mask and features at masked positions are zeroed after every conv, after every LN
and on each block's residual branch. Because every operator that mixes positions (the convs)
only ever sees zeros at masked positions, visible outputs depend only on visible pixels, and
masked outputs are exactly 0 (also after the output norms, which are sparse LNs too).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype

from mim4d_jax.models import layers

# variant -> (depths, dims)
VARIANTS: dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = {
    "S": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "B": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "tiny": ((1, 1, 2, 1), (16, 32, 64, 128)),
    "nano": ((1, 1, 1, 1), (8, 16, 32, 64)),
}

# Official ConvNeXt `_init_weights`: timm trunc_normal_(std=0.02) for every conv/linear weight.
# timm truncates at +-2 ABSOLUTE (100 std), i.e. effectively a plain normal; flax's
# truncated_normal cuts at +-2 std (std 0.0176), so a plain normal is the faithful choice.
KERNEL_INIT = nnx.initializers.normal(stddev=0.02)
MASK_STRIDE = 32  # the keep mask lives on the stride-32 patch grid (data.mask_patch)
STEM_STRIDE = 4


def variant_dims(variant: str) -> tuple[int, int, int, int]:
    """Output channels of the 4 stages (the FPN's in_channels)."""
    return _lookup(variant)[1]


def _lookup(variant: str) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    if variant not in VARIANTS:
        raise ValueError(f"unknown ConvNeXt variant {variant!r}; choose from {sorted(VARIANTS)}")
    return VARIANTS[variant]


def upsample_keep(keep_nhw: jax.Array, height: int, width: int, dtype: Dtype) -> jax.Array:
    """Nearest-upsample the patch keep mask to a (N, height, width, 1) multiplier.

    Each mask cell covers an integer block of feature positions (the SparK
    `repeat_interleave`), so the feature size must be an exact multiple of the mask size.
    """
    mask_h, mask_w = keep_nhw.shape[1:]
    if height % mask_h or width % mask_w:
        raise ValueError(
            f"feature map {height}x{width} is not a multiple of the keep mask {mask_h}x{mask_w}"
        )
    rep_h, rep_w = height // mask_h, width // mask_w
    keep = jnp.repeat(jnp.repeat(keep_nhw, rep_h, axis=1), rep_w, axis=2)
    return keep[..., None].astype(dtype)


def _apply_keep(x_nhwc: jax.Array, keep_nhw1: jax.Array | None) -> jax.Array:
    return x_nhwc if keep_nhw1 is None else x_nhwc * keep_nhw1


def drop_path(x_nhwc: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
    """Per-sample stochastic depth (timm `drop_path`, scale_by_keep): active only with an rng."""
    if rng is None or rate <= 0.0:
        return x_nhwc
    keep_prob = 1.0 - rate
    keep_n111 = jax.random.bernoulli(rng, keep_prob, (x_nhwc.shape[0], 1, 1, 1))
    return x_nhwc * (keep_n111.astype(x_nhwc.dtype) / jnp.asarray(keep_prob, x_nhwc.dtype))


class Block(nnx.Module):
    """dwconv 7x7 -> LN -> Linear C->4C -> exact GELU -> Linear 4C->C -> *gamma -> DropPath."""

    def __init__(
        self, dim: int, *, layer_scale_init: float, compute_dtype: Dtype, rngs: nnx.Rngs
    ) -> None:
        self.dwconv = nnx.Conv(
            dim,
            dim,
            (7, 7),
            padding=((3, 3), (3, 3)),
            feature_group_count=dim,
            dtype=compute_dtype,
            param_dtype=jnp.float32,
            kernel_init=layers.depthwise_kernel_init(init=KERNEL_INIT),
            bias_init=layers.bias_init(),
            rngs=rngs,
        )
        self.norm = layers.layer_norm(dim, dtype=compute_dtype, rngs=rngs)
        # Hidden dim is the `mlp` axis in both projections so tensor sharding stays consistent.
        self.pwconv1 = layers.dense(
            dim,
            4 * dim,
            in_axis="embed",
            out_axis="mlp",
            dtype=compute_dtype,
            init=KERNEL_INIT,
            rngs=rngs,
        )
        self.pwconv2 = layers.dense(
            4 * dim,
            dim,
            in_axis="mlp",
            out_axis="embed",
            dtype=compute_dtype,
            init=KERNEL_INIT,
            rngs=rngs,
        )
        self.gamma = layers.param(jnp.full((dim,), layer_scale_init), (None,))

    def __call__(
        self,
        x_nhwc: jax.Array,
        keep_nhw1: jax.Array | None,
        drop_rate: float,
        rng: jax.Array | None,
    ) -> jax.Array:
        y_nhwc = _apply_keep(self.dwconv(x_nhwc), keep_nhw1)
        y_nhwc = _apply_keep(self.norm(y_nhwc), keep_nhw1)
        y_nhwc = jax.nn.gelu(self.pwconv1(y_nhwc), approximate=False)  # torch nn.GELU() is exact
        y_nhwc = self.pwconv2(y_nhwc) * self.gamma[...].astype(y_nhwc.dtype)
        y_nhwc = _apply_keep(y_nhwc, keep_nhw1)
        return x_nhwc + drop_path(y_nhwc, drop_rate, rng)


class MaskedConvNeXt(nnx.Module):
    """SparK-masked ConvNeXt v1 returning the 4 normed stage outputs (strides 4, 8, 16, 32)."""

    def __init__(
        self,
        variant: str,
        *,
        drop_path_rate: float = 0.0,
        layer_scale_init: float = 1e-6,
        frozen_stages: int = 0,
        compute_dtype: Dtype | str = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        """`frozen_stages` (the optimiser freezes their weights) also switches off their
        stochastic depth: the reference keeps frozen stages in eval mode."""
        depths, dims = _lookup(variant)
        compute_dtype = jnp.dtype(compute_dtype)  # config passes a name such as "bfloat16"
        self.depths: tuple[int, ...] = depths
        self.dims: tuple[int, ...] = dims
        self.compute_dtype = compute_dtype
        # Linear stochastic-depth schedule over all blocks (timm/ConvNeXt convention).
        total = sum(depths)
        frozen_blocks = sum(depths[:frozen_stages])
        self.drop_rates: tuple[float, ...] = tuple(
            0.0 if i < frozen_blocks else drop_path_rate * i / max(total - 1, 1)
            for i in range(total)
        )

        def conv(cin: int, cout: int, k: int) -> nnx.Conv:
            return layers.conv(
                cin,
                cout,
                (k, k),
                strides=k,
                padding="VALID",
                dtype=compute_dtype,
                init=KERNEL_INIT,
                rngs=rngs,
            )

        def norm(c: int) -> nnx.LayerNorm:
            return layers.layer_norm(c, dtype=compute_dtype, rngs=rngs)

        stem_and_downsamples = [nnx.List([conv(3, dims[0], STEM_STRIDE), norm(dims[0])])]
        for i in range(1, 4):
            stem_and_downsamples.append(
                nnx.List([norm(dims[i - 1]), conv(dims[i - 1], dims[i], 2)])
            )
        self.downsample_layers = nnx.List(stem_and_downsamples)
        self.stages = nnx.List(
            [
                nnx.List(
                    [
                        Block(
                            dims[s],
                            layer_scale_init=layer_scale_init,
                            compute_dtype=compute_dtype,
                            rngs=rngs,
                        )
                        for _ in range(depths[s])
                    ]
                )
                for s in range(4)
            ]
        )
        self.norm0 = norm(dims[0])
        self.norm1 = norm(dims[1])
        self.norm2 = norm(dims[2])
        self.norm3 = norm(dims[3])

    def output_norms(self) -> Sequence[nnx.LayerNorm]:
        return (self.norm0, self.norm1, self.norm2, self.norm3)

    def __call__(
        self,
        x_nhwc: jax.Array,
        keep_nhw: jax.Array | None = None,
        *,
        rng: jax.Array | None = None,
    ) -> list[jax.Array]:
        """x_nhwc: (N, H, W, 3) normalised images (H, W multiples of 32 when masking).
        keep_nhw: (N, H/32, W/32) SparK keep mask (1 visible, 0 masked) or None (no mask).
        rng: stochastic-depth key; None = deterministic (eval, or drop_path_rate 0).
        Returns 4 NHWC maps in compute_dtype at strides 4, 8, 16, 32 (masked positions 0).
        """
        n, height, width, _ = x_nhwc.shape
        expected_keep = (n, height // MASK_STRIDE, width // MASK_STRIDE)
        if keep_nhw is not None and (
            height % MASK_STRIDE or width % MASK_STRIDE or tuple(keep_nhw.shape) != expected_keep
        ):
            raise ValueError(
                f"keep mask {keep_nhw.shape} does not tile input {x_nhwc.shape} into "
                f"{MASK_STRIDE}-pixel patches (expected {expected_keep})"
            )
        x_nhwc = x_nhwc.astype(self.compute_dtype)

        def keep_at(stride: int) -> jax.Array | None:
            if keep_nhw is None:
                return None
            return upsample_keep(keep_nhw, height // stride, width // stride, self.compute_dtype)

        x_nhwc = _apply_keep(x_nhwc, keep_at(1))
        outs = []
        block_index = 0
        for s in range(4):
            stride = STEM_STRIDE * 2**s
            keep_nhw1 = keep_at(stride)
            first, second = self.downsample_layers[s]
            # Both orders (conv->LN for the stem, LN->conv for downsampling) re-mask after each op.
            x_nhwc = _apply_keep(first(x_nhwc), keep_nhw1 if s == 0 else keep_at(stride // 2))
            x_nhwc = _apply_keep(second(x_nhwc), keep_nhw1)
            for block in self.stages[s]:
                block_rng = None if rng is None else jax.random.fold_in(rng, block_index)
                x_nhwc = block(x_nhwc, keep_nhw1, self.drop_rates[block_index], block_rng)
                block_index += 1
            outs.append(_apply_keep(self.output_norms()[s](x_nhwc), keep_nhw1))
        return outs

"""MaskedConvNeXt: shapes, SparK no-leak masking, stochastic depth, parameter tree and count."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mim4d_jax.models import convnext
from mim4d_jax.models.convnext import MaskedConvNeXt, drop_path

# ConvNeXt-S as published (torchvision/official, ImageNet head included): 50,223,688 params.
# Without the head (768*1000 + 1000) and the final `norm` (2*768), plus the four output norms
# norm0..norm3 (2*(96+192+384+768)): 50,223,688 - 769,000 - 1,536 + 2,880 = 49,456,032.
CONVNEXT_S_PARAMS = 49_456_032


def _count_from_definition(depths: tuple[int, ...], dims: tuple[int, ...]) -> int:
    """Parameter count straight from the reference ConvNeXt v1 layer list (MaskConvNeXt)."""
    n = 3 * dims[0] * 4 * 4 + dims[0] + 2 * dims[0]  # stem conv + LN
    for i in range(1, 4):  # LN + conv 2x2
        n += 2 * dims[i - 1] + dims[i - 1] * dims[i] * 4 + dims[i]
    for depth, c in zip(depths, dims):
        # dwconv 49C+C, LN 2C, pwconv1 4C^2+4C, pwconv2 4C^2+C, gamma C
        n += depth * (8 * c * c + 58 * c)
    return n + sum(2 * c for c in dims)  # norm0..norm3


def _jitted(model: MaskedConvNeXt) -> Callable[..., list[jax.Array]]:
    """One compiled forward per model (eager op-by-op dispatch is far slower on CPU)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(
        state: nnx.State, x_nhwc: jax.Array, keep_nhw: jax.Array | None, rng: jax.Array | None
    ) -> list[jax.Array]:
        return nnx.merge(graphdef, state)(x_nhwc, keep_nhw, rng=rng)

    return lambda x_nhwc, keep_nhw=None, rng=None: forward(state, x_nhwc, keep_nhw, rng)


def _images(n: int, h: int, w: int, seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (n, h, w, 3), jnp.float32)


def _pixel_keep(keep_nhw: jax.Array) -> jax.Array:
    return jnp.repeat(jnp.repeat(keep_nhw, 32, axis=1), 32, axis=2)[..., None]


def test_shapes_dtypes_and_param_dtype() -> None:
    model = MaskedConvNeXt("nano", compute_dtype="bfloat16", rngs=nnx.Rngs(0))
    outs = _jitted(model)(_images(2, 64, 32), jnp.ones((2, 2, 1)))
    assert [o.shape for o in outs] == [(2, 16, 8, 8), (2, 8, 4, 16), (2, 4, 2, 32), (2, 2, 1, 64)]
    assert all(o.dtype == jnp.bfloat16 for o in outs)
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert all(p.dtype == jnp.float32 for p in params)
    assert convnext.variant_dims("S") == (96, 192, 384, 768)
    with pytest.raises(ValueError):
        model(_images(2, 64, 32), jnp.ones((2, 3, 1)))  # mask does not tile the input


def test_masked_patches_do_not_leak() -> None:
    """No leak = changing pixels inside masked patches changes no output anywhere, and masked
    positions are exactly 0 at every stage (SparK has no mask token, so the FPN fills them).
    LN is per position, so it cannot mix positions; only convs could, and they see zeros."""
    model = _jitted(MaskedConvNeXt("nano", layer_scale_init=1.0, rngs=nnx.Rngs(1)))
    keep_nhw = jnp.array([[[1, 0, 1], [0, 1, 1]], [[1, 1, 0], [1, 0, 1]]], jnp.float32)
    x_nhwc = _images(2, 64, 96, seed=1)
    noise_nhwc = 5.0 * _images(2, 64, 96, seed=2) * (1.0 - _pixel_keep(keep_nhw))
    outs_a = model(x_nhwc, keep_nhw)
    outs_b = model(x_nhwc + noise_nhwc, keep_nhw)
    for level, (a, b) in enumerate(zip(outs_a, outs_b)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"level {level}")
        keep = convnext.upsample_keep(keep_nhw, a.shape[1], a.shape[2], jnp.float32)
        assert float(jnp.abs(a * (1.0 - keep)).max()) == 0.0
        assert float(jnp.abs(a * keep).max()) > 0.0
    # The same perturbation without a mask does reach visible positions (the check can fail).
    dense_a = model(x_nhwc)[3]
    dense_b = model(x_nhwc + noise_nhwc)[3]
    assert float(jnp.abs(dense_a - dense_b).max()) > 1e-3


def test_no_mask_equals_all_visible_mask() -> None:
    model = _jitted(MaskedConvNeXt("nano", layer_scale_init=1.0, rngs=nnx.Rngs(2)))
    x_nhwc = _images(1, 32, 64, seed=3)
    for a, b in zip(model(x_nhwc), model(x_nhwc, jnp.ones((1, 1, 2)))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_drop_path_only_with_rng() -> None:
    model = MaskedConvNeXt("nano", drop_path_rate=0.9, layer_scale_init=1.0, rngs=nnx.Rngs(3))
    assert model.drop_rates[0] == 0.0 and model.drop_rates[-1] == pytest.approx(0.9)
    forward = _jitted(model)
    x_nhwc = _images(4, 32, 32, seed=4)
    det_a, det_b = forward(x_nhwc)[3], forward(x_nhwc)[3]
    np.testing.assert_array_equal(np.asarray(det_a), np.asarray(det_b))
    sto_a = forward(x_nhwc, rng=jax.random.key(7))[3]
    sto_b = forward(x_nhwc, rng=jax.random.key(7))[3]
    np.testing.assert_array_equal(np.asarray(sto_a), np.asarray(sto_b))  # same key, same draw
    assert float(jnp.abs(sto_a - det_a).max()) > 1e-3
    # Per sample: each sample's branch is either dropped or scaled by 1/keep_prob.
    ones = jnp.ones((256, 2, 2, 3))
    dropped = drop_path(ones, 0.25, jax.random.key(0))
    per_sample = np.asarray(dropped).reshape(256, -1)
    assert np.all(per_sample == per_sample[:, :1])
    assert set(np.unique(per_sample)) <= {0.0, np.float32(1.0 / 0.75)}
    assert 0.15 < float((per_sample[:, 0] == 0).mean()) < 0.35
    np.testing.assert_array_equal(np.asarray(drop_path(ones, 0.25, None)), np.asarray(ones))
    np.testing.assert_array_equal(np.asarray(drop_path(ones, 0.0, jax.random.key(0))), ones)


def _torch_keys(model: nnx.Module) -> dict[str, tuple[int, ...]]:
    """Param paths in PyTorch spelling (kernel/scale -> weight), flax shapes."""
    keys = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        name = {"kernel": "weight", "scale": "weight"}.get(str(path[-1]), str(path[-1]))
        keys[".".join(str(p) for p in path[:-1]) + "." + name] = tuple(var.get_value().shape)
    return {k.removeprefix("."): v for k, v in keys.items()}


def test_attribute_tree_matches_export_keys() -> None:
    model = MaskedConvNeXt("nano", rngs=nnx.Rngs(0))
    depths, dims = convnext.VARIANTS["nano"]
    expected = {
        "downsample_layers.0.0.weight": (4, 4, 3, dims[0]),
        "downsample_layers.0.0.bias": (dims[0],),
        "downsample_layers.0.1.weight": (dims[0],),
        "downsample_layers.0.1.bias": (dims[0],),
    }
    for i in range(1, 4):
        expected[f"downsample_layers.{i}.0.weight"] = (dims[i - 1],)
        expected[f"downsample_layers.{i}.0.bias"] = (dims[i - 1],)
        expected[f"downsample_layers.{i}.1.weight"] = (2, 2, dims[i - 1], dims[i])
        expected[f"downsample_layers.{i}.1.bias"] = (dims[i],)
    for s, (depth, c) in enumerate(zip(depths, dims)):
        for b in range(depth):
            pre = f"stages.{s}.{b}."
            expected |= {
                pre + "dwconv.weight": (7, 7, 1, c),
                pre + "dwconv.bias": (c,),
                pre + "norm.weight": (c,),
                pre + "norm.bias": (c,),
                pre + "pwconv1.weight": (c, 4 * c),
                pre + "pwconv1.bias": (4 * c,),
                pre + "pwconv2.weight": (4 * c, c),
                pre + "pwconv2.bias": (c,),
                pre + "gamma": (c,),
            }
        expected[f"norm{s}.weight"] = (c,)
        expected[f"norm{s}.bias"] = (c,)
    assert _torch_keys(model) == expected


@pytest.mark.parametrize("variant", ["S", "B"])
def test_param_count_abstract(variant: str) -> None:
    model = nnx.eval_shape(lambda: MaskedConvNeXt(variant, rngs=nnx.Rngs(0)))
    count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert count == _count_from_definition(*convnext.VARIANTS[variant])
    if variant == "S":
        assert count == CONVNEXT_S_PARAMS


def test_frozen_stages_have_no_stochastic_depth():
    """The reference keeps frozen stages in eval mode: no DropPath there."""
    model = nnx.eval_shape(
        lambda: MaskedConvNeXt("tiny", drop_path_rate=0.5, frozen_stages=1, rngs=nnx.Rngs(0))
    )
    depths = model.depths
    assert all(rate == 0.0 for rate in model.drop_rates[: depths[0]])
    assert all(rate > 0.0 for rate in model.drop_rates[depths[0] :])

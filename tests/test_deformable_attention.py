"""TemporalCrossAttention against an explicit per-sample loop, and its reference init."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mim4d_jax.models.deformable_attention import TemporalCrossAttention


def _naive_attention(params: dict, query, value, pos, heads: int, points: int, bev_yx):
    """mmcv multi_scale_deformable_attn_pytorch (one level) + TemporalCrossAttention, as loops."""
    y_count, x_count = bev_yx
    b_count, f_count, q_count, e = value.shape
    dh = e // heads
    q_in = query + pos
    v = value @ params["value_proj"]["kernel"] + params["value_proj"]["bias"]
    off = q_in @ params["sampling_offsets"]["kernel"] + params["sampling_offsets"]["bias"]
    off = off.reshape(b_count, q_count, heads, f_count, points, 2)
    logits = q_in @ params["attention_weights"]["kernel"] + params["attention_weights"]["bias"]
    logits = logits.reshape(b_count, q_count, heads, f_count, points)
    attn = np.exp(logits - logits.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    fused = np.zeros((b_count, q_count, e))
    for b in range(b_count):
        for qi in range(q_count):
            ref_x = (qi % x_count + 0.5) / x_count
            ref_y = (qi // x_count + 0.5) / y_count
            for h in range(heads):
                for f in range(f_count):
                    for p in range(points):
                        # grid_sample, align_corners=False: pixel = normalised * size - 0.5.
                        px = (ref_x + off[b, qi, h, f, p, 0] / x_count) * x_count - 0.5
                        py = (ref_y + off[b, qi, h, f, p, 1] / y_count) * y_count - 0.5
                        x0, y0 = int(np.floor(px)), int(np.floor(py))
                        sample = np.zeros(dh)
                        for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
                            if 0 <= xi < x_count and 0 <= yi < y_count:
                                w = (1 - abs(px - xi)) * (1 - abs(py - yi))
                                row = v[b, f, yi * x_count + xi]
                                sample += w * row[h * dh : (h + 1) * dh]
                        weight = attn[b, qi, h, f, p] / f_count  # frames are averaged
                        fused[b, qi, h * dh : (h + 1) * dh] += weight * sample
    out = fused @ params["output_proj"]["kernel"] + params["output_proj"]["bias"]
    return out + query


def test_matches_naive_loop_implementation():
    heads, points, frames, e, bev_yx = 2, 3, 2, 8, (3, 4)
    q_count = bev_yx[0] * bev_yx[1]
    attn = TemporalCrossAttention(e, heads, points, frames, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)

    def randomise(param: nnx.Param, std: float) -> None:
        param[...] = jnp.asarray(rng.normal(0, std, param.shape), jnp.float32)

    # Random (non-init) offsets up to a few cells reach outside the BEV: zero padding is exercised.
    randomise(attn.sampling_offsets.kernel, 1.5)
    randomise(attn.sampling_offsets.bias, 1.5)
    randomise(attn.attention_weights.kernel, 1.0)
    randomise(attn.value_proj.bias, 0.5)
    query = rng.normal(size=(2, q_count, e)).astype(np.float32)
    value = rng.normal(size=(2, frames, q_count, e)).astype(np.float32)
    pos = rng.normal(size=(1, q_count, e)).astype(np.float32)

    got = jax.jit(lambda m, *a: m(*a, bev_yx))(attn, query, value, pos)
    params = nnx.to_pure_dict(nnx.state(attn, nnx.Param))
    params = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    want = _naive_attention(
        params, query.astype(np.float64), value.astype(np.float64), pos, heads, points, bev_yx
    )
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=0)


def test_reference_init_and_exported_shapes():
    # vs0.1 long branch (E=64, 2 heads, 2 frames) and short branch (E=128, 4 heads, 1 frame):
    # both export sampling_offsets [32, E], attention_weights [16, E] (Flax kernels are (in, out)).
    for e, heads, frames in ((64, 2, 2), (128, 4, 1)):
        attn = TemporalCrossAttention(e, heads, 4, frames, rngs=nnx.Rngs(0))
        assert attn.sampling_offsets.kernel.shape == (e, 32)
        assert attn.attention_weights.kernel.shape == (e, 16)
        assert attn.value_proj.kernel.shape == (e, e)
        assert not np.any(np.asarray(attn.sampling_offsets.kernel[...]))
        assert not np.any(np.asarray(attn.attention_weights.kernel[...]))
        assert not np.any(np.asarray(attn.attention_weights.bias[...]))
        limit = np.sqrt(6.0 / (2 * e))  # xavier uniform
        assert np.abs(np.asarray(attn.value_proj.kernel[...])).max() <= limit
        assert np.asarray(attn.value_proj.kernel[...]).std() > limit / 4

    short = TemporalCrossAttention(128, 4, 4, 1, rngs=nnx.Rngs(0))
    bias_hfp2 = np.asarray(short.sampling_offsets.bias[...]).reshape(4, 1, 4, 2)
    directions = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], np.float32)
    for p in range(4):
        np.testing.assert_allclose(bias_hfp2[:, 0, p], directions * (p + 1), atol=1e-6)
    long = TemporalCrossAttention(64, 2, 4, 2, rngs=nnx.Rngs(0))
    bias_hfp2 = np.asarray(long.sampling_offsets.bias[...]).reshape(2, 2, 4, 2)
    np.testing.assert_allclose(bias_hfp2[1, 1, 2], [-3.0, 0.0], atol=1e-6)  # head 1 points -x


def test_zero_offsets_read_the_own_cell():
    # With zero offsets every point samples its own cell centre exactly: output = value there.
    e, bev_yx = 4, (2, 3)
    attn = TemporalCrossAttention(e, 1, 2, 1, rngs=nnx.Rngs(1))
    attn.sampling_offsets.bias[...] = jnp.zeros_like(attn.sampling_offsets.bias[...])
    attn.value_proj.kernel[...] = jnp.eye(e)
    attn.output_proj.kernel[...] = jnp.eye(e)
    value = jax.random.normal(jax.random.key(0), (1, 1, 6, e))
    query = jnp.zeros((1, 6, e))
    out = jax.jit(lambda m, *a: m(*a, bev_yx))(attn, query, value, jnp.zeros((1, 6, e)))
    np.testing.assert_allclose(np.asarray(out), np.asarray(value[:, 0]), atol=1e-6)

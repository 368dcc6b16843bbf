"""FPN (mmdet semantics, checked numerically against torch ops), heads, and the abstract
ConvNeXt-S + FPN build at the reference 800x480 input."""

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from flax import nnx

from mim4d_jax.models import heads
from mim4d_jax.models.convnext import MaskedConvNeXt, variant_dims
from mim4d_jax.models.fpn import FPN, resize_nearest


def _torch_conv(conv: nnx.Conv, x_nchw: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    weight = torch.from_numpy(np.asarray(conv.kernel[...]).transpose(3, 2, 0, 1).copy())
    bias = torch.from_numpy(np.asarray(conv.bias[...]).copy())
    return F.conv2d(x_nchw, weight, bias, stride=stride, padding=pad)


def _torch_fpn(fpn: FPN, inputs_nchw: list[torch.Tensor]) -> list[torch.Tensor]:
    """mmdet FPN.forward (on_output, relu_before_extra_convs) written with torch ops."""
    laterals = [
        _torch_conv(m.conv, inputs_nchw[fpn.start_level + i], 1, 0)
        for i, m in enumerate(fpn.lateral_convs)
    ]
    for i in range(len(laterals) - 1, 0, -1):
        up = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
        laterals[i - 1] = laterals[i - 1] + up
    outs = [_torch_conv(fpn.fpn_convs[i].conv, lat, 1, 1) for i, lat in enumerate(laterals)]
    used = len(laterals)
    outs.append(_torch_conv(fpn.fpn_convs[used].conv, outs[-1], 2, 1))
    for i in range(used + 1, fpn.num_outs):
        outs.append(_torch_conv(fpn.fpn_convs[i].conv, F.relu(outs[-1]), 2, 1))
    return outs


def test_resize_nearest_matches_torch_for_odd_sizes() -> None:
    x_nhwc = jax.random.normal(jax.random.key(0), (1, 7, 13, 2))
    x_nchw = torch.from_numpy(np.asarray(x_nhwc).transpose(0, 3, 1, 2).copy())
    for out_h, out_w in [(15, 25), (14, 26), (9, 17), (7, 13), (30, 50)]:
        ours = np.asarray(resize_nearest(x_nhwc, out_h, out_w)).transpose(0, 3, 1, 2)
        ref = F.interpolate(x_nchw, size=(out_h, out_w), mode="nearest").numpy()
        np.testing.assert_array_equal(ours, ref)


def test_fpn_matches_torch_semantics_with_odd_sizes() -> None:
    """Stride-32 map of 3x5 (odd) and num_outs=5 so both extra-conv variants are exercised."""
    in_channels = (4, 6, 8, 10)
    fpn = FPN(in_channels, 5, start_level=1, num_outs=5, rngs=nnx.Rngs(0))
    sizes = [(24, 40), (12, 20), (6, 10), (3, 5)]
    keys = jax.random.split(jax.random.key(1), 4)
    feats = [jax.random.normal(k, (2, h, w, c)) for k, (h, w), c in zip(keys, sizes, in_channels)]
    outs = fpn(feats)
    assert [o.shape for o in outs] == [
        (2, 12, 20, 5),
        (2, 6, 10, 5),
        (2, 3, 5, 5),
        (2, 2, 3, 5),
        (2, 1, 2, 5),
    ]
    ref = _torch_fpn(
        fpn, [torch.from_numpy(np.asarray(f).transpose(0, 3, 1, 2).copy()) for f in feats]
    )
    for level, (ours, theirs) in enumerate(zip(outs, ref)):
        np.testing.assert_allclose(
            np.asarray(ours).transpose(0, 3, 1, 2), theirs.numpy(), atol=1e-4, err_msg=f"{level}"
        )
    names = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(fpn, nnx.Param))}
    assert "lateral_convs.2.conv.kernel" in names and "fpn_convs.4.conv.bias" in names
    assert len(fpn.lateral_convs) == 3 and len(fpn.fpn_convs) == 5


def test_heads_project_then_softmax_depth() -> None:
    rngs = nnx.Rngs(0)
    proj = heads.make_input_proj(6, compute_dtype="float32", rngs=rngs)
    depth_net = heads.make_depth_net(6, 9, compute_dtype="float32", rngs=rngs)
    assert proj.kernel.shape == (1, 1, 6, 6) and depth_net.kernel.shape == (1, 1, 6, 9)
    fpn_l = [jax.random.normal(jax.random.key(i), (2, 4 // (i + 1), 6, 6)) for i in range(2)]
    feats_l, depth_l = heads.project_and_depth(proj, depth_net, fpn_l)
    for p_nhwc, f_nhwc, d_nhwd in zip(fpn_l, feats_l, depth_l):
        np.testing.assert_allclose(f_nhwc, proj(p_nhwc), rtol=1e-6)
        assert d_nhwd.shape == p_nhwc.shape[:3] + (9,) and d_nhwd.dtype == jnp.float32
        np.testing.assert_allclose(d_nhwd.sum(-1), 1.0, rtol=1e-5)
        # depth is predicted from the projected features, as in the reference
        np.testing.assert_allclose(d_nhwd, jax.nn.softmax(depth_net(f_nhwc), -1), rtol=1e-5)


def test_convnext_s_fpn_abstract_800x480() -> None:
    """ConvNeXt-S + FPN(128, start 1, 4 outs) + heads, shapes only (no real compute)."""

    def build() -> tuple[MaskedConvNeXt, FPN, nnx.Conv, nnx.Conv]:
        rngs = nnx.Rngs(0)
        backbone = MaskedConvNeXt("S", compute_dtype="bfloat16", rngs=rngs)
        neck = FPN(variant_dims("S"), 128, compute_dtype="bfloat16", rngs=rngs)
        proj = heads.make_input_proj(128, compute_dtype="bfloat16", rngs=rngs)
        depth_net = heads.make_depth_net(128, 64, compute_dtype="bfloat16", rngs=rngs)
        return backbone, neck, proj, depth_net

    backbone, neck, proj, depth_net = nnx.eval_shape(build)
    n_neck = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(neck, nnx.Param)))
    # laterals 1x1 (192+384+768)*128 + 3*128; 4 fpn convs 9*128*128 + 128 each
    assert n_neck == (192 + 384 + 768) * 128 + 3 * 128 + 4 * (9 * 128 * 128 + 128)

    # Abstract params are ShapeDtypeStructs: pass them through eval_shape as the state pytree.
    graphdef, state = nnx.split((backbone, neck, proj, depth_net))

    def forward(state: nnx.State, images_nhwc: jax.Array, keep_nhw: jax.Array) -> tuple:
        bb, fpn, pr, dn = nnx.merge(graphdef, state)
        return heads.project_and_depth(pr, dn, fpn(bb(images_nhwc, keep_nhw)))

    images = jax.ShapeDtypeStruct((6, 480, 800, 3), jnp.float32)
    keep = jax.ShapeDtypeStruct((6, 15, 25), jnp.float32)
    feats_l, depth_l = jax.eval_shape(forward, state, images, keep)
    expected_hw = [(60, 100), (30, 50), (15, 25), (8, 13)]
    assert [f.shape for f in feats_l] == [(6, h, w, 128) for h, w in expected_hw]
    assert [d.shape for d in depth_l] == [(6, h, w, 64) for h, w in expected_hw]
    assert feats_l[0].dtype == jnp.bfloat16 and depth_l[0].dtype == jnp.float32

r"""Analytic FLOP count of one MIM4D training sample, per component, beside XLA's own count.

  python -m benchmarks.flops [--config configs/mim4d_vs01.py] [--no-xla]

Counting convention (the one XLA's HloCostAnalysis uses, so the two can be compared): a
multiply-accumulate is 2 FLOPs, every other floating add, multiply, compare or select is 1,
transcendentals (exp, erf, rsqrt, log1p) are not FLOPs. Matmuls and convolutions are counted
exactly; the elementwise work around them (norms, activations, masks, gathers' weights) is
counted from the code's own operations, rounded to a few FLOPs per element.

Per sample: the N*T images go through the backbone, neck and heads once, the T frames are
lifted and projected by render_conv once, and each of the 2 target frames runs the history
decoder once and the renderer twice (direct and predicted volume), N*R rays each.

Training FLOPs = forward + backward. A differentiated op's backward costs 2x its forward (the
input and the weight gradient); frozen backbone stages (stem and stage 0 in vs0.1) need no
backward at all, since nothing upstream of them is trainable, and the first trainable layer
after them needs only its weight gradient (1x). The renderer's NeuS up-sampling pass is
forward only (it only picks sample positions); its SDF-gradient pass (d sdf / d xyz, a
backward through the SDF MLP without weight gradients) counts as forward work and is
differentiated in turn. `model` FLOPs exclude recomputation; `hardware` FLOPs add the forward
passes that rematerialisation runs again in the backward pass (the renderer's chunks and the
lift's per-camera gathers), i.e. what the device really executes.

XLA's count (`jax.jit(...).lower(...).cost_analysis()`, before fusion) is taken per component
on abstract inputs, so vs0.1 needs no memory. XLA counts a loop body once: the lift's scan
over cameras and the renderer's `lax.map` over ray chunks are under-counted by their trip
counts; the `xla_comparable` column divides the analytic count the same way.
The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Callable

import ml_collections

from mim4d_jax.models.convnext import VARIANTS

# Elementwise FLOPs per element as XLA counts JAX's lowering of each op (probed once with
# `jax.jit(op).lower(x).cost_analysis()`; transcendentals are not FLOPs, but the polynomial
# JAX expands the exact GELU into is).
GELU = 66  # jax.nn.gelu(approximate=False)
LN = 5  # LayerNorm in float32 (mean, centre, square, variance, scale and shift)
LN_BF16 = 9  # the same with bf16 inputs and outputs (the converts count)
SOFTMAX = 4
SIGMOID = 3
SOFTPLUS = 8  # softplus(100 x) / 100
# Trilinear lookup per point: index maths, corner weights, inside tests (309) and, per
# channel, the gather and the 8-corner weighted sum (24).
TRILINEAR_POINT, TRILINEAR_CHANNEL = 309, 24


def scan_flops(n: int) -> float:
    """cumsum / cumprod over n elements: XLA counts its reduce-window as n (n - 1)."""
    return float(n * (n - 1))


def sort_flops(n: int) -> float:
    return 17.0 * n


@dataclasses.dataclass
class Term:
    """Forward FLOPs of one piece of a component (matmul/conv and elementwise), and how its
    backward and rematerialisation scale."""

    matmul: float = 0.0
    elementwise: float = 0.0
    backward_mult: float = 2.0  # backward FLOPs = backward_mult * forward
    remat: bool = False  # the forward runs again in the backward pass
    loop_trips: int = 1  # XLA counts a loop body once: its share is forward / loop_trips

    def scaled(self, factor: float) -> Term:
        return dataclasses.replace(
            self, matmul=self.matmul * factor, elementwise=self.elementwise * factor
        )


@dataclasses.dataclass
class Component:
    name: str
    terms: list[Term] = dataclasses.field(default_factory=list)

    def add(self, flops: tuple[float, float] | float = 0.0, **kw) -> None:
        """`flops` is (matmul, elementwise), or a bare number of elementwise FLOPs."""
        mm, ew = flops if isinstance(flops, tuple) else (0.0, flops)
        self.terms.append(Term(float(mm), float(ew), **kw))

    def _sum(self, fn: Callable[[Term], float]) -> float:
        return float(sum(fn(t) for t in self.terms))

    def summary(self) -> dict[str, float]:
        fwd_mm = self._sum(lambda t: t.matmul)
        fwd = self._sum(lambda t: t.matmul + t.elementwise)
        bwd_mm = self._sum(lambda t: t.matmul * t.backward_mult)
        bwd = self._sum(lambda t: (t.matmul + t.elementwise) * t.backward_mult)
        remat_mm = self._sum(lambda t: t.matmul if t.remat else 0.0)
        remat = self._sum(lambda t: t.matmul + t.elementwise if t.remat else 0.0)
        return {
            "forward": fwd,
            "forward_matmul": fwd_mm,
            "train_model": fwd + bwd,
            "train_model_matmul": fwd_mm + bwd_mm,
            "train_hardware": fwd + bwd + remat,
            "train_hardware_matmul": fwd_mm + bwd_mm + remat_mm,
            "forward_xla_comparable": self._sum(
                lambda t: (t.matmul + t.elementwise) / t.loop_trips
            ),
            # What XLA counts for the lowered train step: loop bodies once, remat included.
            "train_hardware_xla_comparable": self._sum(
                lambda t: (
                    (t.matmul + t.elementwise) * (1 + t.backward_mult + t.remat) / t.loop_trips
                )
            ),
        }


# ---------------------------------------------------------------------------------------------
# Building blocks.


def valid_taps(size: int, kernel: int, stride: int, pad: int) -> tuple[int, int]:
    """(output size, kernel taps that land inside the input, summed over outputs) along one
    axis. XLA counts only in-bounds taps of a padded convolution."""
    out = (size + 2 * pad - kernel) // stride + 1
    taps = sum(
        sum(1 for k in range(kernel) if 0 <= o * stride - pad + k < size) for o in range(out)
    )
    return out, taps


def conv_flops(
    batch: int,
    in_sizes: tuple[int, ...],
    cin: int,
    cout: int,
    kernel: int = 1,
    stride: int = 1,
    pad: int = 0,
    groups: int = 1,
    bias: bool = True,
) -> tuple[tuple[float, float], tuple[int, ...]]:
    """((matmul, bias) FLOPs, output sizes) of a square-kernel conv over `in_sizes`."""
    outs, taps = zip(*(valid_taps(n, kernel, stride, pad) for n in in_sizes))
    positions = batch * math.prod(outs)
    mm = 2.0 * batch * math.prod(taps) * (cin // groups) * cout
    return (mm, positions * cout if bias else 0.0), tuple(outs)


def dense_flops(rows: float, cin: int, cout: int, bias: bool = True) -> tuple[float, float]:
    return 2.0 * rows * cin * cout, (rows * cout if bias else 0.0)


def mlp_flops(cond: int, hidden: int, out: int, layers: int, act: int) -> tuple[float, float]:
    """The renderer's conditioned MLP per point: fc_p(xyz), then per layer fc_c(cond) added
    into x, lin_l, activation between layers (matmul, elementwise)."""
    mm = 2.0 * 3 * hidden + layers * 2.0 * cond * hidden
    ew = hidden + layers * 2.0 * hidden  # fc_p bias; fc_c bias and the add into x
    for i in range(layers):
        width = out if i == layers - 1 else hidden
        mm += 2.0 * hidden * width
        ew += width + (0 if i == layers - 1 else hidden * act)
    return mm, ew


# ---------------------------------------------------------------------------------------------
# Components, per sample.


def image_encoder(config: ml_collections.ConfigDict, images: int) -> dict[str, Component]:
    """Backbone, FPN and the two 1x1 heads for `images` images at the padded input size."""
    m = config.model
    depths, dims = VARIANTS[m.backbone]
    wp, hp = (int(v) for v in config.data.pad_size)
    frozen = int(m.frozen_stages)
    bf16 = str(m.compute_dtype) == "bfloat16"
    ln = LN_BF16 if bf16 else LN
    drop_path = float(m.drop_path_rate) > 0.0

    def grad_mult(stage: int, first_trainable: bool = False) -> float:
        # Frozen stages: nothing upstream needs a gradient. The first trainable layer after
        # them needs its weight gradient only.
        if stage < frozen:
            return 0.0
        return 1.0 if first_trainable else 2.0

    backbone = Component("backbone")
    backbone.add(images * hp * wp * 3, backward_mult=0.0)  # input * keep mask
    sizes = (hp, wp)
    for s in range(4):
        c = dims[s]
        mult = grad_mult(s)
        if s == 0:
            (mm, ew), sizes = conv_flops(images, sizes, 3, c, 4, stride=4)
            pos = images * math.prod(sizes)
            backbone.add((mm, ew + pos * c * (ln + 2)), backward_mult=mult)  # conv, mask, LN, mask
        else:
            first = s == frozen
            prev = images * math.prod(sizes)
            (mm, ew), sizes = conv_flops(images, sizes, dims[s - 1], c, 2, stride=2)
            pos = images * math.prod(sizes)
            backbone.add(
                (mm, ew + prev * dims[s - 1] * (ln + 1) + pos * c),  # LN, mask, conv, mask
                backward_mult=grad_mult(s, first),
            )
        (dw_mm, dw_b), _ = conv_flops(images, sizes, c, c, 7, pad=3, groups=c)
        block = (
            dw_mm + 2.0 * pos * c * 4 * c * 2,  # dwconv, pwconv1, pwconv2
            dw_b
            + pos * c * (1 + ln + 1)  # dwconv mask, LN, LN mask
            + pos * 4 * c * (1 + GELU)  # pwconv1 bias, GELU
            + pos * c * (1 + 1 + 1 + 1)  # pwconv2 bias, gamma, mask, residual
            + (pos * c if drop_path and s >= frozen else 0.0),
        )
        backbone.add((depths[s] * block[0], depths[s] * block[1]), backward_mult=mult)
        if s >= int(m.fpn_start_level):  # norm0 feeds nothing at start_level 1: XLA drops it
            backbone.add(pos * c * (ln + 1))

    neck = Component("neck")
    fpn_c = int(m.fpn_channels)
    level_sizes = [(-(-hp // (4 * 2**s)), -(-wp // (4 * 2**s))) for s in range(4)]
    used = list(range(int(m.fpn_start_level), 4))
    for s in used:
        neck.add(conv_flops(images, level_sizes[s], dims[s], fpn_c)[0])
    for s in used[:-1]:
        neck.add(images * math.prod(level_sizes[s]) * fpn_c)  # top-down add
    out_sizes = []
    for s in used:
        flops, size = conv_flops(images, level_sizes[s], fpn_c, fpn_c, 3, pad=1)
        neck.add(flops)
        out_sizes.append(size)
    for i in range(int(m.fpn_num_outs) - len(used)):
        if i > 0:  # ReLU before the second and later extra convs
            neck.add(images * math.prod(out_sizes[-1]) * fpn_c)
        flops, size = conv_flops(images, out_sizes[-1], fpn_c, fpn_c, 3, stride=2, pad=1)
        neck.add(flops)
        out_sizes.append(size)

    heads = Component("heads")
    bins = int(m.depth_bins)
    for size in out_sizes:
        pos = images * math.prod(size)
        heads.add(conv_flops(images, size, fpn_c, fpn_c)[0])
        heads.add(conv_flops(images, size, fpn_c, bins)[0])
        heads.add(pos * bins * SOFTMAX)
    return {"backbone": backbone, "neck": neck, "heads": heads}


def grid_zyx(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    m = config.model
    x, y, z = (round((m.pc_range[i + 3] - m.pc_range[i]) / m.voxel_size[i]) for i in range(3))
    return z, y, x


def lift_and_render_conv(config: ml_collections.ConfigDict, frames: int) -> dict[str, Component]:
    m = config.model
    cams = len(config.data.cameras)
    nz, ny, nx = grid_zyx(config)
    voxels = nx * ny * nz
    fpn_c = int(m.fpn_channels)
    levels = int(m.fpn_num_outs)
    lift = Component("lift")
    # Per camera (the scan body, rematerialised in the backward pass): the 4x4 projection
    # (a dot) and its normalisation and validity tests (19); per level the corner indices and
    # weights of the bilinear and depth lookups, the depth trilinear sum (184), the 4-corner
    # feature gather and sum (a dot) and the accumulation into the volume (5 per channel).
    per_camera_mm = voxels * (2.0 * 4 * 4 + levels * 2.0 * 4 * fpn_c)
    per_camera_ew = voxels * (19 + levels * (184 + fpn_c * 5))
    lift.add(
        (frames * cams * per_camera_mm, frames * cams * per_camera_ew),
        remat=True,
        loop_trips=cams,
    )
    render_conv = Component("render_conv")
    rc = int(m.render_channels)
    conv, _ = conv_flops(frames, (nz, ny, nx), fpn_c, rc, 3, pad=1)
    render_conv.add(conv)
    render_conv.add(frames * voxels * rc * (LN + 1))  # BatchNorm (batch statistics) + ReLU
    return {"lift": lift, "render_conv": render_conv}


def history_decoder(config: ml_collections.ConfigDict) -> Component:
    """One prediction (one target frame) of one sample."""
    m, h = config.model, config.model.history
    nz, ny, nx = grid_zyx(config)
    q = ny * nx
    others = int(config.data.frames) - 1
    rc = int(m.render_channels)
    e = int(h.embed_dims)
    el = e // int(h.reduction)
    ffn = int(h.ffn_dims)
    comp = Component("history_decoder")
    # Warp: per voxel a 3x3 matvec + translation and the trilinear lookup.
    comp.add(others * nz * q * (24 + TRILINEAR_POINT + TRILINEAR_CHANNEL * rc))
    mm, _ = dense_flops(others * q, rc * nz, e, bias=False)
    comp.add((mm, others * q * e * (LN + 1)))  # proj 1x1, LN, + frame embedding
    mm, ew = dense_flops(others * q, e, el)
    comp.add((mm, ew + others * q * el * LN))  # input_proj + LN

    def decoder(layers: int, width: int, heads: int, frames: int) -> tuple[float, float]:
        pts = int(h.num_points)
        samples = frames * heads * pts
        mm = (
            frames * 2.0 * width * width  # value_proj
            + 2.0 * width * samples * 3  # sampling_offsets (x, y) and attention_weights
            + 2.0 * width * width  # output_proj
            + 2.0 * 2.0 * width * ffn  # FFN
        )
        ew = (
            width  # + positional encoding
            + frames * width
            + samples * 3  # biases
            + samples * SOFTMAX
            + samples * 2 * 2  # locations: offset / normaliser + reference
            + samples * 4 * 14  # bilinear corner indices, weights and inside tests
            + samples * 4  # attention weight folded into the 4 bilinear weights
            + samples * 4 * (width // heads) * 3  # gather, weights x corners, sum over corners
            + width * frames  # mean over frames
            + width * 2  # output_proj bias, residual
            + width * LN
            + ffn * 2
            + width * 2  # FFN biases, ReLU, residual
            + width * LN
        )
        return layers * q * mm, layers * q * ew

    comp.add(decoder(int(h.num_layers), el, int(h.long_heads), others))
    comp.add(decoder(int(h.num_layers), e, int(h.short_heads), 1))
    (mm, _), _ = conv_flops(1, (ny, nx), e + el, rc * nz, 3, pad=1, bias=False)
    comp.add((mm, q * rc * nz * LN))  # output_proj 3x3 + LN
    return comp


def renderer(config: ml_collections.ConfigDict, rays: int) -> Component:
    """One render_rays call: `rays` rays through one volume, forward, SDF gradient and RGB."""
    r, m = config.render, config.model
    c = int(m.render_channels)
    hid, geo = int(r.hidden_dims), int(r.geo_dims)
    n_sdf, n_rgb = int(r.sdf_blocks) + 1, int(r.rgb_blocks) + 1
    strat, imp = int(r.num_samples), int(r.num_importance)
    total = strat + imp
    chunks = -(-rays // min(int(r.chunk_rays), rays))

    lookup = TRILINEAR_POINT + TRILINEAR_CHANNEL * c + 3  # + metric / scale
    sdf_mm, sdf_ew = mlp_flops(c, hid, 1 + geo, n_sdf, SOFTPLUS)
    rgb_mm, rgb_ew = mlp_flops(3 + c + 3 + geo, hid, 3, n_rgb, 1)
    # d sdf / d xyz: back through the SDF MLP without weight gradients (one matmul per linear
    # layer and into the feature through every fc_c, the softplus derivative), then through
    # fc_p and the trilinear weights into xyz.
    grad_mm = 2.0 * hid * 1 + (n_sdf - 1) * 2.0 * hid * hid + n_sdf * 2.0 * hid * c + 2.0 * hid * 3
    grad_ew = (n_sdf - 1) * hid * 6 + n_sdf * hid + 190 + 8 * c * 2

    comp = Component("renderer")
    # Up-sampling: only picks positions (no backward): near/far, stratified edges, points,
    # the SDF at the stratified starts, fixed-inv_s alphas, weights (a cumprod), the PDF
    # (a cumsum), inverse-CDF search, and the sort that merges the new samples.
    upsample_ew = (
        60
        + (strat + 1) * 6
        + strat * (6 + lookup + sdf_ew + 25)
        + scan_flops(strat - 1)
        + 2 * strat
        + scan_flops(strat)
        + 4 * strat
        + 3.2 * (imp + 1) * (strat + 1)
        + (imp + 1) * 20
        + sort_flops(total)
        + total * 2
    )
    comp.add(
        (rays * strat * sdf_mm, rays * upsample_ew),
        backward_mult=0.0,
        remat=True,
        loop_trips=chunks,
    )
    # The rendered samples: lookup, SDF, its gradient, RGB, NeuS alphas and compositing.
    main_ew = (
        total * (6 + lookup + sdf_ew + grad_ew + rgb_ew + 3 * SIGMOID + 25)
        + scan_flops(total)
        + total * 12
    )
    comp.add(
        (rays * total * (sdf_mm + grad_mm + rgb_mm), rays * main_ew),
        remat=True,
        loop_trips=chunks,
    )
    return comp


TARGETS, RENDERS = 2, 4  # per sample: 2 target frames, each rendered from 2 volumes


def per_sample(config: ml_collections.ConfigDict) -> dict[str, Component]:
    """Every component's FLOPs for one training sample (2 targets, 4 renders)."""
    cams, frames = len(config.data.cameras), int(config.data.frames)
    comps = image_encoder(config, cams * frames)
    comps.update(lift_and_render_conv(config, frames))
    hist = history_decoder(config)
    hist.terms = [t.scaled(TARGETS) for t in hist.terms]
    rend = renderer(config, cams * int(config.data.num_rays))
    rend.terms = [t.scaled(RENDERS) for t in rend.terms]
    comps["history_decoder"] = hist
    comps["renderer"] = rend
    return comps


def report(config: ml_collections.ConfigDict) -> dict[str, dict[str, float]]:
    """{component: summary} per sample, plus "total"."""
    table = {name: c.summary() for name, c in per_sample(config).items()}
    table["total"] = {
        key: sum(row[key] for row in table.values()) for key in next(iter(table.values()))
    }
    return table


def train_flops_per_sample(config: ml_collections.ConfigDict) -> dict[str, float]:
    """The totals: forward, train_model (+ _matmul, MFU's numerator), train_hardware."""
    return report(config)["total"]


# ---------------------------------------------------------------------------------------------
# XLA's count of the same components, on abstract inputs.


def xla_forward_flops(config: ml_collections.ConfigDict) -> dict[str, float]:
    """Per-sample forward FLOPs per component from XLA's cost analysis of each piece lowered
    alone (loops counted once, as in the step). No memory is allocated."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from mim4d_jax.models.heads import project_and_depth
    from mim4d_jax.models.mim4d import build_model
    from mim4d_jax.models.view_transform import lift_to_volume
    from mim4d_jax.rendering.renderer import Renderer

    model = nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    cams, frames = len(config.data.cameras), int(config.data.frames)
    wp, hp = config.data.pad_size
    dtype = jnp.dtype(config.model.compute_dtype)
    images = cams * frames
    sds = jax.ShapeDtypeStruct
    patch = int(config.data.mask_patch)

    def cost(fn: Callable, *args) -> float:
        analysis = jax.jit(fn).lower(*args).cost_analysis()
        if isinstance(analysis, (list, tuple)):
            analysis = analysis[0]
        return float(analysis.get("flops", -1.0))

    x = sds((images, hp, wp, 3), jnp.float32)
    keep = sds((images, hp // patch, wp // patch), jnp.float32)
    out: dict[str, float] = {}

    def backbone_fn(st, x, keep):
        return nnx.merge(graphdef, st).img_backbone(x, keep)

    out["backbone"] = cost(backbone_fn, state, x, keep)
    feats = jax.eval_shape(backbone_fn, state, x, keep)
    out["neck"] = cost(lambda st, f: nnx.merge(graphdef, st).img_neck(f), state, feats)
    fpn = jax.eval_shape(lambda st, f: nnx.merge(graphdef, st).img_neck(f), state, feats)

    def heads_fn(st, levels):
        mm = nnx.merge(graphdef, st)
        return project_and_depth(mm.input_proj, mm.depth_net, levels)

    out["heads"] = cost(heads_fn, state, fpn)
    feats_l, depth_l = jax.eval_shape(heads_fn, state, fpn)

    def lift_fn(f_l, d_l, proj):
        per_frame = [lambda a: a.reshape(frames, cams, *a.shape[1:])]
        f_l = [per_frame[0](a) for a in f_l]
        d_l = [per_frame[0](a) for a in d_l]
        return jax.vmap(
            lambda f, d, p: lift_to_volume(
                f, d, p, (hp, wp), model.grid, float(config.model.depth_max)
            )
        )(f_l, d_l, proj)

    out["lift"] = cost(lift_fn, feats_l, depth_l, sds((frames, cams, 4, 4), jnp.float32))
    nz, ny, nx = model.grid.shape_zyx
    fpn_c, rc = int(config.model.fpn_channels), int(config.model.render_channels)

    def render_conv_fn(st, vol):
        mm = nnx.merge(graphdef, st)
        conv3d, bn = mm.render_conv
        y = conv3d(vol.astype(conv3d.dtype or jnp.float32))
        return jax.nn.relu(bn(y.astype(jnp.float32), use_running_average=False))

    out["render_conv"] = cost(render_conv_fn, state, sds((frames, nz, ny, nx, fpn_c), jnp.float32))

    def predict_fn(st, vols, vol2ref, key):
        return nnx.merge(graphdef, st).predict(vols, vol2ref, key)

    out["history_decoder"] = 2 * cost(
        predict_fn,
        state,
        sds((1, frames, nz, ny, nx, rc), jnp.float32),
        sds((1, frames, 4, 4), jnp.float32),
        sds((1,), jnp.int32),
    )
    rays = cams * int(config.data.num_rays)

    renderer = Renderer.from_config(config)

    def render_fn(st, vol, o, d, key):
        return renderer.render_rays(nnx.merge(graphdef, st).render_model, vol, o, d, key)

    ray3 = sds((rays, 3), jnp.float32)
    out["renderer"] = 4 * cost(
        render_fn, state, sds((nz, ny, nx, rc), jnp.float32), ray3, ray3, jax.random.key(0)
    )
    del dtype
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/mim4d_vs01.py")
    parser.add_argument("--no-xla", action="store_true", help="skip XLA's per-component count")
    args = parser.parse_args()
    from mim4d_jax.training.config_files import load_config

    config = load_config(args.config)
    table = report(config)
    xla = {} if args.no_xla else xla_forward_flops(config)
    if xla:
        xla["total"] = sum(xla.values())
    print(
        f"{'per sample':16s} {'fwd matmul':>10s} {'forward':>10s} {'train mm':>10s} "
        f"{'train':>10s} {'train+remat':>11s} {'fwd, loops 1x':>13s} {'XLA fwd':>10s} "
        f"{'ratio':>6s}"
    )
    for name, row in table.items():
        x = xla.get(name)
        ratio = f"{row['forward_xla_comparable'] / x:6.2f}" if x and x > 0 else "     -"
        print(
            f"{name:16s} {row['forward_matmul']:10.3e} {row['forward']:10.3e} "
            f"{row['train_model_matmul']:10.3e} {row['train_model']:10.3e} "
            f"{row['train_hardware']:11.3e} {row['forward_xla_comparable']:13.3e} "
            f"{(x or float('nan')):10.3e} {ratio}"
        )
    print(json.dumps({"config": args.config, "per_sample": table, "xla_forward": xla}))


if __name__ == "__main__":
    main()

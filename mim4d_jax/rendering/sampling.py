"""Ray samples for the NeuS renderer: box near/far, stratified bins, NeuS up-sampling.

All distances here are in the renderer's scaled units (metres * scale, see renderer.py).
Sample positions follow the reference (`Frustums.get_start_positions`): a ray's samples are
the STARTS of its bins, and a sample's delta is the distance to the next start (the last one
to the end of the last stratified bin, which is `far` without jitter). Using starts lets
up-sampled points merge by a plain sort. Without an rng the stratified
bins are the uniform edges `linspace(near, far, S + 1)` and the up-sampling uses the PDF bin
midpoints, so rendering is deterministic; for training, each ray gets one jitter in [0, 1)
for the stratified bins and one for the PDF samples (`single_jitter=True` in the reference).
The jitters are arrays drawn by the caller for all rays at once, so a ray's samples do not
depend on how the rays are chunked. Every shape is static.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

# Keeps 1/dir finite for axis-parallel rays while preserving the direction's sign.
_MIN_DIR = 1e-9


def ray_box_near_far(
    origins_r3: jnp.ndarray,
    dirs_r3: jnp.ndarray,
    box_6: jnp.ndarray,
    near_min: float,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Slab intersection with the box (x0, y0, z0, x1, y1, z1); near clamped to >= near_min.

    Rays that miss the box get far = near + 1e-6 (the reference asserts instead), so their
    samples fall in a tiny interval and render with weights near zero rather than NaN.
    """
    safe_dirs_r3 = jnp.where(
        jnp.abs(dirs_r3) < _MIN_DIR, jnp.where(dirs_r3 < 0, -_MIN_DIR, _MIN_DIR), dirs_r3
    )
    inv_dirs_r3 = 1.0 / safe_dirs_r3
    t_low_r3 = (box_6[:3] - origins_r3) * inv_dirs_r3
    t_high_r3 = (box_6[3:] - origins_r3) * inv_dirs_r3
    near_r = jnp.max(jnp.minimum(t_low_r3, t_high_r3), axis=-1)
    far_r = jnp.min(jnp.maximum(t_low_r3, t_high_r3), axis=-1)
    near_r = jnp.maximum(near_r, near_min)
    far_r = jnp.maximum(far_r, near_r + 1e-6)
    return near_r, far_r


def stratified_edges(
    near_r: jnp.ndarray, far_r: jnp.ndarray, num_samples: int, jitter_r: jnp.ndarray | None
) -> jnp.ndarray:
    """(R, S + 1) bin edges from near to far: uniform, or with one jitter in [0, 1) per ray.

    As in the reference's `SpacedSampler`, a jittered edge moves within the half bins around
    its uniform position, so the first edge stays in [near, near + half bin] and the last in
    [far - half bin, far].
    """
    u_e = jnp.linspace(0.0, 1.0, num_samples + 1)
    u_re = jnp.broadcast_to(u_e, (near_r.shape[0], num_samples + 1))
    if jitter_r is not None:
        mid_e = 0.5 * (u_e[1:] + u_e[:-1])
        upper_e = jnp.concatenate([mid_e, u_e[-1:]])
        lower_e = jnp.concatenate([u_e[:1], mid_e])
        u_re = lower_e + (upper_e - lower_e) * jitter_r[:, None]
    return near_r[:, None] + (far_r - near_r)[:, None] * u_re


def fixed_inv_s_alpha(sdf_rs: jnp.ndarray, deltas_rs: jnp.ndarray, inv_s: float) -> jnp.ndarray:
    """(R, S - 1) NeuS alphas of the sections between consecutive samples, fixed inv_s.

    The reference's `rendering_sdf_with_fixed_inv_s`: the section's slope is the smaller of its
    own and the previous section's finite difference, clipped to [-1e3, 0], which makes
    up-sampling robust when a ray grazes a surface.
    """
    prev_sdf_rs = sdf_rs[:, :-1]
    next_sdf_rs = sdf_rs[:, 1:]
    section_rs = deltas_rs[:, :-1]
    mid_sdf_rs = 0.5 * (prev_sdf_rs + next_sdf_rs)
    cos_rs = (next_sdf_rs - prev_sdf_rs) / (section_rs + 1e-5)
    prev_cos_rs = jnp.concatenate([jnp.zeros_like(cos_rs[:, :1]), cos_rs[:, :-1]], axis=-1)
    cos_rs = jnp.clip(jnp.minimum(prev_cos_rs, cos_rs), -1e3, 0.0)
    prev_est_rs = mid_sdf_rs - cos_rs * section_rs * 0.5
    next_est_rs = mid_sdf_rs + cos_rs * section_rs * 0.5
    prev_cdf_rs = jax.nn.sigmoid(prev_est_rs * inv_s)
    next_cdf_rs = jax.nn.sigmoid(next_est_rs * inv_s)
    return (prev_cdf_rs - next_cdf_rs + 1e-5) / (prev_cdf_rs + 1e-5)


def weights_from_alphas(alpha_rs: jnp.ndarray) -> jnp.ndarray:
    """w_i = alpha_i * prod_{j<i} (1 - alpha_j + 1e-7) (exclusive transmittance)."""
    transmit_rs = jnp.cumprod(1.0 - alpha_rs + 1e-7, axis=-1)
    transmit_rs = jnp.concatenate([jnp.ones_like(transmit_rs[:, :1]), transmit_rs[:, :-1]], axis=-1)
    return alpha_rs * transmit_rs


def pdf_edges(
    edges_re: jnp.ndarray,
    weights_rs: jnp.ndarray,
    num_new: int,
    jitter_r: jnp.ndarray | None,
    eps: float = 1e-5,
) -> jnp.ndarray:
    """(R, num_new + 1) edges drawn by inverse-CDF from per-bin weights (R, E - 1).

    The reference's `PDFSampler`: rays with (almost) zero total weight are padded towards a
    uniform PDF; u is a regular grid over [0, 1) plus one jitter per ray (or half a step).
    """
    num_u = num_new + 1
    weight_sum_r1 = jnp.sum(weights_rs, axis=-1, keepdims=True)
    padding_r1 = jax.nn.relu(eps - weight_sum_r1)
    weights_rs = weights_rs + padding_r1 / weights_rs.shape[-1]
    pdf_rs = weights_rs / (weight_sum_r1 + padding_r1)
    cdf_rs = jnp.minimum(1.0, jnp.cumsum(pdf_rs, axis=-1))
    cdf_re = jnp.concatenate([jnp.zeros_like(cdf_rs[:, :1]), cdf_rs], axis=-1)

    u_u = jnp.linspace(0.0, 1.0 - 1.0 / num_u, num_u)
    if jitter_r is None:
        u_ru = jnp.broadcast_to(u_u + 0.5 / num_u, (edges_re.shape[0], num_u))
    else:
        u_ru = u_u + jitter_r[:, None] / num_u

    last = edges_re.shape[-1] - 1
    inds_ru = jax.vmap(lambda c, u: jnp.searchsorted(c, u, side="right", method="compare_all"))(
        cdf_re, u_ru
    )
    below_ru = jnp.clip(inds_ru - 1, 0, last)
    above_ru = jnp.clip(inds_ru, 0, last)
    cdf_lo_ru = jnp.take_along_axis(cdf_re, below_ru, axis=-1)
    cdf_hi_ru = jnp.take_along_axis(cdf_re, above_ru, axis=-1)
    edge_lo_ru = jnp.take_along_axis(edges_re, below_ru, axis=-1)
    edge_hi_ru = jnp.take_along_axis(edges_re, above_ru, axis=-1)
    denom_ru = cdf_hi_ru - cdf_lo_ru
    denom_ru = jnp.where(denom_ru < 1e-5, 1.0, denom_ru)
    frac_ru = jnp.clip((u_ru - cdf_lo_ru) / denom_ru, 0.0, 1.0)
    return jax.lax.stop_gradient(edge_lo_ru + frac_ru * (edge_hi_ru - edge_lo_ru))


def neus_samples(
    origins_r3: jnp.ndarray,
    dirs_r3: jnp.ndarray,
    near_r: jnp.ndarray,
    far_r: jnp.ndarray,
    sdf_fn: Callable[[jnp.ndarray], jnp.ndarray],
    num_samples: int,
    num_importance: int,
    up_sample_inv_s: float,
    jitter_r2: jnp.ndarray | None,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Sample starts `t_rs` and deltas `deltas_rs`, both (R, num_samples + num_importance).

    `sdf_fn` maps scaled points (..., 3) to SDF values (...); its result is stop-gradiented
    here, since up-sampling only chooses positions (the reference runs it under no_grad).
    One up-sampling step with the fixed `up_sample_inv_s`, as in the reference configuration.
    `jitter_r2` holds each ray's (stratified, PDF) jitters in [0, 1), or None.
    """
    strat_jitter_r, pdf_jitter_r = (
        (None, None) if jitter_r2 is None else (jitter_r2[:, 0], jitter_r2[:, 1])
    )
    edges_re = jax.lax.stop_gradient(stratified_edges(near_r, far_r, num_samples, strat_jitter_r))
    starts_rs = edges_re[:, :-1]
    if num_importance > 0:
        deltas_rs = edges_re[:, 1:] - starts_rs
        points_rs3 = origins_r3[:, None, :] + dirs_r3[:, None, :] * starts_rs[..., None]
        sdf_rs = jax.lax.stop_gradient(sdf_fn(points_rs3))
        alpha_rs = fixed_inv_s_alpha(sdf_rs, deltas_rs, up_sample_inv_s)
        weights_rs = weights_from_alphas(alpha_rs)
        # The last stratified bin has no section after it: weight zero, as in the reference.
        weights_rs = jnp.concatenate([weights_rs, jnp.zeros_like(weights_rs[:, :1])], axis=-1)
        new_edges_re = pdf_edges(edges_re, weights_rs, num_importance, pdf_jitter_r)
        starts_rs = jnp.sort(jnp.concatenate([starts_rs, new_edges_re[:, :-1]], axis=-1), axis=-1)
    # New edges lie inside the stratified span, so the merged samples end at its last edge
    # (far, or within half a bin of it when jittered), as the reference's merge does.
    ends_rs = jnp.concatenate([starts_rs[:, 1:], edges_re[:, -1:]], axis=-1)
    return starts_rs, ends_rs - starts_rs

"""2D -> 3D lift (the reference `Uni3DViewTrans` of vs0.1, parameter-free), per frame.

For every voxel CENTRE p (mim4d_jax.geometry.grid) and camera n:
  (u d, v d, d, 1) = lidar2img[n] @ (p, 1)        u, v in padded-input pixels, d in metres
  valid  = d > 1e-5 and 0 < u/Wp < 1 and 0 < v/Hp < 1 and 0 < d/depth_max < 1
  vol[p] = sum_{n, l} valid * bilinear(feat_l[n], (x_l, y_l)) * trilinear(depth_l[n], (x_l, y_l, k))

Sampling coordinates follow the reference's `grid_sample(..., align_corners=True)` applied to
`g = 2 u / Wp - 1`: with align_corners=True, g = -1 is pixel centre 0 and g = +1 is pixel
centre w_l - 1, so the level-l continuous pixel coordinate is

  x_l = (g + 1) / 2 * (w_l - 1) = u / Wp * (w_l - 1),   y_l = v / Hp * (h_l - 1),

and the depth-bin coordinate (D bins, normalised depth d / depth_max) is
k = d / depth_max * (D - 1). (This is the reference's mapping, kept so fine-tuning on an
exported checkpoint sees the same geometry; it is not the exact stride-aligned pixel centre.)
Corners outside the map read zeros (grid_sample padding_mode='zeros'); for valid points all
corners are inside, except exactly on the last row/column where the outside corner has weight 0.
The validity bounds include the depth range (the reference also masks d >= depth_max).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from mim4d_jax.geometry.grid import VoxelGrid

DEPTH_EPS = 1e-5  # reference: points with camera depth <= 1e-5 are behind/at the camera


def project_points(
    points_v3: jax.Array, lidar2img_44: jax.Array, pad_hw: tuple[int, int], depth_max: float
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Float32 projection of metric points (V, 3) into one camera.

    Returns (u_norm, v_norm, d_norm, valid), each (V,): u/Wp, v/Hp, d/depth_max in (0, 1)
    where valid. Geometry stays float32 even under bf16 compute (bf16 pixel coordinates would
    be off by several pixels at 800 px)."""
    pts_v4 = jnp.concatenate([points_v3, jnp.ones_like(points_v3[:, :1])], axis=-1)
    cam_v4 = jnp.einsum(
        "ij,vj->vi",
        lidar2img_44.astype(jnp.float32),
        pts_v4.astype(jnp.float32),
        precision=jax.lax.Precision.HIGHEST,
    )
    depth_v = cam_v4[:, 2]
    safe_depth_v = jnp.maximum(depth_v, DEPTH_EPS)
    u_norm = cam_v4[:, 0] / safe_depth_v / pad_hw[1]
    v_norm = cam_v4[:, 1] / safe_depth_v / pad_hw[0]
    d_norm = depth_v / depth_max
    valid = (
        (depth_v > DEPTH_EPS)
        & (u_norm > 0.0)
        & (u_norm < 1.0)
        & (v_norm > 0.0)
        & (v_norm < 1.0)
        & (d_norm > 0.0)
        & (d_norm < 1.0)
    )
    return u_norm, v_norm, d_norm, valid


def _linear_corners(coord_v: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """Two neighbours along one axis: clipped int indices (V, 2) and weights (V, 2); a corner
    outside [0, size - 1] gets weight 0 (zero padding)."""
    lo_v = jnp.floor(coord_v)
    frac_v = coord_v - lo_v
    idx_v2 = jnp.stack([lo_v, lo_v + 1.0], axis=-1)
    w_v2 = jnp.stack([1.0 - frac_v, frac_v], axis=-1)
    inside_v2 = (idx_v2 >= 0.0) & (idx_v2 <= size - 1)
    w_v2 = jnp.where(inside_v2, w_v2, 0.0)
    return jnp.clip(idx_v2, 0, size - 1).astype(jnp.int32), w_v2


def _sample_level(
    feat_hwc: jax.Array,
    depth_hwd: jax.Array,
    u_norm: jax.Array,
    v_norm: jax.Array,
    d_norm: jax.Array,
    valid_v: jax.Array,
) -> jax.Array:
    """valid * bilinear(feat) * trilinear(depth) for one camera and level: (V, C) float32."""
    h, w, c = feat_hwc.shape
    n_bins = depth_hwd.shape[-1]
    xi_v2, xw_v2 = _linear_corners(u_norm * (w - 1), w)
    yi_v2, yw_v2 = _linear_corners(v_norm * (h - 1), h)
    ki_v2, kw_v2 = _linear_corners(d_norm * (n_bins - 1), n_bins)
    # Spatial corners (y, x) flattened to 4 per voxel.
    pix_v4 = (yi_v2[:, :, None] * w + xi_v2[:, None, :]).reshape(-1, 4)
    wpix_v4 = (yw_v2[:, :, None] * xw_v2[:, None, :]).reshape(-1, 4)
    # Depth: the same 4 spatial corners x 2 bins, from the flattened (h*w*D) volume.
    depth_flat = depth_hwd.reshape(-1).astype(jnp.float32)
    depth_idx_v42 = pix_v4[:, :, None] * n_bins + ki_v2[:, None, :]
    depth_v = jnp.einsum(
        "vp,vk,vpk->v", wpix_v4, kw_v2, jnp.take(depth_flat, depth_idx_v42, axis=0)
    )
    weight_v4 = wpix_v4 * jnp.where(valid_v, depth_v, 0.0)[:, None]
    corners_v4c = jnp.take(feat_hwc.reshape(h * w, c), pix_v4, axis=0)
    return jnp.einsum(
        "vp,vpc->vc",
        weight_v4.astype(feat_hwc.dtype),
        corners_v4c,
        preferred_element_type=jnp.float32,
    )


def lift_to_volume(
    feats_l: Sequence[jax.Array],
    depth_l: Sequence[jax.Array],
    lidar2img_n44: jax.Array,
    pad_hw: tuple[int, int],
    grid: VoxelGrid,
    depth_max: float,
) -> jax.Array:
    """Lift one frame's multi-camera, multi-level features into the voxel grid.

    feats_l: per level (N_cam, h_l, w_l, C) features in the compute dtype.
    depth_l: per level (N_cam, h_l, w_l, D) depth-bin softmax probabilities.
    lidar2img_n44: (N_cam, 4, 4) volume coords (m) -> (u d, v d, d, 1), padded-input pixels.
    pad_hw: (Hp, Wp) padded input size (the normaliser of u, v).
    Returns vol_zyxc (Z, Y, X, C) float32 (sum over cameras and levels, no normalisation).
    vmap over frames/batch in the caller.
    """
    if len(feats_l) != len(depth_l):
        raise ValueError(f"{len(feats_l)} feature levels but {len(depth_l)} depth levels")
    nz, ny, nx = grid.shape_zyx
    channels = feats_l[0].shape[-1]
    points_v3 = jnp.asarray(grid.centres_zyx3().reshape(-1, 3))

    # Per camera: recompute the (V, 4, C) corner gathers in the backward pass instead of
    # storing them for every camera and level (2 GB per frame at the vs0.1 size in bf16).
    @jax.checkpoint
    def one_camera(
        vol_vc: jax.Array, cam: tuple[jax.Array, list[jax.Array], list[jax.Array]]
    ) -> tuple[jax.Array, None]:
        lidar2img_44, feats_hwc, depths_hwd = cam
        u_norm, v_norm, d_norm, valid_v = project_points(points_v3, lidar2img_44, pad_hw, depth_max)
        for feat_hwc, depth_hwd in zip(feats_hwc, depths_hwd):
            vol_vc = vol_vc + _sample_level(feat_hwc, depth_hwd, u_norm, v_norm, d_norm, valid_v)
        return vol_vc, None

    vol_vc = jnp.zeros((points_v3.shape[0], channels), jnp.float32)
    vol_vc, _ = jax.lax.scan(one_camera, vol_vc, (lidar2img_n44, list(feats_l), list(depth_l)))
    return vol_vc.reshape(nz, ny, nx, channels)

"""Vectorised first-hit ray casting against the ground plane z = 0 and the world's primitives.

All rays of one sensor share one origin. A primitive is only tested against the block of rays
that can see it (its projected bounding box for a camera, its bounding sphere's azimuth and
elevation span for the LiDAR), so the cost is about pixels x depth complexity rather than
pixels x primitives.
"""

import dataclasses
from collections.abc import Iterator

import numpy as np

from data_prep.synth.world import KIND_BOX, KIND_CYLINDER, KIND_SPHERE, Primitives

GROUND, MISS = -1, -2  # hit index values that are not primitives
_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class Hits:
    """First hit per ray: ray parameter t (inf = miss) and the primitive index into the cast's
    Primitives (GROUND / MISS otherwise)."""

    t_hw: np.ndarray
    index_hw: np.ndarray


def box_corners(prims: Primitives) -> np.ndarray:
    """(P, 8, 3) corners of each primitive's (oriented) bounding box in world coordinates."""
    signs_83 = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    local_p83 = signs_83[None] * prims.half_p3[:, None, :]
    c, s = np.cos(prims.yaw_p)[:, None], np.sin(prims.yaw_p)[:, None]
    world_p83 = np.empty_like(local_p83)
    world_p83[..., 0] = c * local_p83[..., 0] - s * local_p83[..., 1]
    world_p83[..., 1] = s * local_p83[..., 0] + c * local_p83[..., 1]
    world_p83[..., 2] = local_p83[..., 2]
    return world_p83 + prims.center_p3[:, None, :]


def _hit_box(o_3, d_hw3, center_3, half_3, yaw) -> np.ndarray:
    """Slab test in the box's own frame (yaw about z only, so z needs no rotation)."""
    c, s = np.cos(yaw), np.sin(yaw)
    rel_3 = o_3 - center_3
    o_local_3 = (c * rel_3[0] + s * rel_3[1], -s * rel_3[0] + c * rel_3[1], rel_3[2])
    d_x_hw, d_y_hw = d_hw3[..., 0], d_hw3[..., 1]
    d_local = (c * d_x_hw + s * d_y_hw, -s * d_x_hw + c * d_y_hw, d_hw3[..., 2])
    t_enter_hw, t_exit_hw = -np.inf, np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(3):
            inv_hw = 1.0 / d_local[k]
            t_a_hw = (-half_3[k] - o_local_3[k]) * inv_hw
            t_b_hw = (half_3[k] - o_local_3[k]) * inv_hw
            t_enter_hw = np.maximum(t_enter_hw, np.minimum(t_a_hw, t_b_hw))
            t_exit_hw = np.minimum(t_exit_hw, np.maximum(t_a_hw, t_b_hw))
    # Origins inside a box (never the case for sensors) would hit at t_enter < 0: no hit.
    hit_hw = (t_enter_hw <= t_exit_hw) & (t_enter_hw > _EPS)
    return np.where(hit_hw, t_enter_hw, np.inf)


def _hit_cylinder(o_3, d_hw3, center_3, half_3) -> np.ndarray:
    """Side wall of a vertical cylinder (caps are never visible from sensors below the top)."""
    rel_3 = o_3 - center_3
    radius, half_h = half_3[0], half_3[2]
    a_hw = d_hw3[..., 0] ** 2 + d_hw3[..., 1] ** 2
    b_hw = rel_3[0] * d_hw3[..., 0] + rel_3[1] * d_hw3[..., 1]
    c = rel_3[0] ** 2 + rel_3[1] ** 2 - radius**2
    disc_hw = b_hw**2 - a_hw * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_hw = (-b_hw - np.sqrt(np.maximum(disc_hw, 0.0))) / a_hw
    z_hw = rel_3[2] + t_hw * d_hw3[..., 2]
    return np.where((disc_hw > 0) & (t_hw > _EPS) & (np.abs(z_hw) <= half_h), t_hw, np.inf)


def _hit_sphere(o_3, d_hw3, center_3, radius) -> np.ndarray:
    rel_3 = o_3 - center_3
    a_hw = (d_hw3**2).sum(-1)
    b_hw = d_hw3 @ rel_3
    disc_hw = b_hw**2 - a_hw * (rel_3 @ rel_3 - radius**2)
    t_hw = (-b_hw - np.sqrt(np.maximum(disc_hw, 0.0))) / a_hw
    return np.where((disc_hw > 0) & (t_hw > _EPS), t_hw, np.inf)


def primitive_field(field_p: np.ndarray, index_r: np.ndarray, fill: float) -> np.ndarray:
    """field_p[index_r] per hit, `fill` where the hit is not a primitive (index < 0)."""
    out = np.full((len(index_r),) + field_p.shape[1:], fill, dtype=field_p.dtype)
    on_prim = index_r >= 0
    out[on_prim] = field_p[index_r[on_prim]]
    return out


def surface_normals(prims: Primitives, index_r: np.ndarray, points_r3: np.ndarray) -> np.ndarray:
    """Unit normals at hit points (ground: +z), from each hit's primitive."""
    normal_r3 = np.zeros_like(points_r3)
    normal_r3[:, 2] = 1.0
    kind_r = primitive_field(prims.kind_p, index_r, -1)
    box = kind_r == KIND_BOX
    p_r = index_r[box]
    rel_r3 = points_r3[box] - prims.center_p3[p_r]
    c, s = np.cos(prims.yaw_p[p_r]), np.sin(prims.yaw_p[p_r])
    local = (
        c * rel_r3[:, 0] + s * rel_r3[:, 1],
        -s * rel_r3[:, 0] + c * rel_r3[:, 1],
        rel_r3[:, 2],
    )
    # The face whose normalised local coordinate is largest is the one that was hit.
    scaled = [np.abs(local[k]) / prims.half_p3[p_r, k] for k in range(3)]
    use_x = (scaled[0] >= scaled[1]) & (scaled[0] >= scaled[2])
    use_y = ~use_x & (scaled[1] >= scaled[2])
    n_x = np.where(use_x, np.sign(local[0]), 0.0)
    n_y = np.where(use_y, np.sign(local[1]), 0.0)
    normal_r3[box] = np.column_stack(
        [c * n_x - s * n_y, s * n_x + c * n_y, np.where(use_x | use_y, 0.0, np.sign(local[2]))]
    )
    cylinder = kind_r == KIND_CYLINDER
    rel_r3 = points_r3[cylinder] - prims.center_p3[index_r[cylinder]]
    rel_r3[:, 2] = 0.0
    normal_r3[cylinder] = rel_r3 / np.linalg.norm(rel_r3, axis=1, keepdims=True)
    sphere = kind_r == KIND_SPHERE
    rel_r3 = points_r3[sphere] - prims.center_p3[index_r[sphere]]
    normal_r3[sphere] = rel_r3 / np.linalg.norm(rel_r3, axis=1, keepdims=True)
    return normal_r3


Block = tuple[int, slice, slice]


def cast(
    origin_3: np.ndarray, dirs_hw3: np.ndarray, prims: Primitives, blocks: Iterator[Block]
) -> Hits:
    """First hits of rays origin + t * dirs (world frame); `blocks` yields (primitive index,
    ray rows, ray cols) for every primitive that may be hit by those rays."""
    with np.errstate(divide="ignore"):
        t_ground_hw = -origin_3[2] / dirs_hw3[..., 2]
    ground_hw = (dirs_hw3[..., 2] < 0) & (t_ground_hw > 0)
    t_hw = np.where(ground_hw, t_ground_hw, np.inf)
    index_hw = np.where(ground_hw, GROUND, MISS)
    for p, rows, cols in blocks:
        d_hw3 = dirs_hw3[rows, cols]
        kind = prims.kind_p[p]
        if kind == KIND_BOX:
            t_new = _hit_box(origin_3, d_hw3, prims.center_p3[p], prims.half_p3[p], prims.yaw_p[p])
        elif kind == KIND_CYLINDER:
            t_new = _hit_cylinder(origin_3, d_hw3, prims.center_p3[p], prims.half_p3[p])
        else:
            t_new = _hit_sphere(origin_3, d_hw3, prims.center_p3[p], prims.half_p3[p, 0])
        t_view, index_view = t_hw[rows, cols], index_hw[rows, cols]  # views: updated in place
        better = t_new < t_view
        t_view[better] = t_new[better]
        index_view[better] = p
    return Hits(t_hw, index_hw)


def camera_blocks(
    prims: Primitives, world2cam_44: np.ndarray, intrinsic_33: np.ndarray, width: int, height: int
) -> Iterator[Block]:
    """Pixel rectangles covering each primitive's projected bounding box (exact for convex
    boxes in front of the camera; the whole image when a box straddles the camera plane)."""
    corners_p83 = box_corners(prims)
    cam_p83 = corners_p83 @ world2cam_44[:3, :3].T + world2cam_44[:3, 3]
    z_p8 = cam_p83[..., 2]
    front_p8 = z_p8 > 1e-3
    with np.errstate(divide="ignore", invalid="ignore"):
        u_p8 = intrinsic_33[0, 0] * cam_p83[..., 0] / z_p8 + intrinsic_33[0, 2]
        v_p8 = intrinsic_33[1, 1] * cam_p83[..., 1] / z_p8 + intrinsic_33[1, 2]
    straddles_p = front_p8.any(1) & ~front_p8.all(1)
    u0_p = np.where(straddles_p, 0, np.clip(np.floor(u_p8.min(1)), 0, width)).astype(int)
    u1_p = np.where(straddles_p, width, np.clip(np.ceil(u_p8.max(1)) + 1, 0, width)).astype(int)
    v0_p = np.where(straddles_p, 0, np.clip(np.floor(v_p8.min(1)), 0, height)).astype(int)
    v1_p = np.where(straddles_p, height, np.clip(np.ceil(v_p8.max(1)) + 1, 0, height)).astype(int)
    visible_p = front_p8.any(1) & (u1_p > u0_p) & (v1_p > v0_p)
    for p in np.nonzero(visible_p)[0]:
        yield p, slice(v0_p[p], v1_p[p]), slice(u0_p[p], u1_p[p])


def lidar_blocks(
    prims: Primitives, world2lidar_44: np.ndarray, elevations_e: np.ndarray, azimuth_steps: int
) -> Iterator[Block]:
    """Beam rows and azimuth columns covering each primitive's bounding sphere (elevations in
    radians, descending; column c looks at azimuth (c + 0.5) * 2 pi / azimuth_steps)."""
    centre_p3 = prims.center_p3 @ world2lidar_44[:3, :3].T + world2lidar_44[:3, 3]
    radius_p = np.linalg.norm(prims.half_p3, axis=1)
    dist_xy_p = np.hypot(centre_p3[:, 0], centre_p3[:, 1])
    dist_p = np.linalg.norm(centre_p3, axis=1)
    inside_p = dist_p <= radius_p
    elevation_p = np.arctan2(centre_p3[:, 2], dist_xy_p)
    spread_p = np.arcsin(np.minimum(radius_p / np.maximum(dist_p, 1e-9), 1.0))
    covers_pe = np.abs(elevations_e[None, :] - elevation_p[:, None]) <= spread_p[:, None]
    covers_pe |= inside_p[:, None]
    row0_p = np.argmax(covers_pe, axis=1)
    row1_p = len(elevations_e) - np.argmax(covers_pe[:, ::-1], axis=1)
    step = 2 * np.pi / azimuth_steps
    azimuth_p = np.arctan2(centre_p3[:, 1], centre_p3[:, 0])
    half_span_p = np.arcsin(np.minimum(radius_p / np.maximum(dist_xy_p, 1e-9), 1.0))
    c0_p = np.floor((azimuth_p - half_span_p) / step - 0.5).astype(int)
    c1_p = np.ceil((azimuth_p + half_span_p) / step - 0.5).astype(int) + 1
    all_cols_p = dist_xy_p <= radius_p  # the sensor is above or below the primitive
    for p in np.nonzero(covers_pe.any(axis=1))[0]:
        rows = slice(row0_p[p], row1_p[p])
        if all_cols_p[p]:
            yield p, rows, slice(None)
            continue
        # A span across azimuth 0 is split into two contiguous column blocks.
        c0, c1 = c0_p[p], c1_p[p]
        if c0 < 0:
            yield p, rows, slice(c0 % azimuth_steps, azimuth_steps)
        elif c1 > azimuth_steps:
            yield p, rows, slice(0, c1 - azimuth_steps)
        yield p, rows, slice(max(c0, 0), min(c1, azimuth_steps))

"""Render-ray sampling per target frame and camera (NumPy), following the reference's
`RenderHead.sample_rays`: rays through pixels hit by the key-frame LiDAR, topped up with
depth-less pixel rays below the sky band."""

from __future__ import annotations

import dataclasses

import numpy as np

NO_DEPTH = -1.0
_MIN_CAMERA_DEPTH = 1e-3  # metres; points at or behind the image plane cannot be projected


@dataclasses.dataclass(frozen=True)
class RayConfig:
    num_rays: int
    sky_fraction: float
    top_up_stride: int
    lidar_min_dist: float
    lidar_min_xy: float
    lidar_max_xy: float
    pc_range: tuple[float, float, float, float, float, float]

    @classmethod
    def from_config(cls, config) -> RayConfig:
        d = config.data
        return cls(
            num_rays=int(d.num_rays),
            sky_fraction=float(d.sky_fraction),
            top_up_stride=int(d.top_up_stride),
            lidar_min_dist=float(d.lidar_min_dist),
            lidar_min_xy=float(d.lidar_min_xy),
            lidar_max_xy=float(d.lidar_max_xy),
            pc_range=tuple(float(v) for v in config.model.pc_range),
        )


def filter_lidar(points_p3: np.ndarray, cfg: RayConfig) -> np.ndarray:
    """Key-frame LiDAR points (LiDAR frame) kept for depth targets: inside pc_range, 3-D norm
    above lidar_min_dist, ground-plane norm strictly between lidar_min_xy and lidar_max_xy."""
    lo_3, hi_3 = np.asarray(cfg.pc_range[:3]), np.asarray(cfg.pc_range[3:])
    inside_p = np.all((points_p3 >= lo_3) & (points_p3 <= hi_3), axis=1)
    norm_xy_p = np.linalg.norm(points_p3[:, :2], axis=1)
    keep_p = (
        inside_p
        & (np.linalg.norm(points_p3, axis=1) > cfg.lidar_min_dist)
        & (norm_xy_p > cfg.lidar_min_xy)
        & (norm_xy_p < cfg.lidar_max_xy)
    )
    return points_p3[keep_p]


def top_up_pixels(width: int, height: int, cfg: RayConfig) -> np.ndarray:
    """(G, 2) integer (u, v) grid every top_up_stride px below the top sky_fraction band."""
    v0 = int(np.ceil(cfg.sky_fraction * height))
    vs, us = np.meshgrid(
        np.arange(v0, height, cfg.top_up_stride),
        np.arange(0, width, cfg.top_up_stride),
        indexing="ij",
    )
    return np.stack([us.ravel(), vs.ravel()], axis=1)


def lidar_hits(
    points_p3: np.ndarray,
    lidar2cam_44: np.ndarray,
    intrinsics_33: np.ndarray,
    width: int,
    height: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels hit by the points and their camera depths, one hit per pixel (the nearest point,
    so points hidden behind a nearer surface from this viewpoint do not give a target).

    Returns (H, 2) int (u, v) rounded to the pixel centre and (H,) camera depth in metres;
    only points projecting inside [0, W-1] x [0, H-1] of the un-padded image count.
    """
    cam_p3 = points_p3 @ lidar2cam_44[:3, :3].T + lidar2cam_44[:3, 3]
    z_p = cam_p3[:, 2]
    in_front_p = z_p > _MIN_CAMERA_DEPTH
    cam_p3, z_p = cam_p3[in_front_p], z_p[in_front_p]
    uv_p2 = (cam_p3 @ intrinsics_33.T)[:, :2] / z_p[:, None]
    inside_p = (
        (uv_p2[:, 0] >= 0)
        & (uv_p2[:, 0] <= width - 1)
        & (uv_p2[:, 1] >= 0)
        & (uv_p2[:, 1] <= height - 1)
    )
    pix_p2 = np.rint(uv_p2[inside_p]).astype(np.int64)
    z_p = z_p[inside_p]
    by_depth_p = np.argsort(z_p, kind="stable")
    pix_p2, z_p = pix_p2[by_depth_p], z_p[by_depth_p]
    _, first_h = np.unique(pix_p2[:, 1] * width + pix_p2[:, 0], return_index=True)
    return pix_p2[first_h], z_p[first_h]


def sample_camera_rays(
    rng: np.random.Generator,
    points_p3: np.ndarray,
    lidar2cam_44: np.ndarray,
    intrinsics_33: np.ndarray,
    cam2vol_44: np.ndarray,
    image_hw3: np.ndarray,
    cfg: RayConfig,
) -> dict[str, np.ndarray]:
    """`cfg.num_rays` rays of one camera in one target frame.

    `points_p3`: filtered key-frame LiDAR points; `lidar2cam_44`: key LiDAR -> this camera;
    `intrinsics_33`: at the resized resolution; `cam2vol_44`: camera -> the target frame's
    volume coords; `image_hw3`: resized, unmasked, unpadded RGB in 0..255.
    Rays go through pixel centres; a LiDAR ray's depth is the Euclidean length to the point
    at the LiDAR camera depth along that pixel's ray (exactly reprojects to the pixel).
    """
    height, width = image_hw3.shape[:2]
    hit_pix_h2, hit_z_h = lidar_hits(points_p3, lidar2cam_44, intrinsics_33, width, height)
    num_hit = min(cfg.num_rays, len(hit_z_h))
    chosen_h = rng.choice(len(hit_z_h), size=num_hit, replace=False)
    pix_r2 = hit_pix_h2[chosen_h]
    z_r = hit_z_h[chosen_h]
    num_top_up = cfg.num_rays - num_hit
    if num_top_up:
        grid_g2 = top_up_pixels(width, height, cfg)
        if len(grid_g2) < num_top_up:
            raise ValueError(
                f"only {len(grid_g2)} top-up pixels in a {width}x{height} image for "
                f"{num_top_up} rays: lower data.top_up_stride or data.num_rays"
            )
        pix_r2 = np.concatenate(
            [pix_r2, grid_g2[rng.choice(len(grid_g2), num_top_up, replace=False)]]
        )
        z_r = np.concatenate([z_r, np.full(num_top_up, np.nan)])

    pix_h_r3 = np.concatenate([pix_r2.astype(np.float64), np.ones((cfg.num_rays, 1))], axis=1)
    dir_cam_r3 = pix_h_r3 @ np.linalg.inv(intrinsics_33).T  # camera z = 1
    length_r = np.linalg.norm(dir_cam_r3, axis=1)
    dir_vol_r3 = (dir_cam_r3 / length_r[:, None]) @ cam2vol_44[:3, :3].T
    depth_r = np.where(np.isnan(z_r), NO_DEPTH, z_r * length_r)
    return {
        "ray_origin": np.broadcast_to(cam2vol_44[:3, 3], (cfg.num_rays, 3)).astype(np.float32),
        "ray_dir": dir_vol_r3.astype(np.float32),
        "ray_rgb": image_hw3[pix_r2[:, 1], pix_r2[:, 0]].astype(np.float32) / 255.0,
        "ray_depth": depth_r.astype(np.float32),
    }

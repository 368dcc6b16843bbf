"""Per-clip camera geometry in the volume frames of docs/architecture.md (NumPy, float64).

Volume frame of frame t = the key-frame LiDAR frame (`lidar2ego`) placed at CAM_FRONT's ego pose
at its own frame-t timestamp. Every camera maps into it through its own ego pose at its own
timestamp (`ego2global[c, t]`).
"""

from __future__ import annotations

import numpy as np


def resize_intrinsics(intrinsics_nt33: np.ndarray, scale_nt2: np.ndarray) -> np.ndarray:
    """Intrinsics after resizing each image by `scale_nt2` = (sx, sy).

    Pixel centres sit at integer coordinates, and resizing maps centre u to (u + 0.5) s - 0.5
    (the half-pixel convention of PIL/TF antialiased resizes), hence the -0.5 (1 - s) shift.
    Zero padding at the bottom/right does not move pixel coordinates.
    """
    pix_nt33 = np.zeros(intrinsics_nt33.shape)
    pix_nt33[..., 0, 0] = scale_nt2[..., 0]
    pix_nt33[..., 1, 1] = scale_nt2[..., 1]
    pix_nt33[..., 0, 2] = 0.5 * (scale_nt2[..., 0] - 1.0)
    pix_nt33[..., 1, 2] = 0.5 * (scale_nt2[..., 1] - 1.0)
    pix_nt33[..., 2, 2] = 1.0
    return pix_nt33 @ intrinsics_nt33


def vol2global(ego2global_nt44: np.ndarray, lidar2ego_44: np.ndarray, front: int) -> np.ndarray:
    """(T, 4, 4): volume frame t -> global; `front` = index of CAM_FRONT among the cameras."""
    return ego2global_nt44[front] @ lidar2ego_44


def cam2vol(
    cam2ego_nt44: np.ndarray, ego2global_nt44: np.ndarray, lidar2ego_44: np.ndarray, front: int
) -> np.ndarray:
    """(N, T, 4, 4): camera c at frame t -> volume frame t, through camera c's own ego pose."""
    global2vol_t44 = np.linalg.inv(vol2global(ego2global_nt44, lidar2ego_44, front))
    return global2vol_t44[None] @ ego2global_nt44 @ cam2ego_nt44


def keylidar2cam(
    cam2ego_nt44: np.ndarray,
    ego2global_nt44: np.ndarray,
    lidar2ego_44: np.ndarray,
    lidar_ego2global_44: np.ndarray,
) -> np.ndarray:
    """(N, T, 4, 4): key-frame LiDAR -> ego (LiDAR time) -> global -> ego (camera c, frame t)
    -> camera c at frame t; used to project the key-frame points into every frame's images."""
    lidar2global_44 = lidar_ego2global_44 @ lidar2ego_44
    return np.linalg.inv(ego2global_nt44 @ cam2ego_nt44) @ lidar2global_44


def homogeneous_intrinsics(intrinsics_nt33: np.ndarray) -> np.ndarray:
    """(..., 4, 4) with K in the top-left block, so (x, y, z, 1) -> (u z, v z, z, 1)."""
    k44 = np.zeros((*intrinsics_nt33.shape[:-2], 4, 4))
    k44[..., :3, :3] = intrinsics_nt33
    k44[..., 3, 3] = 1.0
    return k44


def lidar2img(intrinsics_nt33: np.ndarray, cam2vol_nt44: np.ndarray) -> np.ndarray:
    """(N, T, 4, 4): volume frame t -> (u d, v d, d, 1) in input pixels of camera c, frame t."""
    return homogeneous_intrinsics(intrinsics_nt33) @ np.linalg.inv(cam2vol_nt44)


def vol2ref(ego2global_nt44: np.ndarray, lidar2ego_44: np.ndarray, front: int) -> np.ndarray:
    """(T, 4, 4): volume frame t -> volume frame 0 (the rigid ego motion of the temporal warp)."""
    vol2global_t44 = vol2global(ego2global_nt44, lidar2ego_44, front)
    return np.linalg.inv(vol2global_t44[0])[None] @ vol2global_t44

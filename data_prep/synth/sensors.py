"""Camera images, depth maps and LiDAR sweeps of a world at a given time."""

import numpy as np

from data_prep.synth import materials, raycast, rig
from data_prep.synth.world import Primitives, World


def ego2global(world: World, t: float) -> np.ndarray:
    """4x4 ego pose (ego origin on the ground, x forward) at t seconds into the scene."""
    xy_2, yaw = world.ego_pose(t)
    return rig.pose_matrix(rig.yaw_quaternion(yaw).rotation_matrix, np.array([*xy_2, 0.0]))


def _surface(prims: Primitives, hits: raycast.Hits, origin_3, dirs_hw3, hit_hw):
    """Albedo (n_hit, 3) and unit normal (n_hit, 3) of the rays that hit, in row-major order."""
    index_r = hits.index_hw[hit_hw]
    points_r3 = origin_3 + hits.t_hw[hit_hw][:, None] * dirs_hw3[hit_hw]
    normal_r3 = raycast.surface_normals(prims, index_r, points_r3)
    return materials.albedo(points_r3, normal_r3, index_r, prims), normal_r3


def render_camera(world: World, camera: rig.Camera, t: float) -> tuple[np.ndarray, np.ndarray]:
    """RGB image (H, W, 3) uint8 and z-depth (H, W) float32 metres, 0 where the sky is seen."""
    cam2world_44 = ego2global(world, t) @ camera.cam2ego_44
    world2cam_44 = np.linalg.inv(cam2world_44)
    origin_3 = cam2world_44[:3, 3]
    dirs_hw3 = rig.camera_directions(camera) @ cam2world_44[:3, :3].T
    prims = world.primitives_at(t)
    blocks = raycast.camera_blocks(
        prims, world2cam_44, camera.intrinsic_33, camera.width, camera.height
    )
    hits = raycast.cast(origin_3, dirs_hw3, prims, blocks)
    hit_hw = np.isfinite(hits.t_hw)
    rgb_hw3 = np.empty((camera.height, camera.width, 3))
    rgb_hw3[~hit_hw] = materials.sky(dirs_hw3[~hit_hw])
    albedo_r3, normal_r3 = _surface(prims, hits, origin_3, dirs_hw3, hit_hw)
    rgb_hw3[hit_hw] = materials.shade(albedo_r3, normal_r3)
    # Directions have camera z = 1, so the ray parameter is the z-depth.
    depth_hw = np.where(hit_hw, hits.t_hw, 0.0).astype(np.float32)
    return np.round(rgb_hw3 * 255).astype(np.uint8), depth_hw


def scan_lidar(world: World, t: float, azimuth_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """One LIDAR_TOP sweep: points (N, 5) float32 (x, y, z, intensity, ring) in the LiDAR
    frame and the world ident of the surface behind each point (-1 for the ground)."""
    lidar2world_44 = ego2global(world, t) @ rig.lidar2ego()
    world2lidar_44 = np.linalg.inv(lidar2world_44)
    origin_3 = lidar2world_44[:3, 3]
    dirs_lidar_ea3 = rig.lidar_directions(azimuth_steps)
    dirs_ea3 = dirs_lidar_ea3 @ lidar2world_44[:3, :3].T
    prims = world.primitives_at(t)
    elevations_e = np.deg2rad(rig.LIDAR_ELEVATIONS_DEG)
    blocks = raycast.lidar_blocks(prims, world2lidar_44, elevations_e, azimuth_steps)
    hits = raycast.cast(origin_3, dirs_ea3, prims, blocks)
    # Firing order: azimuth-major like a spinning sensor, all 32 beams per azimuth step.
    keep_ae = ((hits.t_hw > 1.0) & (hits.t_hw < rig.LIDAR_MAX_RANGE)).T
    hits = raycast.Hits(hits.t_hw.T, hits.index_hw.T)
    dirs_ae3 = dirs_ea3.transpose(1, 0, 2)
    albedo_r3, normal_r3 = _surface(prims, hits, origin_3, dirs_ae3, keep_ae)
    incidence_r = np.abs((normal_r3 * dirs_ae3[keep_ae]).sum(-1))
    intensity_r = 255.0 * albedo_r3.mean(axis=1) * (0.2 + 0.8 * incidence_r)
    points_r3 = hits.t_hw[keep_ae][:, None] * dirs_lidar_ea3.transpose(1, 0, 2)[keep_ae]
    ring_r = np.broadcast_to(np.arange(len(elevations_e))[None, :], keep_ae.shape)[keep_ae]
    index_r = hits.index_hw[keep_ae]
    ident_r = raycast.primitive_field(prims.ident_p, index_r, -1)
    points_r5 = np.column_stack([points_r3, intensity_r, ring_r]).astype(np.float32)
    return points_r5, ident_r

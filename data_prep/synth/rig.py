"""Sensor rig of the synthetic car: the nuScenes camera and LiDAR calibration.

Numbers follow the real nuScenes rig (log n015-2018-07-24-11-22-45+0800): camera mounting
positions and yaws in the ego frame (x forward, y left, z up), intrinsics at 1600x900 scaled to
the chosen image size, and LIDAR_TOP with its x-right / y-forward axes (yaw -90 deg in ego).
"""

import dataclasses

import numpy as np
from pyquaternion import Quaternion

REAL_WIDTH, REAL_HEIGHT = 1600, 900
CAMERA_HZ = 12
LIDAR_HZ = 20
KEYFRAME_HZ = 2

# channel: (x, y, z mounting position in ego metres, yaw deg, fx at 1600x900, cx, cy,
#           trigger offset in microseconds relative to the LiDAR key sweep)
# The trigger offsets mimic nuScenes, where each camera fires when the spinning LiDAR sweeps
# across its field of view, so the six key-frame images have six different timestamps.
_CAMERAS: dict[str, tuple[float, float, float, float, float, float, float, int]] = {
    "CAM_FRONT": (1.70, 0.02, 1.51, 0.0, 1266.4, 816.3, 491.5, -35_500),
    "CAM_FRONT_RIGHT": (1.55, -0.49, 1.50, -55.0, 1260.8, 808.0, 495.3, -27_600),
    "CAM_FRONT_LEFT": (1.52, 0.49, 1.51, 55.0, 1272.6, 826.6, 479.8, -43_100),
    "CAM_BACK": (0.03, 0.00, 1.58, 180.0, 809.2, 829.2, 481.8, -10_400),
    "CAM_BACK_LEFT": (1.04, 0.48, 1.59, 110.0, 1256.7, 792.1, 492.8, -500),
    "CAM_BACK_RIGHT": (1.02, -0.48, 1.56, -110.0, 1259.5, 807.3, 501.2, -20_100),
}
CAMERA_CHANNELS: tuple[str, ...] = tuple(_CAMERAS)
LIDAR_CHANNEL = "LIDAR_TOP"
LIDAR_TRANSLATION = (0.94, 0.0, 1.84)
# HDL-32E: 32 beams evenly spread from +10.67 to -30.67 degrees elevation.
LIDAR_ELEVATIONS_DEG = np.linspace(10.67, -30.67, 32)
LIDAR_MAX_RANGE = 80.0


@dataclasses.dataclass(frozen=True)
class Camera:
    """One camera: intrinsics at the output size and its pose in the ego frame."""

    channel: str
    width: int
    height: int
    intrinsic_33: np.ndarray
    cam2ego_44: np.ndarray
    time_offset_us: int


def yaw_quaternion(yaw: float) -> Quaternion:
    """Rotation about +z by yaw radians."""
    return Quaternion(axis=(0.0, 0.0, 1.0), radians=yaw)


def pose_matrix(rotation_33: np.ndarray, translation_3: np.ndarray) -> np.ndarray:
    """4x4 rigid transform from a rotation matrix and a translation."""
    pose_44 = np.eye(4)
    pose_44[:3, :3] = rotation_33
    pose_44[:3, 3] = translation_3
    return pose_44


def _camera_rotation(yaw_deg: float) -> np.ndarray:
    """cam2ego rotation: camera x right, y down, z forward; optical axis at yaw in ego."""
    yaw = np.deg2rad(yaw_deg)
    forward_3 = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    right_3 = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    down_3 = np.array([0.0, 0.0, -1.0])
    return np.stack([right_3, down_3, forward_3], axis=1)


def make_cameras(width: int, height: int) -> list[Camera]:
    """The six nuScenes cameras with intrinsics scaled from 1600x900 to width x height."""
    sx, sy = width / REAL_WIDTH, height / REAL_HEIGHT
    cameras = []
    for channel, (x, y, z, yaw_deg, f, cx, cy, offset_us) in _CAMERAS.items():
        intrinsic_33 = np.array([[f * sx, 0.0, cx * sx], [0.0, f * sy, cy * sy], [0.0, 0.0, 1.0]])
        cam2ego_44 = pose_matrix(_camera_rotation(yaw_deg), np.array([x, y, z]))
        cameras.append(Camera(channel, width, height, intrinsic_33, cam2ego_44, offset_us))
    return cameras


def lidar2ego() -> np.ndarray:
    """LIDAR_TOP pose in the ego frame: x right, y forward, z up (yaw -90 deg)."""
    return pose_matrix(yaw_quaternion(-np.pi / 2).rotation_matrix, np.array(LIDAR_TRANSLATION))


def lidar_directions(azimuth_steps: int) -> np.ndarray:
    """Unit ray directions (32, azimuth_steps, 3) in the LiDAR frame; row = ring index."""
    elevation_e = np.deg2rad(LIDAR_ELEVATIONS_DEG)[:, None]
    azimuth_a = (np.arange(azimuth_steps) + 0.5) * (2 * np.pi / azimuth_steps)
    return np.stack(
        [
            np.cos(elevation_e) * np.cos(azimuth_a),
            np.cos(elevation_e) * np.sin(azimuth_a),
            np.broadcast_to(np.sin(elevation_e), (len(elevation_e), azimuth_steps)),
        ],
        axis=-1,
    )


def camera_directions(camera: Camera) -> np.ndarray:
    """Pixel-centre ray directions (H, W, 3) in the camera frame with z = 1.

    Pixel centres sit at integer (u, v), the convention of nuScenes/OpenCV intrinsics and of
    the input pipeline, so K maps a point straight onto the index of the pixel that sees it.
    With z = 1 the ray parameter of a hit is its camera z-depth, which is what the depth maps store.
    """
    k = camera.intrinsic_33
    u_w = (np.arange(camera.width) - k[0, 2]) / k[0, 0]
    v_h = (np.arange(camera.height) - k[1, 2]) / k[1, 1]
    dirs_hw3 = np.empty((camera.height, camera.width, 3))
    dirs_hw3[..., 0] = u_w[None, :]
    dirs_hw3[..., 1] = v_h[:, None]
    dirs_hw3[..., 2] = 1.0
    return dirs_hw3

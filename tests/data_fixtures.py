"""Small TFDS clip datasets with hand-made, self-consistent geometry for the data tests.

A world of ground points plus a few boxes, an ego vehicle driving a gentle curve, six cameras
with a nuScenes-like rig, each camera with its own timestamp and ego pose. Images are smooth
colour gradients (their content only matters for RGB-target checks).
"""

from __future__ import annotations

import io
import pathlib

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from mim4d_jax.data import schema

VERSION = "v1.0-synthetic-test"
_CAM_YAW_DEG = {
    "CAM_FRONT": 0.0,
    "CAM_FRONT_RIGHT": -55.0,
    "CAM_FRONT_LEFT": 55.0,
    "CAM_BACK": 180.0,
    "CAM_BACK_LEFT": 110.0,
    "CAM_BACK_RIGHT": -110.0,
}
# camera axes (x right, y down, z forward) expressed in ego axes (x forward, y left, z up)
_CAM_AXES_IN_EGO = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rigid(rot_33: np.ndarray, trans_3) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot_33, trans_3
    return m


def ego_pose(time_s: float, clip_index: int) -> np.ndarray:
    """Ego -> global at `time_s`: 8 m/s along a curve with yaw rate 0.2 rad/s."""
    yaw = 0.3 * clip_index + 0.2 * time_s
    dist = 8.0 * time_s
    pos = np.array([100.0 + 40.0 * clip_index + dist * np.cos(yaw), 50.0 + dist * np.sin(yaw), 0.2])
    return rigid(rot_z(yaw), pos)


LIDAR2EGO = rigid(rot_z(-np.pi / 2), [0.9, 0.0, 1.8])  # LiDAR y forward = ego x


def cam2ego(cam: str) -> np.ndarray:
    yaw = np.deg2rad(_CAM_YAW_DEG[cam])
    return rigid(rot_z(yaw) @ _CAM_AXES_IN_EGO, [1.5 * np.cos(yaw), 0.5 * np.sin(yaw), 1.6])


def intrinsics(width: int, height: int, cam: str) -> np.ndarray:
    focal = (0.5 if cam == "CAM_BACK" else 0.8) * width
    return np.array([[focal, 0.0, width / 2 + 3.0], [0.0, focal, height / 2 - 2.0], [0, 0, 1.0]])


def world_points(rng: np.random.Generator, centre_xy: np.ndarray) -> np.ndarray:
    """(P, 3) global points: ground (z = 0) plus four box surfaces around the vehicle."""
    ground = np.concatenate(
        [centre_xy + rng.uniform(-45, 45, (3000, 2)), np.zeros((3000, 1))], axis=1
    )
    boxes = []
    for dx, dy in ((12, 3), (-10, -4), (4, -14), (-6, 18)):
        face = rng.uniform(0, 1, (300, 3)) * [0.0, 4.0, 1.8] + [dx, dy - 2.0, 0.0]
        boxes.append(face + [*centre_xy, 0.0])
    return np.concatenate([ground, *boxes])


def gradient_jpeg(width: int, height: int, seed: int) -> bytes:
    ys, xs = np.mgrid[0:height, 0:width]
    phase = seed * 0.7
    rgb = np.stack(
        [
            127 + 120 * np.sin(xs / width * 6.0 + phase),
            127 + 120 * np.cos(ys / height * 5.0 + phase),
            (xs + ys + seed * 13) % 256,
        ],
        axis=-1,
    ).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def make_clip(index: int, frames: int, stored_wh: tuple[int, int], seed: int) -> dict:
    """One clip dict in the schema's feature layout."""
    rng = np.random.default_rng([seed, index])
    num_cams = len(schema.CAMERAS)
    lidar_time = 0.0
    cam_time_nt = np.array(
        [[-t / 12.0 + 0.008 * n - 0.02 for t in range(frames)] for n in range(num_cams)]
    )
    lidar_ego2global = ego_pose(lidar_time, index)
    global_p3 = world_points(rng, lidar_ego2global[:2, 3])
    global2lidar = np.linalg.inv(lidar_ego2global @ LIDAR2EGO)
    lidar_p3 = global_p3 @ global2lidar[:3, :3].T + global2lidar[:3, 3]
    lidar_p4 = np.concatenate([lidar_p3, rng.uniform(0, 1, (len(lidar_p3), 1))], axis=1)
    width, height = stored_wh
    return {
        "sample_token": f"token{index:04d}",
        "scene_name": f"scene-{index // 4:04d}",
        "location": "synthetic",
        "images": {
            cam: [gradient_jpeg(width, height, index * 100 + n * 10 + t) for t in range(frames)]
            for n, cam in enumerate(schema.CAMERAS)
        },
        "intrinsics": np.stack(
            [np.stack([intrinsics(width, height, cam)] * frames) for cam in schema.CAMERAS]
        ),
        "cam2ego": np.stack([np.stack([cam2ego(cam)] * frames) for cam in schema.CAMERAS]),
        "ego2global": np.array(
            [[ego_pose(cam_time_nt[n, t], index) for t in range(frames)] for n in range(num_cams)]
        ),
        "cam_timestamps": (1_000_000 + cam_time_nt * 1e6).astype(np.int64),
        "frame_valid": np.ones((num_cams, frames), bool),
        "lidar_points": lidar_p4.astype(np.float32).ravel(),
        "num_lidar_points": len(lidar_p4),
        "lidar2ego": LIDAR2EGO,
        "lidar_ego2global": lidar_ego2global,
        "lidar_timestamp": 1_000_000,
    }


def fixture_boxes(index: int) -> dict:
    """Two cars and a pedestrian at known frame-0 volume positions (schema 1.1.0 layout)."""
    shift = float(index % 4)
    return {
        "category": np.array(["vehicle.car", "vehicle.car", "human.pedestrian.adult"], object),
        "center": np.array([[6.0 + shift, 4.0, -1.0], [-8.0, -10.0 + shift, -1.0], [3, 3, -1]]),
        "size": np.array([[1.9, 4.5, 1.6], [2.0, 4.8, 1.7], [0.6, 0.6, 1.7]]),
        "yaw": np.array([0.0, np.pi / 2, 0.0]),
        "num_lidar_pts": np.array([40, 25, 5], np.int64),
        "visibility": np.array([4, 3, 4], np.int64),
    }


def write_dataset(
    root: pathlib.Path,
    clips: list[dict],
    *,
    frames: int,
    stored_wh: tuple[int, int],
    split: str = "train",
    num_shards: int = 2,
    cameras: tuple[str, ...] = schema.CAMERAS,
    version: str = VERSION,
    with_boxes: bool = False,
) -> pathlib.Path:
    """Write `clips` as a TFDS folder dataset under root/nuscenes_clips/<version>; returns
    that dir: 1.0.0 without boxes, or 1.1.0 with `fixture_boxes` in every clip."""
    data_dir = root / schema.DATASET_NAME / ("1.1.0" if with_boxes else "1.0.0")
    data_dir.mkdir(parents=True, exist_ok=True)
    features = schema.clip_features(frames, (stored_wh[1], stored_wh[0]), with_boxes=with_boxes)
    if with_boxes:
        clips = [{**clip, "boxes": fixture_boxes(i)} for i, clip in enumerate(clips)]
    for shard in range(num_shards):
        name = f"{schema.DATASET_NAME}-{split}.tfrecord-{shard:05d}-of-{num_shards:05d}"
        with tf.io.TFRecordWriter(str(data_dir / name)) as writer:
            for clip in clips[shard::num_shards]:
                writer.write(features.serialize_example(clip))
    metadata = tfds.core.MetadataDict(
        frames=frames, image_size=list(stored_wh), cameras=list(cameras), nuscenes_version=version
    )
    tfds.folder_dataset.write_metadata(
        data_dir=data_dir,
        features=features,
        split_infos=None,
        filename_template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
        metadata=metadata,
        check_data=False,
    )
    return data_dir


def synthetic_dataset(
    root: pathlib.Path,
    *,
    num_clips: int = 10,
    frames: int = 3,
    stored_wh=(320, 180),
    seed=0,
    **kwargs,
) -> pathlib.Path:
    clips = [make_clip(i, frames, stored_wh, seed) for i in range(num_clips)]
    return write_dataset(root, clips, frames=frames, stored_wh=stored_wh, **kwargs)

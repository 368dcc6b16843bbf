"""The record contract between data_prep.convert_nuscenes (writer) and mim4d_jax.data (reader).

One example is one key-frame clip: six cameras (order `CAMERAS`) x T frames, frame 0 the key
frame and frames 1..T-1 the previous camera sweeps (12 Hz), newest first. Matrices are float64,
timestamps int64 microseconds, LiDAR points a flat float32 tensor with a count.

Coordinate frames: `cam2ego` / `ego2global` / `lidar2ego` / `lidar_ego2global` are 4x4
homogeneous transforms as in nuScenes (camera x right, y down, z forward; LiDAR x right,
y forward, z up). `ego2global[c, t]` is the ego pose at camera c's own frame-t timestamp.

Versions: 1.0.0 has no 3D boxes; 1.1.0 adds the key frame's annotated boxes (`boxes/...`,
ragged: one entry per box) in the frame-0 volume frame (the key-frame LiDAR frame placed at
CAM_FRONT's ego pose at its frame-0 timestamp): `center` (x, y, z) metres, `size` the nuScenes
(width, length, height), `yaw` radians of the box's length axis from the volume +x axis,
counter-clockwise about +z.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

DATASET_NAME = "nuscenes_clips"
DATASET_VERSION = "1.1.0"  # the version the converter writes
BOX_FEATURES = (
    "boxes/category",
    "boxes/center",
    "boxes/size",
    "boxes/yaw",
    "boxes/num_lidar_pts",
    "boxes/visibility",
)
CAMERAS = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_FRONT_LEFT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT",
)
LIDAR_DIMS = 4  # x, y, z, intensity in the LiDAR frame


def clip_features(
    frames: int, image_hw: tuple[int, int], with_boxes: bool = False
) -> tfds.features.FeaturesDict:
    """Features of one clip with `frames` frames of `image_hw` = (H, W) JPEGs per camera.

    `with_boxes=True` is the current layout (DATASET_VERSION, what the converter writes);
    False is the 1.0.0 layout without boxes, which readers still accept.
    """
    num_cams = len(CAMERAS)
    i64 = np.int64

    def f64(shape: tuple[int | None, ...]) -> tfds.features.Tensor:
        # BYTES: the default encoding stores float64 as float32 (1e-4 m at global poses).
        return tfds.features.Tensor(
            shape=shape, dtype=np.float64, encoding=tfds.features.Encoding.BYTES
        )

    features = {
        "sample_token": tfds.features.Text(),
        "scene_name": tfds.features.Text(),
        "location": tfds.features.Text(),
        # (T, H, W, 3) JPEG frames per camera; bytes are passed through when not resized.
        "images": tfds.features.FeaturesDict(
            {
                cam: tfds.features.Video(shape=(frames, *image_hw, 3), encoding_format="jpeg")
                for cam in CAMERAS
            }
        ),
        "intrinsics": f64((num_cams, frames, 3, 3)),
        "cam2ego": f64((num_cams, frames, 4, 4)),
        "ego2global": f64((num_cams, frames, 4, 4)),
        "cam_timestamps": tfds.features.Tensor(shape=(num_cams, frames), dtype=i64),
        # False where history was short and the earliest frame is repeated.
        "frame_valid": tfds.features.Tensor(shape=(num_cams, frames), dtype=np.bool_),
        # Key-frame LIDAR_TOP points, flat (num_lidar_points * LIDAR_DIMS,).
        "lidar_points": tfds.features.Tensor(
            shape=(None,), dtype=np.float32, encoding=tfds.features.Encoding.BYTES
        ),
        "num_lidar_points": tfds.features.Tensor(shape=(), dtype=i64),
        "lidar2ego": f64((4, 4)),
        "lidar_ego2global": f64((4, 4)),
        "lidar_timestamp": tfds.features.Tensor(shape=(), dtype=i64),
    }
    if with_boxes:
        # One entry per annotated box of the key frame (B may be 0), in the frame-0 volume frame.
        features["boxes"] = tfds.features.FeaturesDict(
            {
                "category": tfds.features.Tensor(shape=(None,), dtype=np.str_),
                "center": f64((None, 3)),
                "size": f64((None, 3)),  # nuScenes wlh: width, length, height (m)
                "yaw": f64((None,)),
                "num_lidar_pts": tfds.features.Tensor(shape=(None,), dtype=i64),
                "visibility": tfds.features.Tensor(shape=(None,), dtype=i64),  # 1..4, 0: none
            }
        )
    return tfds.features.FeaturesDict(features)


# Stored with the dataset (DatasetInfo metadata) and checked by the reader against the config.
METADATA_KEYS = ("frames", "image_size", "cameras", "nuscenes_version")

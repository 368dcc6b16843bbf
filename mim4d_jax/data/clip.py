"""Parse one serialized clip (schema.clip_features) into NumPy, and decode/resize its JPEGs.

The records are read with the protobuf parser directly (no TF graph), so the per-example work
runs in plain worker threads: PIL decodes and resizes with the GIL released.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from tensorflow.core.example import example_pb2

from mim4d_jax.data import schema
from mim4d_jax.data.tfrecord import CorruptRecordError

_MATRIX_KEYS = {
    "intrinsics": (3, 3),
    "cam2ego": (4, 4),
    "ego2global": (4, 4),
}


def _values(feature_map, key: str, where: str):
    if key not in feature_map:
        raise CorruptRecordError(f"{where}: missing feature {key!r}")
    feature = feature_map[key]
    kind = feature.WhichOneof("kind")
    if kind is None:
        raise CorruptRecordError(f"{where}: feature {key!r} is empty")
    return getattr(feature, kind).value


def _float64s(feature_map, key: str, where: str) -> np.ndarray:
    """A float64 tensor stored with TFDS's BYTES encoding (raw little-endian bytes)."""
    values = _values(feature_map, key, where)
    if len(values) != 1 or not isinstance(values[0], bytes) or len(values[0]) % 8:
        raise CorruptRecordError(f"{where}: feature {key!r} is not a float64 byte string")
    return np.frombuffer(values[0], "<f8")


def parse_clip(
    serialized: bytes, stored_frames: int, cameras: tuple[str, ...], frames: int, where: str
) -> dict:
    """Camera-ordered (config order) arrays of one clip, the first `frames` frames.

    `clip["boxes"]` is `parse_boxes`'s dict, or None when the dataset has no box features.
    `where` names the shard and record index in every error message.
    """
    try:
        feature_map = example_pb2.Example.FromString(serialized).features.feature
    except Exception as err:  # protobuf raises DecodeError; the message lacks the location
        raise CorruptRecordError(f"{where}: not a tf.train.Example ({err})") from err
    cam_index = [schema.CAMERAS.index(cam) for cam in cameras]
    num_cams = len(schema.CAMERAS)
    clip: dict = {}
    for key, shape in _MATRIX_KEYS.items():
        values = _float64s(feature_map, key, where)
        full_shape = (num_cams, stored_frames, *shape)
        if values.size != np.prod(full_shape):
            raise CorruptRecordError(
                f"{where}: feature {key!r} has {values.size} values, expected shape {full_shape}"
            )
        clip[key] = values.reshape(full_shape)[cam_index, :frames]
    for key in ("lidar2ego", "lidar_ego2global"):
        values = _float64s(feature_map, key, where)
        if values.size != 16:
            raise CorruptRecordError(f"{where}: feature {key!r} has {values.size} values, not 16")
        clip[key] = values.reshape(4, 4)
    raw = _values(feature_map, "lidar_points", where)
    num_points = int(_values(feature_map, "num_lidar_points", where)[0])
    points = np.frombuffer(raw[0], np.float32) if len(raw) == 1 else np.zeros(0, np.float32)
    if points.size != num_points * schema.LIDAR_DIMS:
        raise CorruptRecordError(
            f"{where}: lidar_points has {points.size} floats, expected "
            f"num_lidar_points={num_points} x {schema.LIDAR_DIMS}"
        )
    clip["lidar_points"] = points.reshape(num_points, schema.LIDAR_DIMS)
    jpegs = []
    for cam in cameras:
        cam_jpegs = list(_values(feature_map, f"images/{cam}", where))
        if len(cam_jpegs) != stored_frames:
            raise CorruptRecordError(
                f"{where}: images/{cam} has {len(cam_jpegs)} frames, expected {stored_frames}"
            )
        jpegs.append(cam_jpegs[:frames])
    clip["jpegs"] = jpegs
    valid = np.asarray(_values(feature_map, "frame_valid", where), bool)
    if valid.size != num_cams * stored_frames:
        raise CorruptRecordError(
            f"{where}: frame_valid has {valid.size} values, expected {num_cams} x {stored_frames}"
        )
    clip["frame_valid"] = valid.reshape(num_cams, stored_frames)[cam_index, :frames]
    clip["sample_token"] = _values(feature_map, "sample_token", where)[0].decode()
    clip["boxes"] = parse_boxes(feature_map, where)
    return clip


def parse_boxes(feature_map, where: str) -> dict | None:
    """The key frame's 3D boxes (schema.BOX_FEATURES), or None for a dataset without them.

    Positions and angles are in the frame-0 volume frame: `center_b3` metres, `size_b3`
    (width, length, height), `yaw_b` radians of the length axis from +x, counter-clockwise.
    """
    present = [key for key in schema.BOX_FEATURES if key in feature_map]
    if not present:
        return None  # written before boxes were part of the schema (version 1.0.0)
    if len(present) != len(schema.BOX_FEATURES):
        missing = sorted(set(schema.BOX_FEATURES) - set(present))
        raise CorruptRecordError(f"{where}: box features {missing} missing (has {present})")

    def ragged(key: str) -> list:
        # An empty list is a clip without boxes; only a feature with no list at all is damage.
        feature = feature_map[key]
        kind = feature.WhichOneof("kind")
        return [] if kind is None else list(getattr(feature, kind).value)

    category = [value.decode() for value in ragged("boxes/category")]
    num_boxes = len(category)
    boxes = {"category": category}
    for key, width in (("center", 3), ("size", 3), ("yaw", 1)):
        values = ragged(f"boxes/{key}")
        data = b"".join(values) if len(values) <= 1 else None
        if data is None or len(data) != 8 * width * num_boxes:
            raise CorruptRecordError(
                f"{where}: feature 'boxes/{key}' does not hold {num_boxes} x {width} float64"
            )
        array = np.frombuffer(data, "<f8").astype(np.float64)
        boxes[f"{key}_b3" if width == 3 else f"{key}_b"] = (
            array.reshape(num_boxes, 3) if width == 3 else array
        )
    for key in ("num_lidar_pts", "visibility"):
        values = np.asarray(ragged(f"boxes/{key}"), np.int64)
        if values.size != num_boxes:
            raise CorruptRecordError(
                f"{where}: feature 'boxes/{key}' has {values.size} values for {num_boxes} boxes"
            )
        boxes[f"{key}_b"] = values
    return boxes


def decode_resize(
    jpeg: bytes, size_wh: tuple[int, int], where: str
) -> tuple[np.ndarray, tuple[int, int]]:
    """(H, W, 3) uint8 RGB at `size_wh`, and the stored (W, H).

    `draft` lets libjpeg decode at the largest 1/2^k scale still >= the target (1600x900 ->
    800x450 decodes at half size: about 4x less work); the rest is PIL's antialiased bilinear.
    """
    try:
        image = Image.open(io.BytesIO(jpeg))
        stored_wh = image.size
        image.draft("RGB", size_wh)
        image = image.convert("RGB")
        if image.size != tuple(size_wh):
            image = image.resize(tuple(size_wh), Image.Resampling.BILINEAR)
        return np.asarray(image), stored_wh
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise CorruptRecordError(f"{where}: undecodable JPEG ({err})") from err

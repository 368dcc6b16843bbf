"""The fast Example encoder decodes exactly like TFDS's own serializer."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest

from data_prep.convert.example_codec import ExampleEncoder, _varint
from mim4d_jax.data import schema


def _jpeg(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    PIL.Image.fromarray(rng.integers(0, 256, (9, 16, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _example(rng: np.random.Generator, frames: int, points: int) -> dict:
    n = len(schema.CAMERAS)
    return {
        "sample_token": "tok-é",
        "scene_name": "scene-0061",
        "location": "",
        "images": {cam: [_jpeg(rng) for _ in range(frames)] for cam in schema.CAMERAS},
        "intrinsics": rng.normal(size=(n, frames, 3, 3)) * 1e3,
        "cam2ego": rng.normal(size=(n, frames, 4, 4)),
        "ego2global": rng.normal(size=(n, frames, 4, 4)) * 1e3,
        "cam_timestamps": rng.integers(-(2**62), 2**62, size=(n, frames)),
        "frame_valid": rng.random((n, frames)) < 0.5,
        "lidar_points": rng.normal(size=points * schema.LIDAR_DIMS).astype(np.float32),
        "num_lidar_points": np.int64(points),
        "lidar2ego": rng.normal(size=(4, 4)),
        "lidar_ego2global": rng.normal(size=(4, 4)),
        "lidar_timestamp": np.int64(0),
    }


@pytest.mark.parametrize("frames,points", [(1, 0), (3, 17)])
def test_matches_tfds_serializer(frames, points):
    features = schema.clip_features(frames, (9, 16))
    example = _example(np.random.default_rng(frames), frames, points)
    ours = features.deserialize_example_np(ExampleEncoder(features).encode(example))
    theirs = features.deserialize_example_np(features.serialize_example(example))
    for key, value in theirs.items():
        if key == "images":
            for cam in schema.CAMERAS:
                assert np.asarray(ours[key][cam]).shape == (frames, 9, 16, 3)
                np.testing.assert_array_equal(ours[key][cam], value[cam], err_msg=cam)
        else:
            np.testing.assert_array_equal(ours[key], value, err_msg=key)


def test_images_and_varints_byte_exact():
    features = schema.clip_features(2, (9, 16))
    example = _example(np.random.default_rng(0), 2, 3)
    encoded = ExampleEncoder(features).encode(example)
    for cam in schema.CAMERAS:
        for jpeg in example["images"][cam]:
            assert jpeg in encoded
    assert _varint(300) == b"\xac\x02" and _varint(-1) == b"\xff" * 9 + b"\x01"


def test_rejects_wrong_shape():
    features = schema.clip_features(2, (9, 16))
    example = _example(np.random.default_rng(0), 2, 3)
    example["images"]["CAM_BACK"] = example["images"]["CAM_BACK"][:1]
    with pytest.raises(Exception, match="CAM_BACK"):
        ExampleEncoder(features).encode(example)


def test_bytes_encoded_float64_round_trips_exactly():
    """Ready for float64 matrices stored as raw bytes (exact), should the schema switch to it."""
    import tensorflow_datasets as tfds

    features = tfds.features.FeaturesDict(
        {
            "m": tfds.features.Tensor(
                shape=(2, 2), dtype=np.float64, encoding=tfds.features.Encoding.BYTES
            )
        }
    )
    value = np.array([[1266.417203046554, 1180.8903808593751], [1 / 3, -0.0]])
    decoded = features.deserialize_example_np(ExampleEncoder(features).encode({"m": value}))
    np.testing.assert_array_equal(decoded["m"], value)

"""Shared helpers of the converter tests: read a converted dataset back with TFDS alone."""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow_datasets as tfds
from pyquaternion import Quaternion

from mim4d_jax.data import schema


def read_records(version_dir: pathlib.Path, split: str, decode_images: bool = False) -> list[dict]:
    """All examples of `split` in file order; images stay JPEG bytes unless decode_images."""
    builder = tfds.builder_from_directory(str(version_dir))
    decoders = None
    if not decode_images:
        decoders = {"images": {cam: tfds.decode.SkipDecoding() for cam in schema.CAMERAS}}
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
    return list(tfds.as_numpy(ds))


def assert_records_equal(left: list[dict], right: list[dict]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right):
        _assert_features_equal(a, b, "")


def _assert_features_equal(a: dict, b: dict, prefix: str) -> None:
    assert a.keys() == b.keys(), prefix
    for key in a:
        if key == "images":
            for cam in schema.CAMERAS:
                assert list(a[key][cam]) == list(b[key][cam]), (key, cam)
        elif isinstance(a[key], dict):  # nested features such as boxes/...
            _assert_features_equal(a[key], b[key], f"{prefix}{key}/")
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=prefix + key)


def pose_matrix(record: dict) -> np.ndarray:
    """4x4 of a nuScenes calibrated_sensor / ego_pose record (rotation w, x, y, z)."""
    out = np.eye(4)
    out[:3, :3] = Quaternion(record["rotation"]).rotation_matrix
    out[:3, 3] = record["translation"]
    return out

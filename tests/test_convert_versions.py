"""Dataset versions: 1.1.0 (with boxes, what the converter writes) and 1.0.0 (no boxes) both read;
the newest version directory wins; box features that are partly missing are damage."""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow.core.example import example_pb2

from configs import mim4d_tiny
from data_prep.convert_nuscenes import convert
from data_prep.real_sample import build_real_sample_dataset
from mim4d_jax.data import schema
from mim4d_jax.data.clip import parse_clip
from mim4d_jax.data.reader import (
    ClipReader,
    dataset_has_boxes,
    open_dataset_dir,
    require_boxes,
)
from mim4d_jax.data.tfrecord import CorruptRecordError
from tests import data_fixtures


def _config(data_dir):
    config = mim4d_tiny.get_config("test")
    config.data.dir, config.data.frames = str(data_dir), 1
    return config


def test_old_dataset_reads_without_boxes_and_a_new_one_beside_it_wins(real_sample_dir, tmp_path):
    old_dir = data_fixtures.synthetic_dataset(
        tmp_path, num_clips=2, frames=2, stored_wh=(64, 36), num_shards=1
    )
    assert old_dir.name == "1.0.0" and not dataset_has_boxes(str(tmp_path))
    reader = ClipReader(_config(tmp_path), "train")
    clip, _ = reader.read_clip(0)
    assert not reader.has_boxes and clip["boxes"] is None and clip["jpegs"]
    with pytest.raises(ValueError, match=f"{old_dir}.*no 3D boxes: re-convert"):
        require_boxes(str(tmp_path))

    dataroot = build_real_sample_dataset(real_sample_dir, tmp_path / "nusc")
    convert(dataroot, "v1.0-mini", tmp_path, frames=2)  # the same out dir: 1.1.0 beside 1.0.0
    builder = open_dataset_dir(str(tmp_path))
    assert str(builder.data_dir).endswith(f"{schema.DATASET_NAME}/{schema.DATASET_VERSION}")
    assert dataset_has_boxes(builder) and dataset_has_boxes(str(tmp_path / schema.DATASET_NAME))
    require_boxes(builder)
    clip, _ = ClipReader(_config(tmp_path), "train").read_clip(0)
    assert len(clip["boxes"]["category"]) == 69
    # The old version stays readable when named directly.
    clip, _ = ClipReader(_config(old_dir), "train").read_clip(0)
    assert clip["boxes"] is None


def _record_with_boxes(num_boxes: int) -> tuple[bytes, dict]:
    raw = data_fixtures.make_clip(0, 1, (32, 18), seed=0)
    rng = np.random.default_rng(0)
    raw["boxes"] = {
        "category": ["vehicle.car"] * num_boxes,
        "center": rng.normal(size=(num_boxes, 3)),
        "size": rng.uniform(1, 4, (num_boxes, 3)),
        "yaw": rng.uniform(-3, 3, num_boxes),
        "num_lidar_pts": np.arange(num_boxes, dtype=np.int64),
        "visibility": np.full(num_boxes, 4, np.int64),
    }
    features = schema.clip_features(1, (18, 32), with_boxes=True)
    return features.serialize_example(raw), raw["boxes"]


def test_boxes_parse_exactly_also_when_there_are_none():
    for num_boxes in (3, 0):
        serialized, boxes = _record_with_boxes(num_boxes)
        parsed = parse_clip(serialized, 1, schema.CAMERAS, 1, "t")["boxes"]
        assert parsed["category"] == boxes["category"]
        np.testing.assert_array_equal(parsed["center_b3"], boxes["center"].reshape(-1, 3))
        np.testing.assert_array_equal(parsed["size_b3"], boxes["size"].reshape(-1, 3))
        np.testing.assert_array_equal(parsed["yaw_b"], boxes["yaw"])
        assert parsed["center_b3"].dtype == np.float64 and parsed["yaw_b"].shape == (num_boxes,)
        np.testing.assert_array_equal(parsed["num_lidar_pts_b"], boxes["num_lidar_pts"])
        np.testing.assert_array_equal(parsed["visibility_b"], boxes["visibility"])


@pytest.mark.parametrize("damage", ["drop_yaw", "short_center", "extra_visibility"])
def test_damaged_box_features_are_errors_naming_the_record(damage):
    serialized, _ = _record_with_boxes(3)
    example = example_pb2.Example.FromString(serialized)
    feature = example.features.feature
    if damage == "drop_yaw":
        del feature["boxes/yaw"]
    elif damage == "short_center":
        feature["boxes/center"].bytes_list.value[0] = feature["boxes/center"].bytes_list.value[0][
            :-8
        ]
    else:
        feature["boxes/visibility"].int64_list.value.append(1)
    with pytest.raises(CorruptRecordError, match="record 7 of shard s.*boxes"):
        parse_clip(example.SerializeToString(), 1, schema.CAMERAS, 1, "record 7 of shard s")

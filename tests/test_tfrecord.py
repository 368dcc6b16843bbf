"""Record checksums (CRC32C of lengths and data) and the geometry plausibility checks."""

from __future__ import annotations

import os
import re

import data_fixtures
import numpy as np
import pytest
import tensorflow as tf

from configs import mim4d_tiny
from mim4d_jax.data import tfrecord, validate
from mim4d_jax.data.example import make_example_u8
from mim4d_jax.data.reader import ClipReader
from mim4d_jax.data.tfrecord import CorruptRecordError, RecordFile
from mim4d_jax.user_errors import BadInputError

# CRC32C check values: the "123456789" check of the Castagnoli CRC, and RFC 3720 B.4.
KNOWN = [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
]


@pytest.mark.parametrize("data, expected", KNOWN)
def test_crc32c_known_vectors_in_every_implementation(data: bytes, expected: int) -> None:
    assert tfrecord.crc32c_python(data) == expected
    assert tfrecord._crc32c_numpy(data) == expected
    assert tfrecord.crc32c(data) == expected


def test_numpy_and_compiled_crc_agree_across_chunk_boundaries() -> None:
    rng = np.random.default_rng(0)
    lane = tfrecord._LANE_BYTES
    for size in (65, lane - 1, lane, 2 * lane - 1, 2 * lane, 2 * lane + 1, 7 * lane + 13, 300_000):
        data = rng.integers(0, 256, size, np.uint8).tobytes()
        want = tfrecord.crc32c_python(data)
        assert tfrecord._crc32c_numpy(data) == want, size
        assert tfrecord._crc32c_fast(data) == want, size
    assert tfrecord.CRC32C_IMPLEMENTATION in ("google_crc32c", "numpy")


def _write(path, records: list[bytes]) -> None:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)


def _record_start(blob: bytes, index: int) -> int:
    pos = 0
    for _ in range(index):
        pos += 12 + int.from_bytes(blob[pos : pos + 8], "little") + 4
    return pos


def test_tensorflow_records_read_back_and_a_flipped_data_byte_is_named(tmp_path) -> None:
    records = [os.urandom(n) for n in (10, 5000, 70_000, 3)]
    path = tmp_path / "shard.tfrecord"
    _write(path, records)
    shard = RecordFile(str(path))
    assert [shard.read(i) for i in range(len(shard))] == records
    shard.close()

    blob = bytearray(path.read_bytes())
    middle = _record_start(blob, 2) + 12 + 35_000  # one byte in the middle of record 2's data
    blob[middle] ^= 0x01
    path.write_bytes(bytes(blob))
    shard = RecordFile(str(path))  # the headers are intact: indexing succeeds
    assert shard.read(1) == records[1] and shard.read(3) == records[3]
    with pytest.raises(
        CorruptRecordError, match=f"data checksum mismatch in record 2 of shard {path}"
    ):
        shard.read(2)
    shard.close()
    assert issubclass(CorruptRecordError, BadInputError)


def test_a_flipped_footer_byte_is_named(tmp_path) -> None:
    path = tmp_path / "shard.tfrecord"
    _write(path, [b"a" * 100, b"b" * 100])
    blob = bytearray(path.read_bytes())
    blob[_record_start(blob, 1) - 1] ^= 0x80  # last byte of record 0's data CRC
    path.write_bytes(bytes(blob))
    shard = RecordFile(str(path))
    with pytest.raises(CorruptRecordError, match="record 0 of shard"):
        shard.read(0)
    assert shard.read(1) == b"b" * 100


def _dataset(tmp_path, clips):
    data_dir = data_fixtures.write_dataset(
        tmp_path, clips, frames=3, stored_wh=(320, 180), num_shards=1
    )
    config = mim4d_tiny.get_config("test")
    config.data.dir = str(tmp_path)
    return config, next(data_dir.glob("*.tfrecord-00000-of-00001"))


def _clips(count: int) -> list[dict]:
    return [data_fixtures.make_clip(i, 3, (320, 180), seed=0) for i in range(count)]


@pytest.mark.parametrize(
    "key, edit, message",
    [
        ("lidar2ego", lambda m: m.__setitem__((0, 3), 1.7e308), "translation"),
        ("lidar2ego", lambda m: m.__setitem__((1, 1), np.nan), "non-finite entry nan"),
        ("lidar_ego2global", lambda m: m.__setitem__((0, 0), 2.0), "not a rotation"),
        ("cam2ego", lambda m: m.__setitem__((1, 2, 3, 0), 0.5), r"\[camera 1, frame 2\].*last row"),
        ("intrinsics", lambda m: m.__setitem__((4, 0, 1, 1), -800.0), r"camera 4, frame 0"),
        ("ego2global", lambda m: m.__setitem__((0, 1, 0, 3), 3e5), "translation"),
    ],
)
def test_implausible_geometry_names_record_and_key(tmp_path, key, edit, message) -> None:
    clips = _clips(2)
    value = np.array(clips[1][key], np.float64)
    edit(value)
    clips[1][key] = value
    config, shard = _dataset(tmp_path, clips)
    reader = ClipReader(config, "train")
    clip, where = reader.read_clip(0)
    make_example_u8(clip, config, seed=0, position=0, where=where)  # the intact clip passes
    clip, where = reader.read_clip(1)
    with pytest.raises(CorruptRecordError, match=f"record 1 of shard {shard}: feature '{key}'"):
        try:
            make_example_u8(clip, config, seed=0, position=1, where=where)
        except CorruptRecordError as error:
            assert re.search(message, str(error)), error
            raise
    reader.close()


def test_non_finite_and_far_lidar_points_are_named() -> None:
    points = np.zeros((5, 5), np.float32)
    points[3, 1] = np.inf
    with pytest.raises(CorruptRecordError, match="rec: feature 'lidar_points' point 3"):
        validate.check_points(points, "rec")
    points[3, 1] = 2e4
    with pytest.raises(CorruptRecordError, match="point 3 .* 10000 m or more"):
        validate.check_points(points, "rec")

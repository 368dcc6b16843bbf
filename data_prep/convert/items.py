"""Compact, picklable work items passed from the planner to devkit-free shard writers."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from mim4d_jax.data import schema
from mim4d_jax.user_errors import ConfigError, UserError

ON_ERROR_CHOICES = ("fail", "skip")


class ConversionError(UserError, RuntimeError):
    """Bad input or an inconsistent output directory; the message names the file/token/value.

    A `UserError`: command-line runs print it as one line and a hint, not a traceback.
    """

    default_hint = (
        "repair or remove the named file/record (--on-error skip drops a bad clip and lists "
        "it in conversion_stats.json)"
    )


class RequestError(ConfigError):
    """A conversion option outside its allowed range; the message names the flag and value."""

    default_hint = "see `python -m data_prep.convert_nuscenes --help` and docs/converting.md"


@dataclasses.dataclass(frozen=True)
class ClipItem:
    """Everything a writer needs for one key-frame clip, paths relative to the dataroot."""

    sample_token: str
    scene_name: str
    location: str
    image_paths: tuple[tuple[str, ...], ...]  # [camera][frame], frame 0 = key frame
    source_hw: tuple[int, int]  # (H, W) of the source JPEGs, from the sample_data table
    frame_valid_nt: np.ndarray  # bool (N, T)
    intrinsics_nt33: np.ndarray  # float64, of the source image size
    cam2ego_nt44: np.ndarray
    ego2global_nt44: np.ndarray
    cam_timestamps_nt: np.ndarray  # int64 us
    lidar_path: str
    lidar2ego_44: np.ndarray
    lidar_ego2global_44: np.ndarray
    lidar_timestamp: int
    # The key frame's annotated boxes in the frame-0 volume frame (schema "boxes/..."), B >= 0.
    box_category: tuple[str, ...] = ()
    box_center_b3: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 3)))
    box_size_b3: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 3)))
    box_yaw_b: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    box_num_lidar_pts_b: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.int64)
    )
    box_visibility_b: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    def fingerprint(self) -> str:
        """Stable hash of the item's content (decides whether a stored shard is still valid)."""
        digest = hashlib.sha256()
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray):
                digest.update(
                    value.dtype.str.encode() + str(value.shape).encode() + value.tobytes()
                )
            else:
                digest.update(json.dumps(value).encode())
        return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """Options that change the written bytes; part of every shard's fingerprint."""

    frames: int
    image_hw: tuple[int, int]  # stored (H, W)
    resize: bool  # False: JPEG bytes passed through untouched
    on_error: str
    nuscenes_version: str
    # Decode every pass-through JPEG to find truncated scans (resized images always are).
    verify_jpeg: bool = False


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """One output file: whole scenes of one split."""

    split: str
    index: int
    num_shards: int
    dataroot: str
    version_dir: str  # the dataset version directory shards are written into
    items: tuple[ClipItem, ...]
    options: ConvertOptions

    @property
    def filename(self) -> str:
        return (
            f"{schema.DATASET_NAME}-{self.split}.tfrecord-{self.index:05d}-of-{self.num_shards:05d}"
        )

    def fingerprint(self) -> str:
        digest = hashlib.sha256(json.dumps(dataclasses.asdict(self.options)).encode())
        digest.update(self.filename.encode())
        for item in self.items:
            digest.update(item.fingerprint().encode())
        return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class ShardResult:
    """What a writer reports back; also stored as the shard's manifest for --resume."""

    split: str
    index: int
    filename: str
    fingerprint: str
    num_examples: int
    num_bytes: int
    skipped: tuple[tuple[str, str], ...]  # (sample_token, reason)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ShardResult:
        data = dict(data)
        data["skipped"] = tuple(tuple(pair) for pair in data["skipped"])
        return cls(**data)

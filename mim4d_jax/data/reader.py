"""The converted dataset on disk: resolve its directory, check it against the config, and read
any clip by its index in a split (shards in file order, records in shard order)."""

from __future__ import annotations

import bisect

import tensorflow as tf
import tensorflow_datasets as tfds

from mim4d_jax.data import schema
from mim4d_jax.data.clip import parse_clip
from mim4d_jax.data.tfrecord import RecordFile
from mim4d_jax.user_errors import ConfigError, DatasetError, MissingInputError


def open_dataset_dir(data_dir: str) -> tfds.core.DatasetBuilder:
    """The TFDS builder of the dataset the converter wrote.

    Accepts the version directory itself (holding dataset_info.json), the converter's out_dir
    (holding `schema.DATASET_NAME/<version>/`), or the `schema.DATASET_NAME` directory; with
    several versions the newest is used.
    """
    if not data_dir:
        raise ConfigError("data.dir is empty: set it to the converter's --out directory")
    if not tf.io.gfile.isdir(data_dir):
        raise MissingInputError(f"dataset directory {data_dir!r} (data.dir) does not exist")
    candidates = [data_dir.rstrip("/")]
    for base in (f"{data_dir.rstrip('/')}/{schema.DATASET_NAME}", data_dir.rstrip("/")):
        if tf.io.gfile.isdir(base):
            versions = [v.rstrip("/") for v in tf.io.gfile.listdir(base)]
            versions = [v for v in versions if _is_version(v)]
            candidates += [f"{base}/{v}" for v in sorted(versions, key=_version_key, reverse=True)]
    for path in candidates:
        if tf.io.gfile.exists(f"{path}/dataset_info.json"):
            return tfds.builder_from_directory(path)
    raise MissingInputError(
        f"no dataset_info.json in {data_dir!r} or {data_dir}/{schema.DATASET_NAME}/<version>/: "
        "is data.dir the output of data_prep.convert_nuscenes?"
    )


def _is_version(name: str) -> bool:
    parts = name.split(".")
    return len(parts) == 3 and all(p.isdigit() for p in parts)


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split("."))


def dataset_has_boxes(builder_or_dir: tfds.core.DatasetBuilder | str) -> bool:
    """Whether the dataset's records carry the key frame's 3D boxes (schema.BOX_FEATURES,
    written from version 1.1.0 on). Accepts a builder or any directory `open_dataset_dir` does."""
    builder = (
        open_dataset_dir(str(builder_or_dir))
        if not isinstance(builder_or_dir, tfds.core.DatasetBuilder)
        else builder_or_dir
    )
    return "boxes" in builder.info.features


def require_boxes(builder_or_dir: tfds.core.DatasetBuilder | str) -> None:
    """Raises ValueError naming the dataset when it has no 3D boxes (a pre-1.1.0 conversion)."""
    builder = (
        open_dataset_dir(str(builder_or_dir))
        if not isinstance(builder_or_dir, tfds.core.DatasetBuilder)
        else builder_or_dir
    )
    if not dataset_has_boxes(builder):
        raise DatasetError(
            f"dataset {builder.data_dir} (version {builder.info.version}) has no 3D boxes: "
            f"re-convert it with data_prep.convert_nuscenes (version >= {schema.DATASET_VERSION})"
        )


def check_metadata(builder: tfds.core.DatasetBuilder, config) -> dict:
    """The dataset's metadata, after checking it can feed `config.data` (clear errors if not).

    Stored images of another size are fine (they are resized); fewer frames than data.frames
    or a different camera set are not.
    """
    where = f"dataset {builder.data_dir}"
    metadata = dict(builder.info.metadata or {})
    missing = [k for k in schema.METADATA_KEYS if k not in metadata]
    if missing:
        raise DatasetError(f"{where}: metadata lacks {missing} (expected {schema.METADATA_KEYS})")
    frames = int(metadata["frames"])
    if frames < config.data.frames:
        raise ConfigError(
            f"{where} has frames={frames} per clip, fewer than data.frames={config.data.frames}"
        )
    stored = tuple(metadata["cameras"])
    if set(stored) != set(config.data.cameras) or len(stored) != len(config.data.cameras):
        raise ConfigError(
            f"{where} has cameras {stored}, data.cameras is {tuple(config.data.cameras)}"
        )
    if stored != schema.CAMERAS:
        raise DatasetError(f"{where}: metadata cameras {stored} differ from schema.CAMERAS order")
    size = metadata["image_size"]
    if len(size) != 2 or min(int(v) for v in size) <= 0:
        raise DatasetError(f"{where}: metadata image_size {size} is not a positive [W, H]")
    return metadata


class ClipReader:
    """Random access to the clips of one split; thread safe."""

    def __init__(self, config, split: str, builder: tfds.core.DatasetBuilder | None = None):
        builder = builder or open_dataset_dir(config.data.dir)
        self.metadata = check_metadata(builder, config)
        if split not in builder.info.splits:
            raise ConfigError(
                f"split {split!r} not in dataset {builder.data_dir} "
                f"(has {sorted(builder.info.splits.keys())})"
            )
        split_info = builder.info.splits[split]
        self.paths = [str(p) for p in split_info.filepaths]
        missing = [p for p in self.paths if not tf.io.gfile.exists(p)]
        if missing:
            raise MissingInputError(
                f"split {split!r} of dataset {builder.data_dir}: shard files missing: {missing}",
                hint=DatasetError.default_hint,
            )
        self.files = [RecordFile(p) for p in self.paths]
        for path, file, expected in zip(self.paths, self.files, split_info.shard_lengths):
            if len(file) != expected:
                raise DatasetError(
                    f"shard {path} has {len(file)} records, dataset_info says {expected}"
                )
        self._starts = [0]
        for file in self.files:
            self._starts.append(self._starts[-1] + len(file))
        if len(self) == 0:
            raise DatasetError(f"split {split!r} of dataset {builder.data_dir} is empty")
        # Datasets converted before version 1.1.0 have no boxes: clips then carry boxes=None.
        self.has_boxes = dataset_has_boxes(builder)
        self._stored_frames = int(self.metadata["frames"])
        self._cameras = tuple(config.data.cameras)
        self._frames = int(config.data.frames)

    def __len__(self) -> int:
        return self._starts[-1]

    def read_clip(self, index: int) -> tuple[dict, str]:
        """The parsed clip and a 'record i of shard f' description for error messages."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} outside the split's {len(self)} clips")
        shard = bisect.bisect_right(self._starts, index) - 1
        record = index - self._starts[shard]
        where = f"record {record} of shard {self.paths[shard]}"
        serialized = self.files[shard].read(record)
        return parse_clip(
            serialized, self._stored_frames, self._cameras, self._frames, where
        ), where

    def close(self) -> None:
        for file in self.files:
            file.close()

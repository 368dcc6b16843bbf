"""Output layout and TFDS metadata, written last so a failed run never looks complete.

Layout: `out_dir/nuscenes_clips/<schema.DATASET_VERSION>/` (`dataset_dir(out_dir)`) holds the
shards, the TFDS metadata (`features.json`, `metadata.json`, then `dataset_info.json`) and
`conversion_stats.json`. `tfds.builder_from_directory(dataset_dir(out_dir))` reads it with no
project code; the input pipeline opens the same directory.
"""

from __future__ import annotations

import json
import pathlib

import tensorflow_datasets as tfds
from etils import epath

from data_prep.convert.items import ConvertOptions, ShardResult
from mim4d_jax.data import schema

# 1.1.0 added the key frame's 3D boxes; readers still open 1.0.0 datasets (boxes=None).
VERSION = schema.DATASET_VERSION
STATS_FILE = "conversion_stats.json"


def dataset_dir(out_dir: str | pathlib.Path) -> epath.Path:
    """The directory `tfds.builder_from_directory` and the input pipeline open."""
    return epath.Path(out_dir) / schema.DATASET_NAME / VERSION


def dataset_metadata(options: ConvertOptions) -> dict:
    """DatasetInfo metadata (schema.METADATA_KEYS): image_size is [W, H]."""
    return {
        "frames": options.frames,
        "image_size": [options.image_hw[1], options.image_hw[0]],
        "cameras": list(schema.CAMERAS),
        "nuscenes_version": options.nuscenes_version,
    }


def is_finalised(version_dir: epath.Path) -> bool:
    return (version_dir / STATS_FILE).exists() and (version_dir / "dataset_info.json").exists()


def read_stats(version_dir: epath.Path) -> dict:
    return json.loads((version_dir / STATS_FILE).read_text())


def finalise(
    version_dir: epath.Path, options: ConvertOptions, results: list[ShardResult], stats: dict
) -> None:
    """Writes the TFDS metadata (dataset_info.json last) and then the stats file.

    Every shard is listed, also those whose clips were all skipped (0 examples).
    """
    split_infos = []
    for split in sorted({r.split for r in results}):
        shards = sorted((r for r in results if r.split == split), key=lambda r: r.index)
        split_infos.append(
            tfds.core.SplitInfo(
                name=split,
                shard_lengths=[r.num_examples for r in shards],
                num_bytes=sum(r.num_bytes for r in shards),
            )
        )
    tfds.folder_dataset.write_metadata(
        data_dir=version_dir,
        features=schema.clip_features(options.frames, options.image_hw, with_boxes=True),
        split_infos=split_infos,
        version=VERSION,
        check_data=False,
        description="nuScenes key-frame clips for MIM4D pre-training (data_prep.convert_nuscenes).",
        metadata=tfds.core.MetadataDict(dataset_metadata(options)),
    )
    (version_dir / STATS_FILE).write_text(json.dumps(stats, indent=1))

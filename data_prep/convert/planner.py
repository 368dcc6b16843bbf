"""The planner: loads the nuScenes devkit once and emits compact, devkit-free work items.

Splits come from the official scene lists (`train`/`val`, or `mini_train`/`mini_val` for
v1.0-mini) or from a scene-list JSON file {"train": [...], "val": [...]}. Output shards hold
whole scenes, contiguous in scene-name order, balanced by clip count.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
from collections.abc import Callable

import numpy as np
from nuscenes.nuscenes import NuScenes
from nuscenes.utils import splits as nusc_splits
from nuscenes.utils.geometry_utils import transform_matrix
from pyquaternion import Quaternion

from data_prep.convert.items import ClipItem, ConversionError
from data_prep.nuscenes_tables import NUSCENES_TABLES
from mim4d_jax.data.schema import CAMERAS
from mim4d_jax.geometry.poses import vol2global

SPLITS = ("train", "val")
TARGET_SHARD_BYTES = 256 * 2**20
HOST_MULTIPLE = 8  # shard counts are multiples of 8 so 1, 2, 4 or 8 hosts own whole files
_OFFICIAL = {
    "v1.0-mini": {"train": nusc_splits.mini_train, "val": nusc_splits.mini_val},
    "v1.0-trainval": {"train": nusc_splits.train, "val": nusc_splits.val},
}


def load_nuscenes(dataroot: str | pathlib.Path, version: str) -> NuScenes:
    """Loads the devkit; its bare KeyError/FileNotFoundError become errors naming the input."""
    table_dir = pathlib.Path(dataroot) / version
    for table in NUSCENES_TABLES:
        if not (table_dir / f"{table}.json").is_file():
            raise ConversionError(f"missing nuScenes table {table_dir / f'{table}.json'}")
    try:
        return NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    except KeyError as err:
        raise ConversionError(
            f"{table_dir}: dangling token {err} while indexing the tables"
        ) from err
    except ValueError as err:  # JSONDecodeError / UnicodeDecodeError: the devkit names no file
        raise _unreadable_table(table_dir, err) from err


def _unreadable_table(table_dir: pathlib.Path, err: ValueError) -> ConversionError:
    """The error naming the table the devkit could not parse (found by parsing each again;
    this runs only after a failure, so a good dataset is parsed once)."""
    for table in NUSCENES_TABLES:
        path = table_dir / f"{table}.json"
        try:
            records = json.loads(path.read_bytes())
        except ValueError as table_err:
            return ConversionError(
                f"unreadable nuScenes table {path}: {table_err} (half written or not JSON?)",
                hint="restore the named table from the nuScenes download",
            )
        if not isinstance(records, list):
            return ConversionError(f"nuScenes table {path}: expected a JSON list of records")
    return ConversionError(f"{table_dir}: the devkit could not load the tables: {err}")


def scene_splits(
    nusc: NuScenes, version: str, scene_list: str | pathlib.Path | None
) -> dict[str, list[str]]:
    """Split name -> sorted scene names present in the dataset.

    Official lists: a dataset scene in no list is an error. A scene-list file replaces the
    official lists; dataset scenes it does not name are left out (logged).
    """
    if scene_list is not None:
        try:
            lists = json.loads(pathlib.Path(scene_list).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConversionError(f"cannot read scene list {scene_list}: {err}") from err
        if not isinstance(lists, dict) or set(lists) - set(SPLITS):
            raise ConversionError(
                f"scene list {scene_list}: expected a JSON object with keys {SPLITS}"
            )
    elif version in _OFFICIAL:
        lists = _OFFICIAL[version]
    else:
        raise ConversionError(
            f"no official scene lists for version {version!r}; pass a scene-list file"
        )
    names = {scene["name"] for scene in nusc.scene}
    owner: dict[str, str] = {}
    for split, listed in lists.items():
        for name in listed:
            if name in owner:
                raise ConversionError(f"scene {name!r} is in both {owner[name]!r} and {split!r}")
            owner[name] = split
    unlisted = sorted(names - set(owner))
    if unlisted and scene_list is None:
        raise ConversionError(
            f"scenes {unlisted[:5]} ({len(unlisted)} in all) are in no official {version} split; "
            "pass --scene-list FILE"
        )
    if unlisted:
        logging.info(
            "scene list %s leaves out %d scenes: %s", scene_list, len(unlisted), unlisted[:5]
        )
    return {split: sorted(n for n in names if owner.get(n) == split) for split in SPLITS}


class _Lookup:
    """`nusc.get` whose errors name the dangling token and who referenced it."""

    def __init__(self, nusc: NuScenes):
        self.nusc = nusc

    def __call__(self, table: str, token: str, referrer: str) -> dict:
        try:
            return self.nusc.get(table, token)
        except KeyError:
            raise ConversionError(
                f"dangling token {token!r}: no {table} record (referenced by {referrer})"
            ) from None


def _pose(record: dict) -> np.ndarray:
    return transform_matrix(record["translation"], Quaternion(record["rotation"]))


def _visibility_level(token: str, annotation: str) -> int:
    """nuScenes visibility tokens are "1".."4" (0-40 % .. 80-100 % visible); "" (not
    recorded, e.g. boxes rebuilt from detection infos) is stored as 0."""
    if token == "":
        return 0
    if token not in ("1", "2", "3", "4"):
        raise ConversionError(
            f"sample_annotation {annotation}: visibility_token {token!r} is not one of "
            "'1'..'4' (or '' for not recorded)"
        )
    return int(token)


def plan_boxes(
    nusc: NuScenes, sample: dict, global2vol_44: np.ndarray
) -> dict[str, np.ndarray | tuple[str, ...]]:
    """The sample's annotated boxes (ClipItem box_* fields) in the frame-0 volume frame.

    Centres and the length axis are mapped from global coordinates; the yaw is the angle of
    the mapped length axis (box x) in the volume's x-y plane.
    """
    get = _Lookup(nusc)
    categories, centers, sizes, yaws, points, visibility = [], [], [], [], [], []
    for token in sample["anns"]:
        ann = get("sample_annotation", token, f"sample {sample['token']}")
        instance = get("instance", ann["instance_token"], f"sample_annotation {token}")
        category = get("category", instance["category_token"], f"instance {instance['token']}")
        size_3 = np.asarray(ann["size"], np.float64)
        center_3 = np.asarray(ann["translation"], np.float64)
        if size_3.shape != (3,) or not np.all(np.isfinite(size_3)) or np.any(size_3 <= 0):
            raise ConversionError(f"sample_annotation {token}: size {ann['size']} is not 3 > 0")
        if center_3.shape != (3,) or not np.all(np.isfinite(center_3)):
            raise ConversionError(f"sample_annotation {token}: translation {ann['translation']}")
        box2global_33 = Quaternion(ann["rotation"]).rotation_matrix
        length_axis_3 = global2vol_44[:3, :3] @ box2global_33[:, 0]
        categories.append(category["name"])
        centers.append(global2vol_44[:3, :3] @ center_3 + global2vol_44[:3, 3])
        sizes.append(size_3)
        yaws.append(np.arctan2(length_axis_3[1], length_axis_3[0]))
        points.append(int(ann["num_lidar_pts"]))
        visibility.append(_visibility_level(ann["visibility_token"], token))
    return {
        "box_category": tuple(categories),
        "box_center_b3": np.asarray(centers, np.float64).reshape(-1, 3),
        "box_size_b3": np.asarray(sizes, np.float64).reshape(-1, 3),
        "box_yaw_b": np.asarray(yaws, np.float64).reshape(-1),
        "box_num_lidar_pts_b": np.asarray(points, np.int64).reshape(-1),
        "box_visibility_b": np.asarray(visibility, np.int64).reshape(-1),
    }


def plan_clip(
    nusc: NuScenes,
    sample_token: str,
    frames: int,
    location: str,
    scene_name: str,
    scene_token: str | None = None,
) -> ClipItem:
    """One clip: the key frame and the frames-1 previous camera sweeps of each camera, and the
    key frame's boxes. With `scene_token`, the sample must belong to that scene."""
    get = _Lookup(nusc)
    sample = get("sample", sample_token, f"scene {scene_name}")
    owner = get("scene", sample["scene_token"], f"sample {sample_token}.scene_token")
    if scene_token is not None and owner["token"] != scene_token:
        raise ConversionError(
            f"sample {sample_token}: scene_token {owner['token']!r} ({owner['name']}) but it is "
            f"in the sample chain of {scene_name}"
        )
    paths, valid, intrinsics, cam2ego, ego2global, stamps, sizes = [], [], [], [], [], [], set()
    for cam in CAMERAS:
        if cam not in sample["data"]:
            raise ConversionError(f"sample {sample_token}: no {cam} key frame")
        chain = [get("sample_data", sample["data"][cam], f"sample {sample_token}")]
        while len(chain) < frames and chain[-1]["prev"]:
            chain.append(
                get("sample_data", chain[-1]["prev"], f"sample_data {chain[-1]['token']}.prev")
            )
        # Short history: repeat the earliest frame, flagged invalid.
        valid.append([True] * len(chain) + [False] * (frames - len(chain)))
        chain += [chain[-1]] * (frames - len(chain))
        paths.append(tuple(sd["filename"] for sd in chain))
        cal = [
            get("calibrated_sensor", sd["calibrated_sensor_token"], f"sample_data {sd['token']}")
            for sd in chain
        ]
        poses = [
            get("ego_pose", sd["ego_pose_token"], f"sample_data {sd['token']}") for sd in chain
        ]
        intrinsics.append([np.asarray(c["camera_intrinsic"], np.float64) for c in cal])
        cam2ego.append([_pose(c) for c in cal])
        ego2global.append([_pose(p) for p in poses])
        stamps.append([sd["timestamp"] for sd in chain])
        sizes.update((sd["height"], sd["width"]) for sd in chain)
    if len(sizes) != 1:
        raise ConversionError(
            f"sample {sample_token}: cameras have different image sizes {sorted(sizes)}"
        )
    if "LIDAR_TOP" not in sample["data"]:
        raise ConversionError(f"sample {sample_token}: no LIDAR_TOP key frame")
    lidar = get("sample_data", sample["data"]["LIDAR_TOP"], f"sample {sample_token}")
    lidar_cal = get(
        "calibrated_sensor", lidar["calibrated_sensor_token"], f"sample_data {lidar['token']}"
    )
    lidar_pose = get("ego_pose", lidar["ego_pose_token"], f"sample_data {lidar['token']}")
    ego2global_nt44 = np.asarray(ego2global, np.float64)
    front = CAMERAS.index("CAM_FRONT")
    global2vol_44 = np.linalg.inv(vol2global(ego2global_nt44, _pose(lidar_cal), front)[0])
    return ClipItem(
        sample_token=sample_token,
        scene_name=scene_name,
        location=location,
        image_paths=tuple(paths),
        source_hw=sizes.pop(),
        frame_valid_nt=np.asarray(valid, np.bool_),
        intrinsics_nt33=np.asarray(intrinsics, np.float64),
        cam2ego_nt44=np.asarray(cam2ego, np.float64),
        ego2global_nt44=ego2global_nt44,
        cam_timestamps_nt=np.asarray(stamps, np.int64),
        lidar_path=lidar["filename"],
        lidar2ego_44=_pose(lidar_cal),
        lidar_ego2global_44=_pose(lidar_pose),
        lidar_timestamp=int(lidar["timestamp"]),
        **plan_boxes(nusc, sample, global2vol_44),
    )


def plan_scene(
    nusc: NuScenes, scene_name: str, frames: int, on_bad: Callable[[str, ConversionError], None]
) -> list[ClipItem]:
    """Clips of one scene in time order; a bad clip goes to `on_bad(sample_token, error)`."""
    get = _Lookup(nusc)
    scene = next(s for s in nusc.scene if s["name"] == scene_name)
    log = get("log", scene["log_token"], f"scene {scene_name}")
    items, token = [], scene["first_sample_token"]
    while token:
        try:
            items.append(
                plan_clip(nusc, token, frames, log["location"], scene_name, scene["token"])
            )
        except ConversionError as err:
            on_bad(token, err)
        # The chain itself must be intact to find the next sample.
        token = get("sample", token, f"scene {scene_name}")["next"]
    return items


def default_num_shards(clip_bytes: float, num_clips: int, num_scenes: int) -> int:
    """About TARGET_SHARD_BYTES per shard, rounded up to a multiple of HOST_MULTIPLE.

    Shards hold whole scenes, so there are never more shards than scenes: when the multiple
    of 8 exceeds the scene count it is rounded down to one (or, below 8 scenes, one shard per
    scene, which small datasets cannot avoid).
    """
    wanted = max(1, math.ceil(clip_bytes * num_clips / TARGET_SHARD_BYTES))
    wanted = HOST_MULTIPLE * math.ceil(wanted / HOST_MULTIPLE)
    if wanted <= num_scenes:
        return wanted
    if num_scenes >= HOST_MULTIPLE:
        return HOST_MULTIPLE * (num_scenes // HOST_MULTIPLE)
    return max(1, num_scenes)


def assign_shards(scene_clips: list[list[ClipItem]], num_shards: int) -> list[list[ClipItem]]:
    """Contiguous groups of whole scenes, cut near where cumulative clip counts cross k/num_shards.

    Every shard gets at least one scene: the shard index advances by at most one per scene and
    early enough that the last scenes still reach the last shard.
    """
    num_shards = min(num_shards, len(scene_clips))
    total = sum(len(c) for c in scene_clips)
    shards: list[list[ClipItem]] = [[] for _ in range(num_shards)]
    shard = done = 0
    for i, clips in enumerate(scene_clips):
        if i > 0:
            by_count = int(num_shards * done / total) if total else 0
            shard = min(max(by_count, shard), shard + 1)
            shard = min(max(shard, num_shards - (len(scene_clips) - i)), num_shards - 1)
        shards[shard].extend(clips)
        done += len(clips)
    return shards

"""Turn tests/data/nuscenes_sample (one real key frame) into a minimal nuScenes dataroot.

The result is a valid `v1.0-mini` dataroot with the 13 JSON tables, `samples/` and `maps/`
that `NuScenes('v1.0-mini', dataroot)` loads: one log, one scene (named after an official
mini scene so the split lists place it), one sample, six camera and one LIDAR_TOP sample_data.

The pickle stores only the ego pose at the LiDAR time; each camera's own ego pose is recovered
from its `lidar2cam`, which mmdetection3d computed through the camera-time pose:
ego2global_cam = ego2global_lidar @ lidar2ego @ inv(lidar2cam) @ inv(cam2ego) (the car moves
about 0.3 m between the LiDAR and camera timestamps).

The pickle's 69 annotated boxes (`instances`: `bbox_3d` = centre x, y, z, length, width,
height, yaw in the LiDAR frame; `bbox_label_3d` an index into mmdetection3d's ten nuScenes
detection classes) become sample_annotation / instance / category rows in global coordinates:
centre through lidar2global, size as nuScenes (width, length, height), rotation the yaw-only
quaternion of the mapped length axis (nuScenes boxes turn about the global z only). The ten
classes map to one nuScenes category each (e.g. car -> vehicle.car, pedestrian ->
human.pedestrian.adult; the finer nuScenes name is not in the pickle); label -1 (a category
outside the ten) becomes "unknown". The pickle has no visibility, so visibility_token is ""
(read back as 0, not recorded).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import pickle
import shutil

import numpy as np
import PIL.Image
from pyquaternion import Quaternion

from mim4d_jax.data.schema import CAMERAS

VERSION = "v1.0-mini"
DEFAULT_SCENE = "scene-0061"  # in nuscenes.utils.splits.mini_train
LOCATION = "singapore-onenorth"  # n015 logs were recorded in Singapore
# mmdetection3d's nuScenes detection classes (metainfo "categories" order) -> nuScenes names.
DETECTION_CATEGORIES = (
    ("car", "vehicle.car"),
    ("truck", "vehicle.truck"),
    ("trailer", "vehicle.trailer"),
    ("bus", "vehicle.bus.rigid"),
    ("construction_vehicle", "vehicle.construction"),
    ("bicycle", "vehicle.bicycle"),
    ("motorcycle", "vehicle.motorcycle"),
    ("pedestrian", "human.pedestrian.adult"),
    ("traffic_cone", "movable_object.trafficcone"),
    ("barrier", "movable_object.barrier"),
)
UNKNOWN_CATEGORY = "unknown"  # label -1: ignored by mmdetection3d, name not in the pickle


def _token(*parts: str) -> str:
    """Deterministic 32-hex token, like nuScenes tokens."""
    return hashlib.md5("/".join(parts).encode()).hexdigest()


def _quaternion_wxyz(rot_33: np.ndarray) -> list[float]:
    # The pickle stores float32-rounded rotations; re-orthonormalise so pyquaternion accepts them.
    u_33, _, vt_33 = np.linalg.svd(np.asarray(rot_33, np.float64))
    return list(Quaternion(matrix=u_33 @ vt_33).elements)


def _timestamp_us(filename: str) -> int:
    """`<log>__<CHANNEL>__<timestamp_us>.<ext>` -> timestamp_us."""
    return int(filename.split("__")[-1].split(".")[0])


def _annotation_tables(
    info: dict, lidar2global_44: np.ndarray, sample_token: str, pkl_path: pathlib.Path
) -> tuple[list[dict], list[dict], list[dict]]:
    """category, instance and sample_annotation rows of the pickle's boxes (module docstring)."""
    names = [nusc_name for _, nusc_name in DETECTION_CATEGORIES] + [UNKNOWN_CATEGORY]
    categories = [
        {"token": _token("category", n), "name": n, "description": f"{n} (from mmdetection3d)"}
        for n in names
    ]
    instances, annotations = [], []
    for k, box in enumerate(info["instances"]):
        label = int(box["bbox_label_3d"])
        if not -1 <= label < len(DETECTION_CATEGORIES):
            raise ValueError(f"{pkl_path}: instances[{k}] bbox_label_3d {label} is not in -1..9")
        x, y, z, length, width, height, yaw = (float(v) for v in box["bbox_3d"])
        center_3 = lidar2global_44[:3, :3] @ np.array([x, y, z]) + lidar2global_44[:3, 3]
        axis_3 = lidar2global_44[:3, :3] @ np.array([np.cos(yaw), np.sin(yaw), 0.0])
        rotation = Quaternion(axis=(0.0, 0.0, 1.0), radians=np.arctan2(axis_3[1], axis_3[0]))
        instance = _token("instance", sample_token, str(k))
        ann = _token("sample_annotation", sample_token, str(k))
        instances.append(
            {
                "token": instance,
                "category_token": categories[label]["token"],  # label -1 -> the last: unknown
                "nbr_annotations": 1,
                "first_annotation_token": ann,
                "last_annotation_token": ann,
            }
        )
        annotations.append(
            {
                "token": ann,
                "sample_token": sample_token,
                "instance_token": instance,
                "visibility_token": "",
                "attribute_tokens": [],
                "translation": [float(v) for v in center_3],
                "size": [width, length, height],
                "rotation": [float(v) for v in rotation.elements],
                "prev": "",
                "next": "",
                "num_lidar_pts": int(box["num_lidar_pts"]),
                "num_radar_pts": int(box["num_radar_pts"]),
            }
        )
    return categories, instances, annotations


def build_real_sample_dataset(
    sample_dir: str | pathlib.Path, out_dir: str | pathlib.Path, scene_name: str = DEFAULT_SCENE
) -> pathlib.Path:
    """Write the one-sample dataroot under `out_dir` and return it (== `out_dir`)."""
    sample_dir, root = pathlib.Path(sample_dir), pathlib.Path(out_dir)
    pkl_paths = sorted(sample_dir.glob("*.pkl"))
    if len(pkl_paths) != 1:
        raise FileNotFoundError(
            f"{sample_dir}: expected exactly one info .pkl, found {len(pkl_paths)}"
        )
    with pkl_paths[0].open("rb") as f:
        data = pickle.load(f)
    info = data["data_list"][0]
    class_names = list(data.get("metainfo", {}).get("categories", {}))
    if class_names and class_names != [name for name, _ in DETECTION_CATEGORIES]:
        raise ValueError(
            f"{pkl_paths[0]}: metainfo categories {class_names} are not the ten nuScenes "
            "detection classes in mmdetection3d's order"
        )
    logfile = pkl_paths[0].stem
    sample_token = info["token"]
    log_token, scene_token, map_token = (
        _token(logfile),
        _token(logfile, scene_name),
        _token("map", logfile),
    )
    ego2global_44 = np.asarray(info["ego2global"], np.float64)
    lidar2global_44 = ego2global_44 @ np.asarray(info["lidar_points"]["lidar2ego"], np.float64)

    tables: dict[str, list[dict]] = {"attribute": [], "visibility": []}
    tables["category"], tables["instance"], tables["sample_annotation"] = _annotation_tables(
        info, lidar2global_44, sample_token, pkl_paths[0]
    )
    tables["log"] = [
        {
            "token": log_token,
            "logfile": logfile,
            "vehicle": logfile.split("-")[0],
            "date_captured": "-".join(logfile.split("-")[1:4]),
            "location": LOCATION,
        }
    ]
    tables["map"] = [
        {
            "token": map_token,
            "log_tokens": [log_token],
            "category": "semantic_prior",
            "filename": f"maps/{map_token}.png",
        }
    ]
    (root / "maps").mkdir(parents=True, exist_ok=True)
    # The devkit only needs the map file to exist: a 1x1 grey PNG.
    PIL.Image.new("L", (1, 1), 128).save(root / "maps" / f"{map_token}.png")

    channels = [(cam, info["images"][cam]["img_path"], info["images"][cam]) for cam in CAMERAS]
    channels.append(("LIDAR_TOP", info["lidar_points"]["lidar_path"], None))
    for key in ("sensor", "calibrated_sensor", "ego_pose", "sample_data"):
        tables[key] = []
    for channel, filename, cam_info in channels:
        if not (sample_dir / filename).is_file():
            raise FileNotFoundError(
                f"{sample_dir / filename}: missing sensor file named in {pkl_paths[0]}"
            )
        sensor_token, cs_token = _token("sensor", channel), _token("cs", logfile, channel)
        sd_token = (
            cam_info["sample_data_token"] if cam_info else _token("sd", sample_token, channel)
        )
        sensor2ego_44 = np.asarray(
            cam_info["cam2ego"] if cam_info else info["lidar_points"]["lidar2ego"], np.float64
        )
        pose_44 = ego2global_44
        if cam_info:
            lidar2cam_44 = np.asarray(cam_info["lidar2cam"], np.float64)
            pose_44 = lidar2global_44 @ np.linalg.inv(lidar2cam_44) @ np.linalg.inv(sensor2ego_44)
        timestamp = _timestamp_us(filename)
        tables["sensor"].append(
            {
                "token": sensor_token,
                "channel": channel,
                "modality": "camera" if cam_info else "lidar",
            }
        )
        tables["calibrated_sensor"].append(
            {
                "token": cs_token,
                "sensor_token": sensor_token,
                "translation": [float(v) for v in sensor2ego_44[:3, 3]],
                "rotation": _quaternion_wxyz(sensor2ego_44[:3, :3]),
                "camera_intrinsic": [[float(v) for v in row] for row in cam_info["cam2img"]]
                if cam_info
                else [],
            }
        )
        tables["ego_pose"].append(
            {
                "token": sd_token,
                "timestamp": timestamp,
                "rotation": _quaternion_wxyz(pose_44[:3, :3]),
                "translation": [float(v) for v in pose_44[:3, 3]],
            }
        )
        relpath = f"samples/{channel}/{filename}"
        (root / "samples" / channel).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample_dir / filename, root / relpath)
        tables["sample_data"].append(
            {
                "token": sd_token,
                "sample_token": sample_token,
                "ego_pose_token": sd_token,
                "calibrated_sensor_token": cs_token,
                "timestamp": timestamp,
                "fileformat": "jpg" if cam_info else "pcd",
                "is_key_frame": True,
                "height": 900 if cam_info else 0,
                "width": 1600 if cam_info else 0,
                "filename": relpath,
                "prev": "",
                "next": "",
            }
        )
    tables["sample"] = [
        {
            "token": sample_token,
            "timestamp": round(info["timestamp"] * 1e6),
            "prev": "",
            "next": "",
            "scene_token": scene_token,
        }
    ]
    tables["scene"] = [
        {
            "token": scene_token,
            "log_token": log_token,
            "nbr_samples": 1,
            "first_sample_token": sample_token,
            "last_sample_token": sample_token,
            "name": scene_name,
            "description": "one real key frame from the mmdetection3d demo data",
        }
    ]
    table_dir = root / VERSION
    table_dir.mkdir(parents=True, exist_ok=True)
    for name, records in tables.items():
        (table_dir / f"{name}.json").write_text(json.dumps(records, indent=1))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--scene-name", default=DEFAULT_SCENE)
    args = parser.parse_args()
    print(build_real_sample_dataset(args.sample_dir, args.out, args.scene_name))


if __name__ == "__main__":
    main()

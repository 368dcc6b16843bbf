"""Renders one scene's sensor data to disk and adds its records to the nuScenes tables.

Timeline of a scene (microseconds): the first key frame is at `key0 = start + PREFIX_US`, so
the first sample already has one interval of camera and LiDAR sweeps before it. LiDAR frames
are at key0 + j * 50 ms (j = -9 .. 10 (K-1), every 10th is a key frame); camera frames at
key0 + offset_cam + round(m / 12 Hz) (m = -5 .. 6 (K-1), every 6th is a key frame). Each
sample_data has its own ego pose at its own timestamp, and the world (moving vehicles) is
rendered at that timestamp.
"""

import dataclasses
import pathlib

import cv2
import numpy as np

from data_prep.synth import rig, sensors
from data_prep.synth.tables import Tables, quaternion_wxyz
from data_prep.synth.world import ACTIVE_RADIUS, BLOCK, ROAD_HALF, SIDEWALK, World

PREFIX_US = 500_000
KEY_INTERVAL_US = 1_000_000 // rig.KEYFRAME_HZ
LIDAR_PER_KEY = rig.LIDAR_HZ // rig.KEYFRAME_HZ
CAMERA_PER_KEY = rig.CAMERA_HZ // rig.KEYFRAME_HZ
MAP_RESOLUTION = 0.1  # metres per pixel, what nuscenes.utils.map_mask.MapMask assumes
# Every vehicle of the rendered scene is annotated (the scene holds what is within
# ACTIVE_RADIUS of the ego), so BEV targets cover the whole +-51.2 m grid, corners included.
ANNOTATION_RANGE = ACTIVE_RADIUS
LIDAR_AZIMUTH_STEPS = 720
JPEG_QUALITY = 92


@dataclasses.dataclass(frozen=True)
class SceneSpec:
    index: int
    name: str
    samples: int
    start_us: int
    log_name: str


def scene_duration_s(samples: int) -> float:
    return (PREFIX_US + (samples - 1) * KEY_INTERVAL_US) / 1e6


def map_mask(world: World) -> np.ndarray:
    """Semantic prior raster (roads and sidewalks = 255), row 0 at the largest global y."""
    width_px = int(np.ceil(world.extent_xy[0] / MAP_RESOLUTION))
    height_px = int(np.ceil(world.extent_xy[1] / MAP_RESOLUTION))
    to_line = lambda v: np.where(
        np.abs((v + BLOCK / 2) % BLOCK - BLOCK / 2) < ROAD_HALF + SIDEWALK, 255, 0
    ).astype(np.uint8)
    x_w = (np.arange(width_px) + 0.5) * MAP_RESOLUTION
    y_h = (height_px - np.arange(height_px) - 0.5) * MAP_RESOLUTION
    return np.maximum(to_line(y_h)[:, None], to_line(x_w)[None, :])


def _frame_times(samples: int, per_key: int, hz: int, offset_us: int) -> list[tuple[int, int]]:
    """(frame number m, microseconds after key0) for m = -(per_key - 1) .. per_key (K - 1)."""
    ms = range(-(per_key - 1), per_key * (samples - 1) + 1)
    return [(m, offset_us + round(m * 1e6 / hz)) for m in ms]


class SceneWriter:
    """Writes the blobs of one scene under `root` and its records into `tables`."""

    def __init__(
        self,
        root: pathlib.Path,
        tables: Tables,
        world: World,
        spec: SceneSpec,
        cameras: list[rig.Camera],
    ):
        self.root, self.tables, self.world, self.spec, self.cameras = (
            root,
            tables,
            world,
            spec,
            cameras,
        )
        self.key0_us = spec.start_us + PREFIX_US
        self.depth_index: dict[str, dict[str, str]] = {}

    def _t(self, timestamp_us: int) -> float:
        return (timestamp_us - self.spec.start_us) / 1e6

    def _sample_data(
        self,
        channel: str,
        calib: str,
        m: int,
        timestamp_us: int,
        per_key: int,
        sample_tokens: list[str],
        filename: str,
        fileformat: str,
        size: tuple[int, int],
    ) -> str:
        ego = sensors.ego2global(self.world, self._t(timestamp_us))
        path = (self.spec.index, channel, m)
        token = self.tables.token(("sample_data", *path))
        self.tables.add_record(
            "ego_pose",
            token,
            timestamp=timestamp_us,
            rotation=quaternion_wxyz(ego[:3, :3]),
            translation=[float(v) for v in ego[:3, 3]],
        )
        # Sweeps belong to the next key frame's sample (ceil), like nuScenes.
        sample = sample_tokens[min(-(-m // per_key), len(sample_tokens) - 1)]
        self.tables.add(
            "sample_data",
            path,
            sample_token=sample,
            ego_pose_token=token,
            calibrated_sensor_token=calib,
            timestamp=timestamp_us,
            fileformat=fileformat,
            is_key_frame=m >= 0 and m % per_key == 0,
            height=size[1],
            width=size[0],
            filename=filename,
            prev="",
            next="",
        )
        return token

    def _calibrated(
        self, channel: str, modality: str, sensor2ego_44: np.ndarray, intrinsic: list
    ) -> str:
        sensor = self.tables.token(("sensor", channel))
        if not self.tables.has("sensor", sensor):
            self.tables.add("sensor", (channel,), channel=channel, modality=modality)
        return self.tables.add(
            "calibrated_sensor",
            (self.spec.index, channel),
            sensor_token=sensor,
            translation=[float(v) for v in sensor2ego_44[:3, 3]],
            rotation=quaternion_wxyz(sensor2ego_44[:3, :3]),
            camera_intrinsic=intrinsic,
        )

    def write(self) -> None:
        spec, tables = self.spec, self.tables
        log = tables.add(
            "log",
            (spec.index,),
            logfile=spec.log_name,
            vehicle="n015",
            date_captured="2018-07-24",
            location="synthetic-grid-city",
        )
        map_token = tables.token(("map", spec.index))
        map_file = f"maps/{map_token}.png"
        cv2.imwrite(str(self.root / map_file), map_mask(self.world))
        tables.add(
            "map", (spec.index,), log_tokens=[log], category="semantic_prior", filename=map_file
        )
        scene = tables.token(("scene", spec.index))
        sample_tokens = [
            tables.add(
                "sample",
                (spec.index, k),
                timestamp=self.key0_us + k * KEY_INTERVAL_US,
                scene_token=scene,
                prev="",
                next="",
            )
            for k in range(spec.samples)
        ]
        tables.link("sample", sample_tokens)
        tables.add(
            "scene",
            (spec.index,),
            log_token=log,
            nbr_samples=spec.samples,
            first_sample_token=sample_tokens[0],
            last_sample_token=sample_tokens[-1],
            name=spec.name,
            description="synthetic grid city, day, sunny",
        )
        key_idents = self._write_lidar(sample_tokens)
        for camera in self.cameras:
            self._write_camera(camera, sample_tokens)
        self._write_annotations(sample_tokens, key_idents)

    def _blob_name(self, folder: str, channel: str, timestamp_us: int, ext: str) -> str:
        return f"{folder}/{channel}/{self.spec.log_name}__{channel}__{timestamp_us}.{ext}"

    def _write_camera(self, camera: rig.Camera, sample_tokens: list[str]) -> None:
        calib = self._calibrated(
            camera.channel, "camera", camera.cam2ego_44, camera.intrinsic_33.tolist()
        )
        chain = []
        for m, dt_us in _frame_times(
            self.spec.samples, CAMERA_PER_KEY, rig.CAMERA_HZ, camera.time_offset_us
        ):
            timestamp = self.key0_us + dt_us
            key = m >= 0 and m % CAMERA_PER_KEY == 0
            filename = self._blob_name(
                "samples" if key else "sweeps", camera.channel, timestamp, "jpg"
            )
            rgb_hw3, depth_hw = sensors.render_camera(self.world, camera, self._t(timestamp))
            cv2.imwrite(
                str(self.root / filename),
                rgb_hw3[..., ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
            )
            chain.append(
                self._sample_data(
                    camera.channel,
                    calib,
                    m,
                    timestamp,
                    CAMERA_PER_KEY,
                    sample_tokens,
                    filename,
                    "jpg",
                    (camera.width, camera.height),
                )
            )
            if key:
                depth_file = f"depth_gt/{filename[: -len('.jpg')]}.npy"
                np.save(self.root / depth_file, depth_hw)
                sample = sample_tokens[m // CAMERA_PER_KEY]
                self.depth_index.setdefault(sample, {})[camera.channel] = depth_file
        self.tables.link("sample_data", chain)

    def _write_lidar(self, sample_tokens: list[str]) -> list[np.ndarray]:
        """Writes all LiDAR sweeps; returns the hit idents of each key-frame sweep."""
        calib = self._calibrated(rig.LIDAR_CHANNEL, "lidar", rig.lidar2ego(), [])
        chain, key_idents = [], []
        for m, dt_us in _frame_times(self.spec.samples, LIDAR_PER_KEY, rig.LIDAR_HZ, 0):
            timestamp = self.key0_us + dt_us
            key = m >= 0 and m % LIDAR_PER_KEY == 0
            filename = self._blob_name(
                "samples" if key else "sweeps", rig.LIDAR_CHANNEL, timestamp, "pcd.bin"
            )
            points_n5, ident_n = sensors.scan_lidar(
                self.world, self._t(timestamp), LIDAR_AZIMUTH_STEPS
            )
            points_n5.tofile(self.root / filename)
            chain.append(
                self._sample_data(
                    rig.LIDAR_CHANNEL,
                    calib,
                    m,
                    timestamp,
                    LIDAR_PER_KEY,
                    sample_tokens,
                    filename,
                    "pcd",
                    (0, 0),
                )
            )
            if key:
                key_idents.append(ident_n)
        self.tables.link("sample_data", chain)
        return key_idents

    def _write_annotations(self, sample_tokens: list[str], key_idents: list[np.ndarray]) -> None:
        """Exact boxes of every vehicle within ANNOTATION_RANGE at each key frame's (LiDAR)
        time: centre, size and yaw of the vehicle primitive itself, seen by the LiDAR or not.
        num_lidar_pts counts the key sweep's hits on it; visibility is graded from that count
        ("1" none, "2" up to 20, "4" more), not from the images."""
        veh, tables, spec = self.world.vehicles, self.tables, self.spec
        per_vehicle: dict[int, list[str]] = {}
        for k, sample in enumerate(sample_tokens):
            t = self._t(self.key0_us + k * KEY_INTERVAL_US)
            ego_xy_2, _ = self.world.ego_pose(t)
            centers_v3 = veh.centers_at(t)
            counts_v = np.bincount(key_idents[k][key_idents[k] >= 0], minlength=len(veh.yaw_v))
            near_v = np.linalg.norm(centers_v3[:, :2] - ego_xy_2, axis=1) < ANNOTATION_RANGE
            for v in np.nonzero(near_v)[0]:
                moving = bool(veh.moving_v[v])
                half_3 = veh.half_v3[v]
                instance = tables.token(("instance", spec.index, int(v)))
                token = tables.add(
                    "sample_annotation",
                    (spec.index, int(v), k),
                    sample_token=sample,
                    instance_token=instance,
                    visibility_token="4" if counts_v[v] > 20 else "2" if counts_v[v] else "1",
                    attribute_tokens=[
                        tables.attribute_tokens["vehicle.moving" if moving else "vehicle.parked"]
                    ],
                    translation=[float(c) for c in centers_v3[v]],
                    size=[float(2 * half_3[1]), float(2 * half_3[0]), float(2 * half_3[2])],
                    rotation=[float(q) for q in rig.yaw_quaternion(veh.yaw_v[v]).elements],
                    prev="",
                    next="",
                    num_lidar_pts=int(counts_v[v]),
                    num_radar_pts=0,
                )
                per_vehicle.setdefault(int(v), []).append(token)
        for v, anns in per_vehicle.items():
            tables.link("sample_annotation", anns)
            category = "vehicle.truck" if veh.is_truck_v[v] else "vehicle.car"
            tables.add(
                "instance",
                (spec.index, v),
                category_token=tables.category_tokens[category],
                nbr_annotations=len(anns),
                first_annotation_token=anns[0],
                last_annotation_token=anns[-1],
            )

"""The one-sample real nuScenes dataroot built from tests/data/nuscenes_sample."""

from __future__ import annotations

import pickle

import numpy as np
from nuscenes.nuscenes import NuScenes
from nuscenes.utils import splits
from pyquaternion import Quaternion

from data_prep.real_sample import build_real_sample_dataset
from mim4d_jax.data.schema import CAMERAS


def _matrix(record: dict) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = Quaternion(record["rotation"]).rotation_matrix
    out[:3, 3] = record["translation"]
    return out


def test_devkit_loads_and_calibration_matches_pickle(real_sample_dir, tmp_path):
    root = build_real_sample_dataset(real_sample_dir, tmp_path / "nusc")
    nusc = NuScenes("v1.0-mini", str(root), verbose=False)
    (info,) = pickle.load(open(next(real_sample_dir.glob("*.pkl")), "rb"))["data_list"]
    assert [s["token"] for s in nusc.sample] == [info["token"]]
    assert nusc.scene[0]["name"] in splits.mini_train
    sample = nusc.sample[0]
    lidar2global = np.asarray(info["ego2global"]) @ np.asarray(info["lidar_points"]["lidar2ego"])
    assert set(sample["data"]) == {*CAMERAS, "LIDAR_TOP"}
    for cam in CAMERAS:
        sd = nusc.get("sample_data", sample["data"][cam])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        np.testing.assert_allclose(cs["camera_intrinsic"], info["images"][cam]["cam2img"])
        np.testing.assert_allclose(_matrix(cs), info["images"][cam]["cam2ego"], atol=2e-6)
        # Camera-time pose: composes back to mmdetection3d's lidar2cam.
        lidar2cam = np.linalg.inv(_matrix(pose) @ _matrix(cs)) @ lidar2global
        np.testing.assert_allclose(lidar2cam, info["images"][cam]["lidar2cam"], atol=1e-4)
        assert np.linalg.norm(_matrix(pose)[:3, 3] - np.asarray(info["ego2global"])[:3, 3]) < 1.0
        path = root / sd["filename"]
        assert path.read_bytes() == (real_sample_dir / info["images"][cam]["img_path"]).read_bytes()
        assert sd["timestamp"] == round(info["images"][cam]["timestamp"] * 1e6)
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cs = nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])
    np.testing.assert_allclose(_matrix(cs), info["lidar_points"]["lidar2ego"], atol=2e-6)
    assert (root / lidar["filename"]).stat().st_size == 34688 * 20

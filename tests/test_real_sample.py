"""The one-sample real nuScenes dataroot built from tests/data/nuscenes_sample, and its 69 boxes
after conversion (frame, counts of LiDAR points inside, projection into the cameras)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes
from nuscenes.utils import splits
from pyquaternion import Quaternion

from configs import mim4d_vs01
from data_prep.convert_nuscenes import convert
from data_prep.real_sample import (
    DETECTION_CATEGORIES,
    UNKNOWN_CATEGORY,
    build_real_sample_dataset,
)
from mim4d_jax.data.reader import ClipReader
from mim4d_jax.data.schema import CAMERAS
from mim4d_jax.geometry.poses import cam2vol, lidar2img, vol2global


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


@pytest.fixture(scope="module")
def real_clip(real_sample_dir, tmp_path_factory):
    """The converted real key frame read back by the input pipeline's reader, and the pickle."""
    tmp = tmp_path_factory.mktemp("real_boxes")
    root = build_real_sample_dataset(real_sample_dir, tmp / "nusc")
    convert(root, "v1.0-mini", tmp / "out", frames=1)
    config = mim4d_vs01.get_config()
    config.data.dir, config.data.frames = str(tmp / "out"), 1
    reader = ClipReader(config, "train")
    clip, _ = reader.read_clip(0)
    (info,) = pickle.load(open(next(real_sample_dir.glob("*.pkl")), "rb"))["data_list"]
    return reader, clip, info


def _key_lidar_in_volume(clip) -> np.ndarray:
    """(P, 3) key-frame LiDAR points in the frame-0 volume frame."""
    vol2global_44 = vol2global(clip["ego2global"], clip["lidar2ego"], CAMERAS.index("CAM_FRONT"))
    key2vol_44 = np.linalg.solve(vol2global_44[0], clip["lidar_ego2global"] @ clip["lidar2ego"])
    points_p3 = clip["lidar_points"][:, :3].astype(np.float64)
    return points_p3 @ key2vol_44[:3, :3].T + key2vol_44[:3, 3]


def test_the_69_boxes_come_through_with_their_pickle_values(real_clip):
    reader, clip, info = real_clip
    boxes = clip["boxes"]
    assert reader.has_boxes and len(boxes["category"]) == len(info["instances"]) == 69
    names = dict(DETECTION_CATEGORIES)
    classes = [name for name, _ in DETECTION_CATEGORIES]
    expected = [
        names[classes[b["bbox_label_3d"]]] if b["bbox_label_3d"] >= 0 else UNKNOWN_CATEGORY
        for b in info["instances"]
    ]
    assert boxes["category"] == expected and expected.count("vehicle.car") == 8
    vol2global_44 = vol2global(clip["ego2global"], clip["lidar2ego"], CAMERAS.index("CAM_FRONT"))
    key2vol_44 = np.linalg.solve(vol2global_44[0], clip["lidar_ego2global"] @ clip["lidar2ego"])
    bbox_b7 = np.array([b["bbox_3d"] for b in info["instances"]])
    centers_b3 = bbox_b7[:, :3] @ key2vol_44[:3, :3].T + key2vol_44[:3, 3]
    np.testing.assert_allclose(boxes["center_b3"], centers_b3, atol=1e-6)
    np.testing.assert_allclose(boxes["size_b3"], bbox_b7[:, [4, 3, 5]])  # (w, l, h)
    # The volume frame turns by the ego's small yaw change between LiDAR and camera time.
    yaw_shift = np.arctan2(key2vol_44[1, 0], key2vol_44[0, 0])
    yaw_error_b = np.angle(np.exp(1j * (boxes["yaw_b"] - bbox_b7[:, 6] - yaw_shift)))
    assert np.abs(yaw_error_b).max() < 2e-3
    np.testing.assert_array_equal(
        boxes["num_lidar_pts_b"], [b["num_lidar_pts"] for b in info["instances"]]
    )
    np.testing.assert_array_equal(boxes["visibility_b"], 0)  # not in the pickle


def test_lidar_points_fall_inside_the_boxes_in_the_stored_counts(real_clip):
    _, clip, _ = real_clip
    boxes, points_p3 = clip["boxes"], _key_lidar_in_volume(clip)
    counts = []
    for center_3, (width, length, height), yaw in zip(
        boxes["center_b3"], boxes["size_b3"], boxes["yaw_b"]
    ):
        d_p3 = points_p3 - center_3
        along = np.cos(yaw) * d_p3[:, 0] + np.sin(yaw) * d_p3[:, 1]
        across = -np.sin(yaw) * d_p3[:, 0] + np.cos(yaw) * d_p3[:, 1]
        inside = (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)
        counts.append(int((inside & (np.abs(d_p3[:, 2]) <= height / 2)).sum()))
    stored = boxes["num_lidar_pts_b"]
    assert stored.max() > 400  # the truck next to the ego
    # The devkit counted with the same sweep: agreement to a few points at the box surfaces.
    np.testing.assert_allclose(counts, stored, rtol=0.12, atol=2)
    assert np.all((np.asarray(counts) > 0) == (stored > 0))


def test_car_centres_project_into_a_camera_in_front_of_it(real_clip):
    _, clip, _ = real_clip
    boxes = clip["boxes"]
    cam2vol_nt44 = cam2vol(
        clip["cam2ego"], clip["ego2global"], clip["lidar2ego"], CAMERAS.index("CAM_FRONT")
    )
    img_nt44 = lidar2img(clip["intrinsics"], cam2vol_nt44)
    cars = [k for k, name in enumerate(boxes["category"]) if name == "vehicle.car"]
    for k in cars:
        hom_4 = np.append(boxes["center_b3"][k], 1.0)
        seen_by = []
        for n, cam in enumerate(CAMERAS):
            u_d, v_d, depth, _ = img_nt44[n, 0] @ hom_4
            if depth > 0 and 0 <= u_d / depth < 1600 and 0 <= v_d / depth < 900:
                seen_by.append(cam)
        assert seen_by, (k, boxes["center_b3"][k])


def test_boxes_project_onto_mmdetection3d_camera_centres(real_clip):
    """Every camera annotation of the pickle (its box centre projected into one camera with
    that camera's own ego pose, `center_2d` and `depth`) is where a converted box of the same
    class projects through the record's lidar2img."""
    _, clip, info = real_clip
    boxes = clip["boxes"]
    img_nt44 = lidar2img(
        clip["intrinsics"],
        cam2vol(clip["cam2ego"], clip["ego2global"], clip["lidar2ego"], CAMERAS.index("CAM_FRONT")),
    )
    hom_b4 = np.concatenate([boxes["center_b3"], np.ones((len(boxes["category"]), 1))], axis=1)
    names = [nusc_name for _, nusc_name in DETECTION_CATEGORIES]
    matched = 0
    for n, cam in enumerate(CAMERAS):
        proj_b4 = hom_b4 @ img_nt44[n, 0].T
        uv_b2 = proj_b4[:, :2] / proj_b4[:, 2:3]
        for inst in info["cam_instances"][cam]:
            error_b = np.linalg.norm(uv_b2 - np.asarray(inst["center_2d"]), axis=1)
            error_b[proj_b4[:, 2] <= 0] = np.inf
            k = int(np.argmin(error_b))
            assert error_b[k] < 0.05, (cam, inst["center_2d"], error_b[k])
            assert abs(proj_b4[k, 2] - inst["depth"]) < 1e-3
            assert boxes["category"][k] == names[inst["bbox_label_3d"]]
            matched += 1
    assert matched == 84

"""nuScenes -> TFRecord converter on the one-sample real dataset (fields, geometry, errors)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil

import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds
from nuscenes.nuscenes import NuScenes

from data_prep import convert_nuscenes
from data_prep.convert.items import ConversionError
from data_prep.real_sample import build_real_sample_dataset
from mim4d_jax.data import schema
from tests.convert_helpers import assert_records_equal, pose_matrix, read_records

FRAMES = 3
# Float64 fields round-trip exactly only with bytes encoding; the default Example encoding
# stores float32 (relative error <= 2**-24), which the current schema uses.
_F64_EXACT = schema.clip_features(1, (8, 8))["intrinsics"]._encoding == tfds.features.Encoding.BYTES
F64_RTOL = 0.0 if _F64_EXACT else 2.0**-24


def assert_f64(actual: np.ndarray, desired) -> None:
    assert actual.dtype == np.float64
    np.testing.assert_allclose(actual, np.asarray(desired, np.float64), rtol=F64_RTOL, atol=1e-12)


@pytest.fixture(scope="module")
def real_root(real_sample_dir, tmp_path_factory) -> pathlib.Path:
    return build_real_sample_dataset(real_sample_dir, tmp_path_factory.mktemp("real") / "nusc")


@pytest.fixture(scope="module")
def real_out(real_root, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("real_out")
    convert_nuscenes.convert(real_root, "v1.0-mini", out, frames=FRAMES)
    return out


def test_dataset_dir_layout_and_metadata(real_out):
    version_dir = convert_nuscenes.dataset_dir(real_out)
    assert pathlib.Path(version_dir) == real_out / "nuscenes_clips" / "1.1.0"
    assert (version_dir / "nuscenes_clips-train.tfrecord-00000-of-00001").exists()
    builder = tfds.builder_from_directory(str(version_dir))
    assert dict(builder.info.metadata) == {
        "frames": FRAMES,
        "image_size": [1600, 900],
        "cameras": list(schema.CAMERAS),
        "nuscenes_version": "v1.0-mini",
    }
    assert builder.info.splits["train"].num_examples == 1
    stats = json.loads((version_dir / "conversion_stats.json").read_text())
    assert stats["clips"] == {"train": 1} and stats["num_skipped"] == 0
    assert not (version_dir / "conversion_work").exists()


def test_every_field_matches_devkit(real_root, real_out):
    (rec,) = read_records(convert_nuscenes.dataset_dir(real_out), "train")
    nusc = NuScenes("v1.0-mini", str(real_root), verbose=False)
    sample = nusc.sample[0]
    scene = nusc.get("scene", sample["scene_token"])
    assert rec["sample_token"].decode() == sample["token"]
    assert rec["scene_name"].decode() == scene["name"]
    assert rec["location"].decode() == nusc.get("log", scene["log_token"])["location"]
    for c, cam in enumerate(schema.CAMERAS):
        sd = nusc.get("sample_data", sample["data"][cam])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        raw = (real_root / sd["filename"]).read_bytes()
        # No sweeps in this sample: every frame repeats the key frame, flagged invalid.
        assert list(rec["images"][cam]) == [raw] * FRAMES
        np.testing.assert_array_equal(rec["frame_valid"][c], [True] + [False] * (FRAMES - 1))
        for t in range(FRAMES):
            assert_f64(rec["intrinsics"][c, t], cs["camera_intrinsic"])
            assert_f64(rec["cam2ego"][c, t], pose_matrix(cs))
            assert_f64(rec["ego2global"][c, t], pose_matrix(pose))
            assert rec["cam_timestamps"][c, t] == sd["timestamp"]
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    points_p5 = np.fromfile(real_root / lidar["filename"], np.float32).reshape(-1, 5)
    assert rec["num_lidar_points"] == len(points_p5) == 34688
    np.testing.assert_array_equal(rec["lidar_points"].reshape(-1, 4), points_p5[:, :4])
    cs = nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])
    assert_f64(rec["lidar2ego"], pose_matrix(cs))
    pose = nusc.get("ego_pose", lidar["ego_pose_token"])
    assert_f64(rec["lidar_ego2global"], pose_matrix(pose))
    assert rec["lidar_timestamp"] == lidar["timestamp"]


def test_lidar_projects_inside_real_images(real_sample_dir, real_out):
    import pickle

    (rec,) = read_records(convert_nuscenes.dataset_dir(real_out), "train", decode_images=True)
    (info,) = pickle.load(open(next(real_sample_dir.glob("*.pkl")), "rb"))["data_list"]
    points_p4 = rec["lidar_points"].reshape(-1, 4)
    hom_4p = np.concatenate([points_p4[:, :3].T.astype(np.float64), np.ones((1, len(points_p4)))])
    lidar2global = rec["lidar_ego2global"] @ rec["lidar2ego"]
    for c, cam in enumerate(schema.CAMERAS):
        lidar2cam = np.linalg.inv(rec["ego2global"][c, 0] @ rec["cam2ego"][c, 0]) @ lidar2global
        # The stored chain agrees with mmdetection3d's independently computed lidar2cam.
        np.testing.assert_allclose(lidar2cam, info["images"][cam]["lidar2cam"], atol=2e-3)
        cam_3p = (lidar2cam @ hom_4p)[:3]
        front = cam_3p[2] > 1.0
        uv_2p = (rec["intrinsics"][c, 0] @ cam_3p[:, front])[:2] / cam_3p[2, front]
        height, width = rec["images"][cam].shape[1:3]
        inside = (uv_2p[0] >= 0) & (uv_2p[0] < width) & (uv_2p[1] >= 0) & (uv_2p[1] < height)
        # A 360-degree sweep: each camera sees thousands of points, spread over its lower half
        # (ground) and above the horizon (cars, buildings).
        assert inside.sum() > 1500, (cam, inside.sum())
        v_in = uv_2p[1, inside]
        assert v_in.min() < height * 0.5 < v_in.max(), cam
        assert np.ptp(uv_2p[0, inside]) > 0.8 * width, cam


def test_resize_reencodes_and_scales_intrinsics(real_root, real_out, tmp_path):
    convert_nuscenes.convert(real_root, "v1.0-mini", tmp_path, frames=2, image_size=(160, 90))
    version_dir = convert_nuscenes.dataset_dir(tmp_path)
    (small,) = read_records(version_dir, "train", decode_images=True)
    (full,) = read_records(convert_nuscenes.dataset_dir(real_out), "train", decode_images=True)
    assert tfds.builder_from_directory(str(version_dir)).info.metadata["image_size"] == [160, 90]
    for c, cam in enumerate(schema.CAMERAS):
        assert small["images"][cam].shape == (2, 90, 160, 3)
        # Half-pixel convention of the antialiased resize: u' = (u + 0.5) s - 0.5.
        expected_33 = full["intrinsics"][c, 0] * np.array([[0.1], [0.1], [1.0]])
        expected_33[:2, 2] += 0.5 * (0.1 - 1.0)
        np.testing.assert_allclose(
            small["intrinsics"][c, 0], expected_33, rtol=2 * F64_RTOL + 1e-15
        )
        reference = PIL.Image.fromarray(full["images"][cam][0]).resize(
            (160, 90), PIL.Image.Resampling.BOX
        )
        diff = np.abs(small["images"][cam][0].astype(float) - np.asarray(reference, float))
        assert diff.mean() < 4.0, (cam, diff.mean())  # antialiased: close to a box average


def test_two_conversions_identical_and_rerun_is_noop(real_root, real_out, tmp_path):
    convert_nuscenes.convert(real_root, "v1.0-mini", tmp_path, frames=FRAMES)
    first, second = convert_nuscenes.dataset_dir(real_out), convert_nuscenes.dataset_dir(tmp_path)
    assert_records_equal(read_records(first, "train"), read_records(second, "train"))
    shard = "nuscenes_clips-train.tfrecord-00000-of-00001"
    assert (first / shard).read_bytes() == (second / shard).read_bytes()
    before = {p.name: os.stat(p).st_mtime_ns for p in pathlib.Path(second).iterdir()}
    stats = convert_nuscenes.convert(real_root, "v1.0-mini", tmp_path, frames=FRAMES)
    assert stats["clips"] == {"train": 1}
    assert {p.name: os.stat(p).st_mtime_ns for p in pathlib.Path(second).iterdir()} == before
    with pytest.raises(ConversionError, match="different finished conversion"):
        convert_nuscenes.convert(real_root, "v1.0-mini", tmp_path, frames=FRAMES + 1)


def test_cli_writes_dataset(real_root, tmp_path, capsys):
    convert_nuscenes.main(
        [
            "--dataroot",
            str(real_root),
            "--version",
            "v1.0-mini",
            "--out",
            str(tmp_path),
            "--frames",
            "1",
        ]
    )
    assert '"train": 1' in capsys.readouterr().out
    (rec,) = read_records(convert_nuscenes.dataset_dir(tmp_path), "train")
    assert rec["intrinsics"].shape == (6, 1, 3, 3)


# Bad inputs: (name, function breaking the dataroot and returning the text the error must name).
def _missing_image(root: pathlib.Path) -> str:
    path = next((root / "samples" / "CAM_BACK").glob("*.jpg"))
    path.unlink()
    return path.name


def _missing_lidar(root: pathlib.Path) -> str:
    path = next((root / "samples" / "LIDAR_TOP").glob("*.pcd.bin"))
    path.unlink()
    return path.name


def _truncated_lidar(root: pathlib.Path) -> str:
    path = next((root / "samples" / "LIDAR_TOP").glob("*.pcd.bin"))
    path.write_bytes(path.read_bytes()[:-7])
    return path.name


def _corrupt_jpeg(root: pathlib.Path) -> str:
    path = next((root / "samples" / "CAM_FRONT_LEFT").glob("*.jpg"))
    path.write_bytes(path.read_bytes()[:40000])  # cut mid-scan: no end marker
    return path.name


def _garbage_jpeg(root: pathlib.Path) -> str:
    path = next((root / "samples" / "CAM_FRONT").glob("*.jpg"))
    path.write_bytes(b"\xff\xd8" + bytes(range(256)) * 10 + b"\xff\xd9")
    return path.name


def _missing_table(root: pathlib.Path) -> str:
    (root / "v1.0-mini" / "ego_pose.json").unlink()
    return "ego_pose.json"


def _dangling_token(root: pathlib.Path) -> str:
    table = root / "v1.0-mini" / "sample_data.json"
    records = json.loads(table.read_text())
    records[0]["ego_pose_token"] = "0123456789abcdef0123456789abcdef"
    table.write_text(json.dumps(records))
    return "0123456789abcdef0123456789abcdef"


BAD_INPUTS = [
    _missing_image,
    _missing_lidar,
    _truncated_lidar,
    _corrupt_jpeg,
    _garbage_jpeg,
    _missing_table,
    _dangling_token,
]


@pytest.mark.parametrize("on_error", ["fail", "skip"])
@pytest.mark.parametrize("breaker", BAD_INPUTS, ids=lambda f: f.__name__.strip("_"))
def test_bad_input(real_root, tmp_path, breaker, on_error):
    root = pathlib.Path(shutil.copytree(real_root, tmp_path / "nusc"))
    named = breaker(root)
    out = tmp_path / "out"
    version_dir = pathlib.Path(convert_nuscenes.dataset_dir(out))
    if on_error == "fail" or breaker is _missing_table:  # no clip can be made without a table
        match = re.escape(named)
    else:  # the only clip is dropped, and an empty dataset is never published
        token = "ca9a282c9e77460f8360f564131a8af5"
        match = f"every clip was skipped \\(1\\), e.g. {token}: .*{re.escape(named)}"
    with pytest.raises(ConversionError, match=match):
        convert_nuscenes.convert(root, "v1.0-mini", out, frames=2, on_error=on_error)
    assert not (version_dir / "dataset_info.json").exists()

"""The synthetic nuScenes dataset: devkit compatibility, geometric consistency, bad input."""

import hashlib
import json
import pathlib

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes
from nuscenes.utils import splits
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import points_in_box
from PIL import Image
from pyquaternion import Quaternion

from data_prep import synthetic_nuscenes
from data_prep.synth import rig
from data_prep.synth.scene_writer import SceneWriter

WIDTH, HEIGHT = 128, 72
CAMERAS = rig.CAMERA_CHANNELS


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("synth") / "nuscenes"
    return synthetic_nuscenes.generate(
        out, scenes=2, samples_per_scene=3, width=WIDTH, height=HEIGHT, seed=3
    )


@pytest.fixture(scope="module")
def nusc(dataroot) -> NuScenes:
    return NuScenes("v1.0-mini", str(dataroot), verbose=False)


def test_devkit_loads_with_split_scene_names(nusc):
    names = [s["name"] for s in nusc.scene]
    assert len(names) == 2 and len(nusc.sample) == 6
    assert names[0] in splits.mini_train and names[1] in splits.mini_val
    for sample in nusc.sample:
        assert set(sample["data"]) == {*CAMERAS, "LIDAR_TOP"}
    # Per camera: 5 prefix sweeps + 6 frames per key interval + the last key frame.
    cam_records = [r for r in nusc.sample_data if r["sensor_modality"] == "camera"]
    assert len(cam_records) == 2 * 6 * (5 + 6 * 2 + 1)


def test_devkit_apis_work(nusc, dataroot):
    sample = nusc.sample[1]
    path, boxes, k_33 = nusc.get_sample_data(sample["data"]["CAM_FRONT"])
    assert Image.open(path).size == (WIDTH, HEIGHT)
    np.testing.assert_allclose(k_33[0, 0], 1266.4 * WIDTH / 1600, rtol=1e-6)
    assert len(nusc.sample_annotation) > 0 and all(b.name.startswith("vehicle.") for b in boxes)
    points, depths, _ = nusc.explorer.map_pointcloud_to_image(
        sample["data"]["LIDAR_TOP"], sample["data"]["CAM_FRONT"]
    )
    assert points.shape[1] > 100 and depths.min() >= 1.0
    pc, times = LidarPointCloud.from_file_multisweep(
        nusc, sample, "LIDAR_TOP", "LIDAR_TOP", nsweeps=5
    )
    assert pc.points.shape[0] == 4 and len(np.unique(np.round(times, 3))) == 5
    raw = np.fromfile(
        dataroot / nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["filename"],
        dtype=np.float32,
    ).reshape(-1, 5)
    assert set(np.unique(raw[:, 4])) <= set(range(32)) and raw[:, 3].max() <= 255


def test_sensor_rates_and_ego_poses(nusc):
    for channel, period_us in (("CAM_FRONT", 1e6 / 12), ("LIDAR_TOP", 5e4)):
        chain, token = [], nusc.get("sample_data", nusc.sample[0]["data"][channel])["prev"]
        while token:
            chain.append(nusc.get("sample_data", token))
            token = chain[-1]["prev"]
        assert len(chain) == (5 if channel == "CAM_FRONT" else 9)
        stamps = [nusc.get("sample_data", t)["timestamp"] for t in (r["token"] for r in chain)]
        np.testing.assert_allclose(-np.diff(stamps), period_us, atol=1)
    key_stamps = [s["timestamp"] for s in nusc.sample[:3]]
    assert np.diff(key_stamps).tolist() == [500_000, 500_000]
    for record in nusc.sample_data:
        pose = nusc.get("ego_pose", record["ego_pose_token"])
        assert pose["token"] == record["token"] and pose["timestamp"] == record["timestamp"]
    # Six cameras of one key frame fire at six different times.
    cam_stamps = {nusc.get("sample_data", nusc.sample[0]["data"][c])["timestamp"] for c in CAMERAS}
    assert len(cam_stamps) == 6


def test_calibration_is_the_nuscenes_rig(nusc):
    def calib(channel):
        sd = nusc.get("sample_data", nusc.sample[0]["data"][channel])
        return nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])

    lidar = calib("LIDAR_TOP")
    np.testing.assert_allclose(lidar["translation"], [0.94, 0.0, 1.84])
    # LiDAR y axis points forward (ego +x).
    np.testing.assert_allclose(
        Quaternion(lidar["rotation"]).rotate([0, 1, 0]), [1, 0, 0], atol=1e-9
    )
    for channel, yaw_deg in (
        ("CAM_FRONT", 0),
        ("CAM_FRONT_RIGHT", -55),
        ("CAM_BACK", 180),
        ("CAM_BACK_LEFT", 110),
    ):
        optical_axis = Quaternion(calib(channel)["rotation"]).rotate([0, 0, 1])
        expected = [np.cos(np.deg2rad(yaw_deg)), np.sin(np.deg2rad(yaw_deg)), 0.0]
        np.testing.assert_allclose(optical_axis, expected, atol=1e-9)
    fx_back = calib("CAM_BACK")["camera_intrinsic"][0][0]
    assert fx_back < 0.7 * calib("CAM_FRONT")["camera_intrinsic"][0][0]


def _depth_gt(dataroot, sample, channel) -> np.ndarray:
    index = json.loads((dataroot / "depth_gt" / "index.json").read_text())
    return np.load(dataroot / index[sample["token"]][channel])


def _interp_depth(depth_hw: np.ndarray, u_n: np.ndarray, v_n: np.ndarray):
    """GT depth at continuous pixel positions: bilinear interpolation of inverse depth between
    the four nearest pixel centres, exact on a plane (where 1/z is affine in u, v). Valid where
    all four hit a surface and are coplanar (no depth edge between them)."""
    x_n, y_n = u_n, v_n  # pixel centres at integer coordinates
    x0 = np.clip(np.floor(x_n).astype(int), 0, depth_hw.shape[1] - 2)
    y0 = np.clip(np.floor(y_n).astype(int), 0, depth_hw.shape[0] - 2)
    fx, fy = np.clip(x_n - x0, 0, 1), np.clip(y_n - y0, 0, 1)
    corners = [
        depth_hw[y0, x0],
        depth_hw[y0, x0 + 1],
        depth_hw[y0 + 1, x0],
        depth_hw[y0 + 1, x0 + 1],
    ]
    valid = np.all([c > 0 for c in corners], axis=0)
    inv = [1.0 / np.where(c > 0, c, 1.0) for c in corners]
    valid &= np.abs(inv[0] + inv[3] - inv[1] - inv[2]) < 1e-3 * inv[0]  # affine: coplanar
    inv_depth = (inv[0] * (1 - fx) + inv[1] * fx) * (1 - fy) + (
        inv[2] * (1 - fx) + inv[3] * fx
    ) * fy
    return 1.0 / inv_depth, valid


def _moving_vehicle_points(nusc, sample) -> np.ndarray:
    """Mask of the key LiDAR points inside annotated boxes of moving vehicles."""
    lidar_token = sample["data"]["LIDAR_TOP"]
    path, boxes, _ = nusc.get_sample_data(lidar_token)  # boxes in the LiDAR frame
    points_3n = LidarPointCloud.from_file(path).points[:3]
    moving_n = np.zeros(points_3n.shape[1], dtype=bool)
    for box in boxes:
        attributes = nusc.get("sample_annotation", box.token)["attribute_tokens"]
        if nusc.get("attribute", attributes[0])["name"] == "vehicle.moving":
            moving_n |= points_in_box(box, points_3n, wlh_factor=1.2)
    return moving_n


def test_lidar_depth_matches_dense_gt_in_every_camera(nusc, dataroot):
    """Key LiDAR points projected with the stored calibration and each sensor's own ego pose
    land where the GT depth is the point's depth. Left out: moving vehicles (they moved between
    the LiDAR and camera timestamps) and points the camera cannot see (GT closer: occluded by
    parallax between the two sensors). Using the LiDAR's ego pose for the cameras fails."""
    for sample in nusc.sample:
        moving_n = _moving_vehicle_points(nusc, sample)
        for channel in CAMERAS:
            index, u, v, depths = _project_key_lidar(nusc, sample, channel)
            static = ~moving_n[index]
            depth_hw = _depth_gt(dataroot, sample, channel)
            assert depth_hw.shape == (HEIGHT, WIDTH) and depth_hw.dtype == np.float32
            gt, valid = _interp_depth(depth_hw, u[static], v[static])
            seen = valid & (gt > depths[static] * (1 - 2e-3))
            rel_err = np.abs(gt[seen] - depths[static][seen]) / depths[static][seen]
            where = (channel, sample["token"])
            assert seen.mean() > 0.4 and (rel_err < 2e-3).mean() > 0.9, where
            assert np.median(rel_err) < 1e-4, where


def _project_key_lidar(nusc, sample, cam) -> tuple[np.ndarray, ...]:
    """(point index, u, v, depth) of the key LiDAR points that land in camera `cam` (u, v
    continuous pixel coordinates, pixel centres at integers), moved
    lidar -> ego(lidar time) -> global -> ego(camera time) -> camera with the stored records."""
    lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cam_sd = nusc.get("sample_data", sample["data"][cam])
    pc = LidarPointCloud.from_file(str(nusc.get_sample_data_path(lidar_sd["token"])))
    steps = (
        (nusc.get("calibrated_sensor", lidar_sd["calibrated_sensor_token"]), False),
        (nusc.get("ego_pose", lidar_sd["ego_pose_token"]), False),
        (nusc.get("ego_pose", cam_sd["ego_pose_token"]), True),
        (nusc.get("calibrated_sensor", cam_sd["calibrated_sensor_token"]), True),
    )
    for record, inverse in steps:
        rotation_33 = Quaternion(record["rotation"]).rotation_matrix
        if inverse:
            pc.translate(-np.array(record["translation"]))
            pc.rotate(rotation_33.T)
        else:
            pc.rotate(rotation_33)
            pc.translate(np.array(record["translation"]))
    k_33 = np.array(
        nusc.get("calibrated_sensor", cam_sd["calibrated_sensor_token"])["camera_intrinsic"]
    )
    d = pc.points[2]
    uvw = k_33 @ pc.points[:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = uvw[0] / d, uvw[1] / d
    keep = (d > 1.0) & (u >= -0.5) & (u < WIDTH - 0.5) & (v >= -0.5) & (v < HEIGHT - 0.5)
    return np.nonzero(keep)[0], u[keep], v[keep], d[keep]


def test_surface_point_has_same_colour_in_two_cameras(nusc, dataroot):
    """LiDAR points seen by two overlapping cameras (GT depth agrees in both, so neither view
    is occluded) have the same JPEG colour in both, far closer than unrelated point pairs."""
    diffs, shuffled = [], []
    rng = np.random.default_rng(0)
    pairs = (
        ("CAM_FRONT", "CAM_FRONT_LEFT"),
        ("CAM_FRONT", "CAM_FRONT_RIGHT"),
        ("CAM_BACK", "CAM_BACK_LEFT"),
        ("CAM_BACK", "CAM_BACK_RIGHT"),
    )
    for sample in nusc.sample:
        for cams in pairs:
            views = [_project_key_lidar(nusc, sample, cam) for cam in cams]
            both = np.intersect1d(views[0][0], views[1][0])
            colours, visible = [], np.ones(len(both), dtype=bool)
            for cam, (index, u, v, d) in zip(cams, views):
                pos = np.searchsorted(index, both)
                u, v, d = np.rint(u[pos]).astype(int), np.rint(v[pos]).astype(int), d[pos]
                image = np.asarray(Image.open(nusc.get_sample_data_path(sample["data"][cam])))
                colours.append(image[v, u].astype(float))
                visible &= np.abs(_depth_gt(dataroot, sample, cam)[v, u] - d) < 0.02 * d
            a, b = colours[0][visible], colours[1][visible]
            diffs.append(np.abs(a - b).mean(axis=1))
            shuffled.append(np.abs(a - b[rng.permutation(len(b))]).mean(axis=1))
    diffs, shuffled = np.concatenate(diffs), np.concatenate(shuffled)
    assert len(diffs) > 50
    assert np.median(diffs) < 12 and np.median(diffs) < 0.3 * np.median(shuffled)


def test_moving_vehicles_move_and_parked_ones_stay(nusc):
    moved = {"vehicle.moving": [], "vehicle.parked": []}
    for instance in nusc.instance:
        ann = nusc.get("sample_annotation", instance["first_annotation_token"])
        attribute = nusc.get("attribute", ann["attribute_tokens"][0])["name"]
        while ann["next"]:
            nxt = nusc.get("sample_annotation", ann["next"])
            moved[attribute].append(
                np.linalg.norm(np.subtract(nxt["translation"], ann["translation"]))
            )
            ann = nxt
    assert len(moved["vehicle.moving"]) > 0 and min(moved["vehicle.moving"]) > 1.0
    assert len(moved["vehicle.parked"]) > 0 and max(moved["vehicle.parked"]) == 0.0


def _digest(root: pathlib.Path) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_dataset_whatever_the_worker_count(tmp_path):
    args = ["--scenes", "2", "--samples-per-scene", "1", "--width", "32", "--height", "18"]
    assert synthetic_nuscenes.main(["--out", str(tmp_path / "a"), *args, "--workers", "2"]) == 0
    synthetic_nuscenes.generate(tmp_path / "b", 2, 1, 32, 18, seed=0, workers=1)
    synthetic_nuscenes.generate(tmp_path / "c", 2, 1, 32, 18, seed=1, workers=1)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no temporaries left


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"scenes": 0}, "scenes"),
        ({"samples_per_scene": -1}, "samples_per_scene"),
        ({"width": 0}, "width"),
        ({"height": -5}, "height"),
        ({"width": 32.5}, "width"),
        ({"scenes": 11}, "scenes=11"),
        ({"version": "v2.0"}, "version"),
        ({"seed": -1}, "seed"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_arguments_raise_and_write_nothing(tmp_path, kwargs, key):
    with pytest.raises(ValueError, match=key):
        synthetic_nuscenes.generate(tmp_path / "out", **{"width": 32, "height": 18, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_cli_rejects_bad_input_with_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        synthetic_nuscenes.main(["--out", str(tmp_path / "out"), "--width", "0"])
    assert exit_info.value.code == 2 and "width=0" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        synthetic_nuscenes.generate(out, 1, 1, 32, 18)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    synthetic_nuscenes.generate(out, 1, 1, 32, 18, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "v1.0-mini" / "scene.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_run_leaves_no_partial_dataset(tmp_path, monkeypatch):
    def fail_midway(self):
        (self.root / "maps" / "half_written.png").write_bytes(b"x")
        raise OSError("disk full")

    monkeypatch.setattr(SceneWriter, "write", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        synthetic_nuscenes.generate(tmp_path / "out", 1, 1, 32, 18)
    assert list(tmp_path.iterdir()) == []


def test_temporaries_of_killed_runs_are_removed(tmp_path):
    stale = tmp_path / ".out.partial-999999999"  # above Linux's pid_max: that process is gone
    (stale / "samples").mkdir(parents=True)
    synthetic_nuscenes.generate(tmp_path / "out", 1, 1, 32, 18)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

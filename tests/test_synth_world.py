"""The procedural world: a smooth ego route with a turn, traffic that never hits the ego,
and a sensor timeline with the nuScenes rates."""

import numpy as np

from data_prep.synth import rig, scene_writer
from data_prep.synth.world import ACTIVE_RADIUS, EGO_SPEED, build_world


def test_ego_route_is_smooth_and_turns():
    world = build_world(seed=11, duration=6.0)
    times_m = np.linspace(0.0, 6.0, 601)
    poses = [world.ego_pose(t) for t in times_m]
    xy_m2 = np.array([p[0] for p in poses])
    yaw_m = np.array([p[1] for p in poses])
    speed_m = np.linalg.norm(np.diff(xy_m2, axis=0), axis=1) / np.diff(times_m)
    np.testing.assert_allclose(speed_m, EGO_SPEED, rtol=0.02)
    assert np.max(np.abs(np.diff(yaw_m))) < 0.02  # no heading jumps at 100 Hz
    assert abs(yaw_m[-1] - yaw_m[0]) > np.deg2rad(80)  # the first intersection is a turn
    # Heading follows the direction of travel.
    travel_m = np.arctan2(*np.diff(xy_m2, axis=0).T[::-1])
    np.testing.assert_allclose(np.angle(np.exp(1j * (travel_m - yaw_m[1:]))), 0.0, atol=0.02)


def test_traffic_moves_and_never_overlaps_the_ego():
    for seed in range(4):
        world = build_world(seed=seed, duration=4.0)
        veh = world.vehicles
        assert veh.moving_v.sum() >= 4 and (~veh.moving_v).sum() >= 4
        for t in np.linspace(0.0, 4.0, 41):
            ego_xy_2, _ = world.ego_pose(t)
            gap_v = np.linalg.norm(veh.centers_at(t)[:, :2] - ego_xy_2, axis=1)
            # Parked cars are at the curb, 4 m from the ego lane centre; cars are < 2.6 m wide.
            assert gap_v.min() > 2.5, (seed, t)
        near = world.primitives_at(2.0)
        ego_xy_2, _ = world.ego_pose(2.0)
        assert len(near) > 50
        assert np.all(np.linalg.norm(near.center_p3[:, :2] - ego_xy_2, axis=1) < ACTIVE_RADIUS)


def test_sensor_timeline_has_nuscenes_rates():
    cams = scene_writer._frame_times(3, scene_writer.CAMERA_PER_KEY, rig.CAMERA_HZ, -35_500)
    lidar = scene_writer._frame_times(3, scene_writer.LIDAR_PER_KEY, rig.LIDAR_HZ, 0)
    assert [m for m, _ in cams] == list(range(-5, 13)) and [m for m, _ in lidar] == list(
        range(-9, 21)
    )
    np.testing.assert_allclose(np.diff([dt for _, dt in cams]), 1e6 / 12, atol=1)
    assert set(np.diff([dt for _, dt in lidar])) == {50_000}
    # Key frames (every 6th camera / 10th LiDAR frame) are 0.5 s apart.
    assert [dt for m, dt in cams if m % 6 == 0] == [-35_500, 464_500, 964_500]
    assert [dt for m, dt in lidar if m % 10 == 0] == [0, 500_000, 1_000_000]

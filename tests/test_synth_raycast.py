"""Ray casting of the synthetic world: analytic hits, and per-sensor culling that never
changes the result compared with testing every primitive against every ray."""

import numpy as np
import pytest

from data_prep.synth import raycast, rig, sensors
from data_prep.synth.world import KIND_BOX, KIND_CYLINDER, KIND_SPHERE, Primitives, build_world


def _one(kind: int, center, half, yaw=0.0) -> Primitives:
    return Primitives(
        np.array([kind]),
        np.array([center], float),
        np.array([half], float),
        np.array([yaw]),
        np.array([1]),
        np.array([[0.5, 0.5, 0.5]]),
        np.array([7]),
    )


@pytest.mark.parametrize(
    "prim, t_expected, normal_expected",
    [
        (_one(KIND_BOX, (10, 0, 1), (1, 1, 1)), 9.0, (-1, 0, 0)),
        (_one(KIND_BOX, (10, 0, 1), (1, 1, 1), yaw=np.pi / 4), 10 - np.sqrt(2), None),
        (_one(KIND_CYLINDER, (10, 0, 1), (0.5, 0.5, 1)), 9.5, (-1, 0, 0)),
        (_one(KIND_SPHERE, (10, 0, 1), (2, 2, 2)), 8.0, (-1, 0, 0)),
    ],
)
def test_analytic_first_hits(prim, t_expected, normal_expected):
    origin_3 = np.array([0.0, 0.0, 1.0])
    # One ray straight at the primitive, one up into the sky, one down onto the ground.
    dirs_hw3 = np.array([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.6, -0.8]]])
    full = [(0, slice(None), slice(None))]
    hits = raycast.cast(origin_3, dirs_hw3, prim, iter(full))
    np.testing.assert_allclose(hits.t_hw[0], [t_expected, np.inf, 1.25], rtol=1e-12)
    assert hits.index_hw[0].tolist() == [0, raycast.MISS, raycast.GROUND]
    points_r3 = origin_3 + hits.t_hw[0, [0, 2], None] * dirs_hw3[0, [0, 2]]
    normals_r3 = raycast.surface_normals(prim, hits.index_hw[0, [0, 2]], points_r3)
    np.testing.assert_allclose(normals_r3[1], [0, 0, 1])
    if normal_expected is not None:
        np.testing.assert_allclose(normals_r3[0], normal_expected, atol=1e-9)


@pytest.fixture(scope="module")
def world():
    return build_world(seed=5, duration=2.0)


def test_camera_culling_is_conservative(world):
    t = 1.3
    prims = world.primitives_at(t)
    for camera in rig.make_cameras(96, 54):
        cam2world_44 = sensors.ego2global(world, t) @ camera.cam2ego_44
        dirs_hw3 = rig.camera_directions(camera) @ cam2world_44[:3, :3].T
        origin_3 = cam2world_44[:3, 3]
        culled = raycast.cast(
            origin_3,
            dirs_hw3,
            prims,
            raycast.camera_blocks(prims, np.linalg.inv(cam2world_44), camera.intrinsic_33, 96, 54),
        )
        full = raycast.cast(
            origin_3, dirs_hw3, prims, ((p, slice(None), slice(None)) for p in range(len(prims)))
        )
        np.testing.assert_array_equal(culled.t_hw, full.t_hw)
        np.testing.assert_array_equal(culled.index_hw, full.index_hw)
        assert (full.index_hw >= 0).mean() > 0.1  # the view is not just ground and sky


def test_lidar_culling_is_conservative(world):
    t = 0.7
    prims = world.primitives_at(t)
    lidar2world_44 = sensors.ego2global(world, t) @ rig.lidar2ego()
    dirs_ea3 = rig.lidar_directions(360) @ lidar2world_44[:3, :3].T
    origin_3 = lidar2world_44[:3, 3]
    elevations_e = np.deg2rad(rig.LIDAR_ELEVATIONS_DEG)
    culled = raycast.cast(
        origin_3,
        dirs_ea3,
        prims,
        raycast.lidar_blocks(prims, np.linalg.inv(lidar2world_44), elevations_e, 360),
    )
    full = raycast.cast(
        origin_3, dirs_ea3, prims, ((p, slice(None), slice(None)) for p in range(len(prims)))
    )
    np.testing.assert_array_equal(culled.t_hw, full.t_hw)
    np.testing.assert_array_equal(culled.index_hw, full.index_hw)


def test_lidar_points_lie_on_the_scene(world):
    """LiDAR returns are first hits: back in world coordinates they are on the ground (z = 0)
    or on the surface of the primitive they report, and within range."""
    points_n5, ident_n = sensors.scan_lidar(world, 0.5, 360)
    assert points_n5.dtype == np.float32 and points_n5.shape[1] == 5
    ranges_n = np.linalg.norm(points_n5[:, :3], axis=1)
    assert ranges_n.min() > 1.0 and ranges_n.max() < rig.LIDAR_MAX_RANGE
    lidar2world_44 = sensors.ego2global(world, 0.5) @ rig.lidar2ego()
    world_n3 = points_n5[:, :3].astype(float) @ lidar2world_44[:3, :3].T + lidar2world_44[:3, 3]
    np.testing.assert_allclose(world_n3[ident_n == -1, 2], 0.0, atol=1e-3)
    assert (ident_n >= 0).sum() > 100
    prims = world.primitives_at(0.5)
    order_p = np.argsort(prims.ident_p)
    p_n = order_p[np.searchsorted(prims.ident_p[order_p], ident_n[ident_n >= 0])]
    assert np.all(prims.ident_p[p_n] == ident_n[ident_n >= 0])
    rel_n3 = world_n3[ident_n >= 0] - prims.center_p3[p_n]
    half_n3, yaw_n = prims.half_p3[p_n], prims.yaw_p[p_n]
    c, s = np.cos(yaw_n), np.sin(yaw_n)
    local_n3 = np.stack(
        [c * rel_n3[:, 0] + s * rel_n3[:, 1], -s * rel_n3[:, 0] + c * rel_n3[:, 1], rel_n3[:, 2]],
        axis=1,
    )
    box_gap = np.max(np.abs(local_n3) - half_n3, axis=1)
    cylinder_gap = np.hypot(rel_n3[:, 0], rel_n3[:, 1]) - half_n3[:, 0]
    sphere_gap = np.linalg.norm(rel_n3, axis=1) - half_n3[:, 0]
    kind_n = prims.kind_p[p_n]
    gap_n = np.select(
        [kind_n == KIND_BOX, kind_n == KIND_CYLINDER], [box_gap, cylinder_gap], sphere_gap
    )
    np.testing.assert_allclose(gap_n, 0.0, atol=2e-3)

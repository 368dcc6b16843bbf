"""BEV rasterisation of 3D boxes: analytic cell sets for axis-aligned and rotated boxes."""

from __future__ import annotations

import numpy as np
import pytest

from mim4d_jax.data.bev import bev_cell_centres, category_keep, rasterise_bev

# 8 x 10 cells of 1 m: columns x from -5 to 5, rows y from -4 to 4; centres at half metres.
PC_RANGE = (-5.0, -4.0, -3.0, 5.0, 4.0, 1.0)
BEV_HW = (8, 10)


def _cells(mask_yx: np.ndarray) -> set[tuple[int, int]]:
    return {(int(j), int(i)) for j, i in zip(*np.nonzero(mask_yx))}


def test_cell_centres_follow_the_volume_layout():
    x_w, y_h = bev_cell_centres(PC_RANGE, BEV_HW)
    np.testing.assert_allclose(x_w, np.arange(10) - 4.5)
    np.testing.assert_allclose(y_h, np.arange(8) - 3.5)


def test_axis_aligned_box_covers_exactly_its_cells():
    # Length 3 m along x (yaw 0), width 2 m along y, centred at (1.2, -1.1): x in [-0.3, 2.7]
    # holds column centres 0.5, 1.5, 2.5 (i = 5, 6, 7); y in [-2.1, -0.1] holds row centres
    # -1.5, -0.5 (j = 2, 3).
    mask_yx = rasterise_bev([[1.2, -1.1, 0.0]], [[2.0, 3.0, 1.5]], [0.0], [True], PC_RANGE, BEV_HW)
    assert mask_yx.shape == BEV_HW and mask_yx.dtype == np.float32
    assert _cells(mask_yx) == {(j, i) for j in (2, 3) for i in (5, 6, 7)}


def test_rotated_box_length_along_y():
    # yaw pi/2: the 3 m length runs along +y, the 0.9 m width along x. Centre (-2.5, 0.4):
    # x in [-2.95, -2.05] holds column centre -2.5 (i = 2); y in [-1.1, 1.9] holds row centres
    # -0.5, 0.5, 1.5 (j = 3, 4, 5). With yaw 0 the same box would lie along x instead.
    along_y = rasterise_bev(
        [[-2.5, 0.4, 0.0]], [[0.9, 3.0, 1.5]], [np.pi / 2], [True], PC_RANGE, BEV_HW
    )
    assert _cells(along_y) == {(3, 2), (4, 2), (5, 2)}
    along_x = rasterise_bev([[-2.5, 0.4, 0.0]], [[0.9, 3.0, 1.5]], [0.0], [True], PC_RANGE, BEV_HW)
    assert _cells(along_x) == {(4, 1), (4, 2), (4, 3)}


def test_box_rotated_45_degrees_is_a_diamond():
    # A square of side 1.9 sqrt(2) rotated by 45 degrees is the diamond |dx| + |dy| <= 1.9
    # around (0.5, 0.5), a cell centre: it holds that cell and its four edge neighbours only.
    side = 1.9 * np.sqrt(2)
    mask_yx = rasterise_bev(
        [[0.5, 0.5, 0.0]], [[side, side, 1.0]], [np.pi / 4], [True], PC_RANGE, BEV_HW
    )
    assert _cells(mask_yx) == {(4, 5), (3, 5), (5, 5), (4, 4), (4, 6)}


def test_unkept_boxes_and_boxes_outside_the_grid_leave_no_cells():
    centers = [[0.5, 0.5, 0.0], [40.0, 0.0, 0.0], [4.9, 3.9, 0.0]]
    sizes = [[1.0, 1.0, 1.0], [2.0, 4.0, 1.0], [1.0, 1.0, 1.0]]
    mask_yx = rasterise_bev(centers, sizes, [0.0, 0.3, 0.0], [False, True, True], PC_RANGE, BEV_HW)
    assert _cells(mask_yx) == {(7, 9)}  # the corner box: [4.4, 5.4] x [3.4, 4.4] holds (4.5, 3.5)
    empty = rasterise_bev(np.zeros((0, 3)), np.zeros((0, 3)), [], [], PC_RANGE, BEV_HW)
    assert empty.shape == BEV_HW and not empty.any()


def test_mask_matches_a_brute_force_check_on_random_boxes():
    rng = np.random.default_rng(0)
    num = 20
    centers = np.concatenate([rng.uniform(-6, 6, (num, 2)), np.zeros((num, 1))], axis=1)
    sizes = rng.uniform(0.3, 4.0, (num, 3))
    yaws = rng.uniform(-np.pi, np.pi, num)
    keep = rng.uniform(size=num) < 0.7
    mask_yx = rasterise_bev(centers, sizes, yaws, keep, PC_RANGE, BEV_HW)
    x_w, y_h = bev_cell_centres(PC_RANGE, BEV_HW)
    expected = np.zeros(BEV_HW, np.float32)
    for k in np.nonzero(keep)[0]:
        for j in range(8):
            for i in range(10):
                dx, dy = x_w[i] - centers[k, 0], y_h[j] - centers[k, 1]
                along = np.cos(yaws[k]) * dx + np.sin(yaws[k]) * dy
                across = -np.sin(yaws[k]) * dx + np.cos(yaws[k]) * dy
                if abs(along) <= sizes[k, 1] / 2 and abs(across) <= sizes[k, 0] / 2:
                    expected[j, i] = 1.0
    assert expected.sum() > 10
    np.testing.assert_array_equal(mask_yx, expected)


def test_category_keep_and_bad_arguments():
    names = ["vehicle.car", "human.pedestrian.adult", "vehicle.bus.rigid", "movable_object.barrier"]
    np.testing.assert_array_equal(category_keep(names), [True, False, True, False])
    np.testing.assert_array_equal(category_keep(names, ("human.",)), [False, True, False, False])
    with pytest.raises(ValueError, match="bev_hw"):
        rasterise_bev([[0, 0, 0]], [[1, 1, 1]], [0], [True], PC_RANGE, (0, 4))
    with pytest.raises(ValueError, match="disagree"):
        rasterise_bev([[0, 0, 0]], [[1, 1, 1]], [0, 1], [True], PC_RANGE, BEV_HW)

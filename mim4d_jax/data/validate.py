"""Plausibility checks of a parsed clip's geometry, before any of it reaches the model.

A record can pass its checksum and still hold values no sensor rig produces (a converter bug,
a damaged source file): one non-finite or huge calibration entry turns the whole batch's loss
into NaN, and the trainer can then only say which step failed, not which record. These checks
name the record and the key instead. The bounds are loose on purpose: they reject what cannot
be a driving rig (a translation of 1e5 m, a rotation that is not a rotation), never a real one.
"""

from __future__ import annotations

import numpy as np

from mim4d_jax.data.tfrecord import CorruptRecordError

MAX_TRANSLATION_M = 1e5  # global poses of a city map are kilometres, never 100 km
MAX_POINT_M = 1e4  # LiDAR returns are within a few hundred metres of the sensor
ROTATION_TOL = 1e-3  # |R R^T - I| and |det R - 1| of a float64 rotation from quaternions
MAX_FOCAL_PX = 1e6
RIGID_KEYS = ("cam2ego", "ego2global", "lidar2ego", "lidar_ego2global")


def _index_text(index: tuple[int, ...], shape: tuple[int, ...]) -> str:
    """'[camera 1, frame 2]' for a leading (N, T) index, '' for a single matrix."""
    names = ("camera", "frame")
    parts = [f"{names[i]} {v}" for i, v in enumerate(index[: len(shape)])]
    return f" [{', '.join(parts)}]" if parts else ""


def _first(bad_x: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(bad_x)[0])


def check_rigid(matrices_x44: np.ndarray, key: str, where: str) -> None:
    """Each (4, 4) is finite, [R t; 0 0 0 1] with R orthonormal (det +1) and |t| bounded.
    Vectorised over the leading (camera, frame) axes; the first failing matrix is named."""
    m_x44 = matrices_x44.reshape(-1, 4, 4)
    lead = matrices_x44.shape[:-2]

    def at(flat: int) -> str:
        index = np.unravel_index(flat, lead) if lead else ()
        return f"{where}: feature {key!r}{_index_text(tuple(int(i) for i in index), lead)}"

    finite_x = np.isfinite(m_x44).all(axis=(1, 2))
    if not finite_x.all():
        flat, row, col = _first(~np.isfinite(m_x44))
        raise CorruptRecordError(
            f"{at(flat)} has a non-finite entry {m_x44[flat, row, col]} at row {row}, col {col}"
        )
    last_ok_x = np.isclose(m_x44[:, 3], (0.0, 0.0, 0.0, 1.0), atol=1e-6).all(axis=1)
    if not last_ok_x.all():
        flat = _first(~last_ok_x)[0]
        raise CorruptRecordError(
            f"{at(flat)}: last row is {m_x44[flat, 3].tolist()}, not [0, 0, 0, 1]"
        )
    rot_x33, trans_x3 = m_x44[:, :3, :3], m_x44[:, :3, 3]
    ortho_x = np.abs(rot_x33 @ rot_x33.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
    det_x = np.linalg.det(rot_x33)
    bad_rot_x = (ortho_x > ROTATION_TOL) | (np.abs(det_x - 1.0) > ROTATION_TOL)
    if bad_rot_x.any():
        flat = _first(bad_rot_x)[0]
        raise CorruptRecordError(
            f"{at(flat)}: rotation block is not a rotation (|R R^T - I| = {ortho_x[flat]:.3g}, "
            f"det = {det_x[flat]:.6g}; allowed within {ROTATION_TOL})"
        )
    norm_x = np.abs(trans_x3).max(axis=1)  # max-norm: no overflow on 1e308
    if (norm_x >= MAX_TRANSLATION_M).any():
        flat = _first(norm_x >= MAX_TRANSLATION_M)[0]
        raise CorruptRecordError(
            f"{at(flat)}: translation {trans_x3[flat].tolist()} has a component of "
            f"{norm_x[flat]:.3g} m "
            f"(each must be < {MAX_TRANSLATION_M:g} m)"
        )


def check_intrinsics(intrinsics_x33: np.ndarray, where: str) -> None:
    """Each (3, 3) is finite, [fx s cx; 0 fy cy; 0 0 1] with 0 < fx, fy < MAX_FOCAL_PX."""
    k_x33 = intrinsics_x33.reshape(-1, 3, 3)
    lead = intrinsics_x33.shape[:-2]
    fx_x, fy_x = k_x33[:, 0, 0], k_x33[:, 1, 1]
    ok_x = (
        np.isfinite(k_x33).all(axis=(1, 2))
        & (fx_x > 0)
        & (fx_x < MAX_FOCAL_PX)
        & (fy_x > 0)
        & (fy_x < MAX_FOCAL_PX)
        & np.isclose(k_x33[:, 2], (0.0, 0.0, 1.0), atol=1e-6).all(axis=1)
        & (np.abs(k_x33[:, 1, 0]) <= 1e-6)
    )
    if not ok_x.all():
        flat = _first(~ok_x)[0]
        index = tuple(int(i) for i in np.unravel_index(flat, lead)) if lead else ()
        raise CorruptRecordError(
            f"{where}: feature 'intrinsics'{_index_text(index, lead)} is not a camera matrix "
            f"[fx 0 cx; 0 fy cy; 0 0 1] with finite 0 < fx, fy < {MAX_FOCAL_PX:g} px: "
            f"{k_x33[flat].tolist()}"
        )


def check_points(points_pc: np.ndarray, where: str) -> None:
    """LiDAR points: finite, coordinates within MAX_POINT_M of the sensor."""
    if points_pc.size == 0:
        return
    finite_p = np.all(np.isfinite(points_pc), axis=1)
    if not finite_p.all():
        first = int(np.argmin(finite_p))
        raise CorruptRecordError(
            f"{where}: feature 'lidar_points' point {first} is non-finite: "
            f"{points_pc[first].tolist()}"
        )
    far_p = np.abs(points_pc[:, :3]).max(axis=1) >= MAX_POINT_M
    if far_p.any():
        first = int(np.argmax(far_p))
        raise CorruptRecordError(
            f"{where}: feature 'lidar_points' point {first} at {points_pc[first, :3].tolist()} "
            f"is {MAX_POINT_M:g} m or more from the sensor"
        )


def check_clip_geometry(clip: dict, where: str) -> None:
    """Raises CorruptRecordError naming `where` (shard and record) and the key of the first
    implausible value among the clip's calibration, poses and LiDAR points."""
    for key in RIGID_KEYS:
        check_rigid(np.asarray(clip[key], np.float64), key, where)
    check_intrinsics(np.asarray(clip["intrinsics"], np.float64), where)
    check_points(np.asarray(clip["lidar_points"]), where)

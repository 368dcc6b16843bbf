"""Bird's-eye-view targets from 3D boxes: the vehicle mask of a BEV segmentation probe.

The grid is the model's BEV layout of a (B, Z, Y, X, C) volume: rows are y, columns are x.
With `pc_range = (x0, y0, z0, x1, y1, z1)` and `bev_hw = (H, W)`, row j's centre is at
y0 + (j + 0.5) (y1 - y0) / H and column i's at x0 + (i + 0.5) (x1 - x0) / W. A cell is
positive iff its centre lies inside the footprint (the rotated length x width rectangle) of a
kept box, as in Lift-Splat-Shoot's vehicle segmentation. Box heights play no part.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

VEHICLE_PREFIXES = ("vehicle.",)


def category_keep(
    categories: Sequence[str], prefixes: Sequence[str] = VEHICLE_PREFIXES
) -> np.ndarray:
    """(B,) bool: which boxes have a category name starting with one of `prefixes`
    (nuScenes names, e.g. "vehicle.car"; the default keeps every vehicle)."""
    prefixes = tuple(prefixes)
    return np.array([str(name).startswith(prefixes) for name in categories], dtype=bool)


def bev_cell_centres(
    pc_range: Sequence[float], bev_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(x_w, y_h): metric centres of the W columns and H rows."""
    x0, y0, _, x1, y1, _ = (float(v) for v in pc_range)
    height, width = bev_hw
    x_w = x0 + (np.arange(width) + 0.5) * (x1 - x0) / width
    y_h = y0 + (np.arange(height) + 0.5) * (y1 - y0) / height
    return x_w, y_h


def rasterise_bev(
    center_b3: np.ndarray,
    size_b3: np.ndarray,
    yaw_b: np.ndarray,
    keep_b: np.ndarray,
    pc_range: Sequence[float],
    bev_hw: tuple[int, int],
) -> np.ndarray:
    """(H, W) float32 mask, 1 where a cell centre lies inside a kept box's footprint.

    `center_b3` metres in the volume frame, `size_b3` (width, length, height) as in nuScenes,
    `yaw_b` radians of the length axis from +x, counter-clockwise about +z. The output shape
    depends only on `bev_hw`, also for zero boxes.
    """
    height, width = (int(v) for v in bev_hw)
    if height <= 0 or width <= 0:
        raise ValueError(f"bev_hw={tuple(bev_hw)}: both sides must be positive")
    if len(pc_range) != 6:
        raise ValueError(f"pc_range={tuple(pc_range)}: expected (x0, y0, z0, x1, y1, z1)")
    x0, y0, _, x1, y1, _ = (float(v) for v in pc_range)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"pc_range={tuple(pc_range)}: needs x1 > x0 and y1 > y0")
    center_b3 = np.asarray(center_b3, np.float64).reshape(-1, 3)
    size_b3 = np.asarray(size_b3, np.float64).reshape(-1, 3)
    yaw_b = np.asarray(yaw_b, np.float64).reshape(-1)
    keep_b = np.asarray(keep_b, bool).reshape(-1)
    num = len(center_b3)
    if not (len(size_b3) == len(yaw_b) == len(keep_b) == num):
        raise ValueError(
            f"box arrays disagree: center {center_b3.shape}, size {size_b3.shape}, "
            f"yaw {yaw_b.shape}, keep {keep_b.shape}"
        )
    mask_yx = np.zeros((height, width), np.float32)
    kept = np.nonzero(keep_b)[0]
    if kept.size == 0:
        return mask_yx
    x_w, y_h = bev_cell_centres(pc_range, (height, width))
    cos_k, sin_k = np.cos(yaw_b[kept]), np.sin(yaw_b[kept])
    half_len_k, half_wid_k = 0.5 * size_b3[kept, 1], 0.5 * size_b3[kept, 0]
    # Only the cells inside each box's axis-aligned bound can be positive: test those, so the
    # work grows with the boxes' area rather than boxes x grid.
    reach_x_k = np.abs(cos_k) * half_len_k + np.abs(sin_k) * half_wid_k
    reach_y_k = np.abs(sin_k) * half_len_k + np.abs(cos_k) * half_wid_k
    cell_x, cell_y = (x1 - x0) / width, (y1 - y0) / height
    col_lo = np.clip(np.floor((center_b3[kept, 0] - reach_x_k - x0) / cell_x - 0.5), 0, width)
    col_hi = np.clip(np.ceil((center_b3[kept, 0] + reach_x_k - x0) / cell_x - 0.5) + 1, 0, width)
    row_lo = np.clip(np.floor((center_b3[kept, 1] - reach_y_k - y0) / cell_y - 0.5), 0, height)
    row_hi = np.clip(np.ceil((center_b3[kept, 1] + reach_y_k - y0) / cell_y - 0.5) + 1, 0, height)
    span_c = int(max(0, (col_hi - col_lo).max()))
    span_r = int(max(0, (row_hi - row_lo).max()))
    if span_c == 0 or span_r == 0:
        return mask_yx
    # Per kept box k a (span_r, span_c) window of candidate cells, clipped to the grid.
    cols_kc = col_lo[:, None].astype(np.int64) + np.arange(span_c)[None]
    rows_kr = row_lo[:, None].astype(np.int64) + np.arange(span_r)[None]
    valid_kc = cols_kc < col_hi[:, None]
    valid_kr = rows_kr < row_hi[:, None]
    dx_kc = x_w[np.minimum(cols_kc, width - 1)] - center_b3[kept, 0][:, None]
    dy_kr = y_h[np.minimum(rows_kr, height - 1)] - center_b3[kept, 1][:, None]
    # Cell centre in the box frame: along = projection on the length axis, across = on width.
    along_krc = cos_k[:, None, None] * dx_kc[:, None, :] + sin_k[:, None, None] * dy_kr[:, :, None]
    across_krc = (
        -sin_k[:, None, None] * dx_kc[:, None, :] + cos_k[:, None, None] * dy_kr[:, :, None]
    )
    inside_krc = (
        (np.abs(along_krc) <= half_len_k[:, None, None])
        & (np.abs(across_krc) <= half_wid_k[:, None, None])
        & valid_kr[:, :, None]
        & valid_kc[:, None, :]
    )
    k_idx, r_idx, c_idx = np.nonzero(inside_krc)
    mask_yx[rows_kr[k_idx, r_idx], cols_kc[k_idx, c_idx]] = 1.0
    return mask_yx

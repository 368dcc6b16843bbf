"""Depth and colour metrics of rendered images (NumPy; accumulated over a whole split)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class DepthErrors:
    """Sums over valid pixels/rays, so clips of any size pool into one split-level figure."""

    abs_rel_sum: float = 0.0
    sq_err_sum: float = 0.0
    count: int = 0

    def add(self, pred_p: np.ndarray, gt_p: np.ndarray) -> None:
        """Adds rays with a positive ground truth (gt <= 0 means no depth)."""
        valid = gt_p > 0
        pred, gt = np.asarray(pred_p, np.float64)[valid], np.asarray(gt_p, np.float64)[valid]
        self.abs_rel_sum += float(np.sum(np.abs(pred - gt) / gt))
        self.sq_err_sum += float(np.sum((pred - gt) ** 2))
        self.count += int(valid.sum())

    def result(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("no valid depth to evaluate (all ground-truth depths are <= 0)")
        return {
            "depth_abs_rel": self.abs_rel_sum / self.count,
            "depth_rmse_m": float(np.sqrt(self.sq_err_sum / self.count)),
            "depth_count": self.count,
        }


@dataclasses.dataclass
class ColourErrors:
    """Pooled squared error of RGB in [0, 1]; PSNR of the pooled MSE."""

    sq_err_sum: float = 0.0
    count: int = 0

    def add(self, pred_p3: np.ndarray, gt_p3: np.ndarray) -> None:
        diff = np.asarray(pred_p3, np.float64) - np.asarray(gt_p3, np.float64)
        self.sq_err_sum += float(np.sum(diff**2))
        self.count += int(diff.size)

    def result(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("no pixels to evaluate")
        mse = self.sq_err_sum / self.count
        return {"rgb_psnr_db": float(10.0 * np.log10(1.0 / max(mse, 1e-12)))}

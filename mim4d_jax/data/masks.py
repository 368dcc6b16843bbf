"""SparK-style random patch masks: exactly round(n * (1 - mask_ratio)) visible patches per image."""

from __future__ import annotations

import numpy as np


def patch_grid(pad_size: tuple[int, int], patch: int) -> tuple[int, int]:
    """(rows, cols) of `patch`-pixel patches over the padded (W, H) input; must divide exactly."""
    width, height = pad_size
    if width % patch or height % patch:
        raise ValueError(
            f"data.pad_size {tuple(pad_size)} is not divisible by data.mask_patch={patch}"
        )
    return height // patch, width // patch


def num_visible(num_patches: int, mask_ratio: float) -> int:
    """Visible patches per image; Python round() as in SparK, so .5 rounds to even."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"data.mask_ratio must be in [0, 1), got {mask_ratio}")
    return round(num_patches * (1.0 - mask_ratio))


def random_patch_keep(
    rng: np.random.Generator, num_images: int, grid_hw: tuple[int, int], mask_ratio: float
) -> np.ndarray:
    """(num_images, rows, cols) float32, 1 = visible, with the same visible count in every image."""
    rows, cols = grid_hw
    num_patches = rows * cols
    keep = num_visible(num_patches, mask_ratio)
    # argsort of uniform noise = one uniformly random permutation per image (SparK's recipe).
    order_ip = np.argsort(rng.random((num_images, num_patches)), axis=1)
    keep_ip = np.zeros((num_images, num_patches), np.float32)
    np.put_along_axis(keep_ip, order_ip[:, :keep], 1.0, axis=1)
    return keep_ip.reshape(num_images, rows, cols)

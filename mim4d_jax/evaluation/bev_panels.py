"""PNG panel of one BEV probe sample: the six camera inputs, then ground truth and predicted
vehicle probability on the BEV grid (metres, forward = up), the ego car outlined."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display on training hosts
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from etils import epath  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from mim4d_jax.atomic_files import atomic_path  # noqa: E402
from mim4d_jax.rendering.images import denormalise  # noqa: E402

# nuScenes' Renault Zoe, centred on the LiDAR (the volume origin): width x length in metres.
EGO_WL = (1.73, 4.08)


def write_bev_panel(
    path: epath.Path,
    images_nhw3: np.ndarray,
    cams: tuple[str, ...],
    target_hw: np.ndarray,
    prob_hw: np.ndarray,
    pc_range: tuple[float, ...],
    title: str,
) -> None:
    """`images_nhw3` are the normalised model inputs of the key frame, cropped to the image."""
    fig = plt.figure(figsize=(3.0 * len(cams), 7.5))
    grid = fig.add_gridspec(2, len(cams), height_ratios=[1, 2.2])
    for n, cam in enumerate(cams):
        ax = fig.add_subplot(grid[0, n])
        ax.imshow(np.clip(denormalise(images_nhw3[n]), 0, 1))
        ax.set_title(cam, fontsize=9)
        ax.axis("off")
    extent = (pc_range[0], pc_range[3], pc_range[1], pc_range[4])
    half = len(cams) // 2
    panels = [
        (grid[1, :half], target_hw, "ground truth (vehicle cells)"),
        (grid[1, half:], prob_hw, "predicted probability"),
    ]
    for spec, values, name in panels:
        ax = fig.add_subplot(spec)
        image = ax.imshow(values, origin="lower", extent=extent, cmap="viridis", vmin=0, vmax=1)
        w, l = EGO_WL
        ax.add_patch(Rectangle((-w / 2, -l / 2), w, l, fill=False, color="red", linewidth=1.5))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("x (m, right)")
        ax.set_ylabel("y (m, forward)")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title + "   (red: ego car)", fontsize=11)
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), dpi=80)
    plt.close(fig)

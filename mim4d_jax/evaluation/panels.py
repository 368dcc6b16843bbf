"""PNG panels of an evaluation: per camera (rows) the model input, the target and the renders
of both volumes, labelled columns, one depth colour map with its colour bar, and pixels whose
surface lies outside the modelled volume (or is sky) marked grey in every depth column."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display on training hosts
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from mim4d_jax.atomic_files import atomic_path  # noqa: E402
from mim4d_jax.models.convnext import upsample_keep  # noqa: E402
from mim4d_jax.rendering.images import denormalise  # noqa: E402

DEPTH_CMAP = "turbo"
OUTSIDE_GREY = (0.75, 0.75, 0.75)


def _input_tile(example: dict, cam: int, out_hw: tuple[int, int]) -> np.ndarray:
    """The masked model input of camera `cam`, key frame, resized to the tile size."""
    image_hw3 = denormalise(example["images"][cam, 0])
    keep_1hw1 = upsample_keep(
        example["patch_keep"][cam : cam + 1, 0], *image_hw3.shape[:2], np.float32
    )
    masked = np.clip(image_hw3 * np.asarray(keep_1hw1[0]), 0, 1)
    tile = Image.fromarray((masked * 255).astype(np.uint8)).resize(out_hw[::-1], Image.BILINEAR)
    return np.asarray(tile, np.float64) / 255.0


def write_panel(
    path,
    example: dict,
    renders: dict,
    target_nhw3: np.ndarray,
    out_hw: tuple[int, int],
    cams: tuple[str, ...],
    gt_range_np: np.ndarray | None,
    depth_max: float,
) -> None:
    """Columns: input (masked), target, RGB and depth of the direct and predicted volumes,
    then the dense ground-truth depth (ray length, metres) when known. `gt_range_np` is 0
    where the true surface is sky or outside the modelled volume: marked grey."""
    h, w = out_hw
    columns = ["input (masked)", "target", "direct RGB", "direct depth"]
    columns += ["predicted RGB", "predicted depth"]
    if gt_range_np is not None:
        columns.append("ground-truth depth")
    fig, axes = plt.subplots(
        len(cams), len(columns), figsize=(1.9 * len(columns) + 1.0, 1.25 * len(cams) + 0.6)
    )
    cmap = plt.get_cmap(DEPTH_CMAP).with_extremes(bad=OUTSIDE_GREY)
    depth_image = None
    for n, cam in enumerate(cams):
        outside_hw = None if gt_range_np is None else gt_range_np[n].reshape(h, w) <= 0
        tiles = [_input_tile(example, n, out_hw), target_nhw3[n]]
        for name in ("direct", "predicted"):
            tiles.append(np.clip(renders[name]["rgb"][n].reshape(h, w, 3), 0, 1))
            tiles.append(renders[name]["depth"][n].reshape(h, w))
        if gt_range_np is not None:
            tiles.append(gt_range_np[n].reshape(h, w))
        for col, (ax, tile) in enumerate(zip(axes[n], tiles)):
            if tile.ndim == 2:  # depth: one colour map and range for every depth column
                shown = np.ma.masked_where(outside_hw, tile) if outside_hw is not None else tile
                depth_image = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=depth_max)
            else:
                ax.imshow(tile)
            ax.set_xticks([])
            ax.set_yticks([])
            if n == 0:
                ax.set_title(columns[col], fontsize=8)
            if col == 0:
                ax.set_ylabel(cam.replace("CAM_", ""), fontsize=7)
    bar = fig.colorbar(depth_image, ax=axes, fraction=0.02, pad=0.01)
    bar.set_label("depth (m); grey: sky or outside the volume", fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), dpi=90)
    plt.close(fig)

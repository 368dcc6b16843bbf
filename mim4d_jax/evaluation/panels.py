"""PNG panels of an evaluation: per camera the model input, the target and the renders."""

from __future__ import annotations

import pathlib

import numpy as np
from matplotlib import colormaps
from PIL import Image

from mim4d_jax.models.convnext import upsample_keep
from mim4d_jax.rendering.images import denormalise


def _depth_rgb(depth_hw: np.ndarray, depth_max: float) -> np.ndarray:
    """Turbo colours of depth in [0, depth_max] (near = blue), black where there is none."""
    rgb = colormaps["turbo"](np.clip(depth_hw / depth_max, 0.0, 1.0))[..., :3]
    return np.where((depth_hw > 0)[..., None], rgb, 0.0)


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
    path: pathlib.Path,
    example: dict,
    renders: dict,
    target_nhw3: np.ndarray,
    out_hw: tuple[int, int],
    cams: tuple[str, ...],
    gt_z_nhw,
    depth_max: float,
) -> None:
    """Rows = cameras; columns = input (masked), target, then RGB and depth of each volume
    (direct, predicted), then the dense ground-truth depth when known."""
    h, w = out_hw
    rows = []
    for n in range(len(cams)):
        tiles = [_input_tile(example, n, out_hw), target_nhw3[n]]
        for name in ("direct", "predicted"):
            tiles.append(np.clip(renders[name]["rgb"][n].reshape(h, w, 3), 0, 1))
            tiles.append(_depth_rgb(renders[name]["depth"][n].reshape(h, w), depth_max))
        if gt_z_nhw is not None:
            gt_range = gt_z_nhw[n] * renders["direct"]["z_to_range"][n].reshape(h, w)
            tiles.append(_depth_rgb(gt_range, depth_max))
        rows.append(np.concatenate(tiles, axis=1))
    panel = (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).astype(np.uint8)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(panel).save(tmp)
    tmp.rename(path)

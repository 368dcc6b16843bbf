"""One training/eval example as NumPy arrays (the per-example rows of docs/architecture.md's batch).

Every random choice (target frame, patch masks, rays) is drawn from generators seeded by
(seed, position, stream) only, so an example is a pure function of its record and position.
"""

from __future__ import annotations

import numpy as np

from mim4d_jax.data import bev, masks, pairs, rays, schema, validate
from mim4d_jax.data.clip import decode_resize
from mim4d_jax.geometry import poses

IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
IMAGENET_STD = np.array([58.395, 57.12, 57.375], np.float32)
_STREAM_TARGETS, _STREAM_MASK, _STREAM_RAYS = 0, 1, 2
_STREAM_PAIRS = 3  # objective pairs (data/pairs.py)


def check_config(config) -> None:
    """Clear errors for `data.*` settings the pipeline cannot honour (before any reading)."""
    d = config.data
    cams = tuple(d.cameras)
    unknown = [c for c in cams if c not in schema.CAMERAS]
    if unknown or len(set(cams)) != len(cams) or "CAM_FRONT" not in cams:
        raise ValueError(
            f"data.cameras {cams} must be distinct names from {schema.CAMERAS} including CAM_FRONT"
        )
    (w, h), (pw, ph) = d.image_size, d.pad_size
    if pw < w or ph < h:
        raise ValueError(
            f"data.pad_size {tuple(d.pad_size)} is smaller than data.image_size {(w, h)}"
        )
    masks.patch_grid(d.pad_size, d.mask_patch)
    masks.num_visible(1, d.mask_ratio)
    pairs.check_config(config)
    if d.frames < 1:
        raise ValueError(f"data.frames must be >= 1, got {d.frames}")
    ray_cfg = rays.RayConfig.from_config(config)
    grid = len(rays.top_up_pixels(w, h, ray_cfg))
    if grid < d.num_rays:
        raise ValueError(
            f"data.num_rays={d.num_rays} exceeds the {grid} top-up pixels of a {w}x{h} image "
            f"(data.top_up_stride={d.top_up_stride}, data.sky_fraction={d.sky_fraction})"
        )


def _rng(seed: int, position: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, position, stream])


def normalise_padded(images_u8: np.ndarray, image_size: tuple[int, int], xp=np) -> np.ndarray:
    """Padded uint8 RGB (..., Hp, Wp, 3) -> ImageNet-normalised float32 with the padding at 0.

    `xp` is numpy or jax.numpy: the pipeline runs this on the devices (4x fewer bytes to
    move, and the host's most memory-bound step gone); `make_example` runs it on the host.
    """
    hp, wp = images_u8.shape[-3:-1]
    valid_hw1 = (xp.arange(hp)[:, None, None] < image_size[1]) & (
        xp.arange(wp)[None, :, None] < image_size[0]
    )
    scaled = (images_u8.astype(xp.float32) - IMAGENET_MEAN) * (1.0 / IMAGENET_STD)
    return xp.where(valid_hw1, scaled, xp.float32(0.0))


def make_example(
    clip: dict, config, *, seed: int, position: int, train: bool = True, where: str = "clip"
) -> dict[str, np.ndarray]:
    """Arrays of one example from a parsed clip (`reader.ClipReader.read_clip`).

    `position` is the example's global stream position (or any caller-chosen index in eval);
    `train=False` keeps every patch visible. Keys and shapes: docs/architecture.md without B.
    """
    example = make_example_u8(clip, config, seed=seed, position=position, train=train, where=where)
    example["images"] = model_images(example["images"], config)
    return example


def model_images(images_u8: np.ndarray, config, xp=np) -> np.ndarray:
    """The images the model sees: normalised, or all zeros (the dataset mean) for the
    image-blind control `ablation.blind_images`, whose targets (rays, BEV) are untouched."""
    if config.ablation.blind_images:
        return xp.zeros(images_u8.shape, xp.float32)
    return normalise_padded(images_u8, tuple(config.data.image_size), xp)


def make_example_u8(
    clip: dict, config, *, seed: int, position: int, train: bool = True, where: str = "clip"
) -> dict[str, np.ndarray]:
    """`make_example` with `images` still padded uint8 RGB (normalised later, on the devices)."""
    validate.check_clip_geometry(clip, where)  # names the record and key of a bad value
    d = config.data
    cams = tuple(d.cameras)
    frames = int(d.frames)
    size_wh = tuple(int(v) for v in d.image_size)
    # decoded straight into the zero-padded buffer; images_nthw3 is its un-padded view
    padded_nthw3 = np.zeros((len(cams), frames, d.pad_size[1], d.pad_size[0], 3), np.uint8)
    images_nthw3 = padded_nthw3[:, :, : size_wh[1], : size_wh[0]]
    scale_nt2 = np.empty((len(cams), frames, 2))
    for n, cam in enumerate(cams):
        for t in range(frames):
            pixels, stored_wh = decode_resize(
                clip["jpegs"][n][t], size_wh, f"{where} {cam} frame {t}"
            )
            images_nthw3[n, t] = pixels
            scale_nt2[n, t] = (size_wh[0] / stored_wh[0], size_wh[1] / stored_wh[1])

    front = cams.index("CAM_FRONT")
    intrinsics_nt33 = poses.resize_intrinsics(clip["intrinsics"], scale_nt2)
    cam2vol_nt44 = poses.cam2vol(clip["cam2ego"], clip["ego2global"], clip["lidar2ego"], front)
    keylidar2cam_nt44 = poses.keylidar2cam(
        clip["cam2ego"], clip["ego2global"], clip["lidar2ego"], clip["lidar_ego2global"]
    )

    k = int(_rng(seed, position, _STREAM_TARGETS).integers(1, frames)) if frames > 1 else 0
    target_frames = np.array([0, k], np.int32)

    ray_cfg = rays.RayConfig.from_config(config)
    points_p3 = rays.filter_lidar(clip["lidar_points"][:, :3].astype(np.float64), ray_cfg)
    ray_rng = _rng(seed, position, _STREAM_RAYS)
    per_target = []
    for t in target_frames:
        per_cam = [
            rays.sample_camera_rays(
                ray_rng,
                points_p3,
                keylidar2cam_nt44[n, t],
                intrinsics_nt33[n, t],
                cam2vol_nt44[n, t],
                images_nthw3[n, t],
                ray_cfg,
            )
            for n in range(len(cams))
        ]
        per_target.append({key: np.concatenate([r[key] for r in per_cam]) for key in per_cam[0]})
    ray_arrays = {key: np.stack([p[key] for p in per_target]) for key in per_target[0]}

    grid_hw = masks.patch_grid(d.pad_size, d.mask_patch)
    if train:
        keep = masks.random_patch_keep(
            _rng(seed, position, _STREAM_MASK), len(cams) * frames, grid_hw, d.mask_ratio
        )
        patch_keep = keep.reshape(len(cams), frames, *grid_hw)
    else:
        patch_keep = np.ones((len(cams), frames, *grid_hw), np.float32)

    return {
        "images": padded_nthw3,
        "patch_keep": patch_keep,
        "lidar2img": poses.lidar2img(intrinsics_nt33, cam2vol_nt44).astype(np.float32),
        "vol2ref": poses.vol2ref(clip["ego2global"], clip["lidar2ego"], front).astype(np.float32),
        "target_frames": target_frames,
        # 0 where some camera lacks real history (its earliest frame is repeated): the loss
        # then falls back to the key frame alone, as the reference's is_hop=False.
        "temporal_valid": np.float32(clip["frame_valid"].all()),
        **ray_arrays,
        **(_bev_target(clip, config, where) if d.get("bev_targets", False) else {}),
        # Only when the croco / pointcontrast objective is on (empty otherwise).
        **pairs.example_pairs(
            clip,
            config,
            points_key_p3=points_p3,
            lidar2img_nt44=poses.lidar2img(intrinsics_nt33, cam2vol_nt44),
            images_nthw3=images_nthw3,
            target_frames=target_frames,
            rng=_rng(seed, position, _STREAM_PAIRS),
        ),
    }


def _bev_target(clip: dict, config, where: str) -> dict[str, np.ndarray]:
    """The key frame's occupancy of the configured categories (data.bev_categories) on the
    BEV grid over model.pc_range: a cell is 1 if its centre lies inside a box footprint."""
    boxes = clip.get("boxes")
    if boxes is None:
        raise ValueError(
            f"{where}: the dataset has no 3D boxes, which BEV targets need; re-convert it with "
            "the current converter (python -m data_prep.convert_nuscenes)"
        )
    keep_b = bev.category_keep(boxes["category"], tuple(config.data.bev_categories))
    mask_hw = bev.rasterise_bev(
        boxes["center_b3"],
        boxes["size_b3"],
        boxes["yaw_b"],
        keep_b,
        tuple(config.model.pc_range),
        tuple(config.data.bev_hw),
    )
    return {"bev_target": mask_hw.astype(np.float32)}

"""Input-pipeline pairs for the contrastive and cross-view objectives (NumPy, static shapes).

- View pairs (`croco`): two images of one clip that see the same scene. Candidates are the
  same camera at the key frame and at an earlier frame t (forward motion keeps most of the
  view) and, with `croco.spatial_pairs`, ring-neighbour cameras at the key frame. A candidate
  is kept only when at least `croco.min_overlap` of the key-frame LiDAR points inside view 1
  also project inside view 2; `croco.num_pairs` pairs are drawn from the kept ones.
- Point pairs (`pointcontrast`): key-frame LiDAR points of static structure in the frame-0
  volume coordinates. The frame-k side is the same world point in frame-k coordinates,
  inv(vol2ref[k]) @ p, computed on the device from the batch's `vol2ref`. Points inside
  annotated boxes (which may move) are dropped, and so is every point whose colour in its
  camera at frame 0 and at frame k disagrees (a mover without a box, or an occlusion), or that
  no camera sees at both frames.

Each objective's keys are part of the batch only when its weight in `config.objectives` is
positive (`batch.example_spec`), so the default batch is unchanged.
"""

from __future__ import annotations

import numpy as np

from mim4d_jax.geometry import poses
from mim4d_jax.user_errors import ConfigError

# Ring order of the nuScenes rig (yaw decreasing): each camera's neighbours share an edge band.
CAMERA_RING = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_BACK_RIGHT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_FRONT_LEFT",
)
_MIN_DEPTH_M = 0.5  # points nearer the image plane than this are not "seen"


def objective_weight(config, name: str) -> float:
    """`config.objectives[name]`, 0 when the config has no objectives block."""
    objectives = config.get("objectives", None)
    return 0.0 if objectives is None else float(objectives.get(name, 0.0))


def croco_enabled(config) -> bool:
    return objective_weight(config, "croco") > 0


def pointcontrast_enabled(config) -> bool:
    return objective_weight(config, "pointcontrast") > 0


def pair_spec(config) -> dict[str, tuple[tuple[int, ...], type]]:
    """The batch keys (shape without batch dim, dtype) the enabled objectives add."""
    spec: dict[str, tuple[tuple[int, ...], type]] = {}
    if croco_enabled(config):
        p = int(config.croco.num_pairs)
        spec["croco_pairs"] = ((p, 4), np.int32)  # (cam1, frame1, cam2, frame2)
        spec["croco_pair_valid"] = ((p,), np.float32)
        spec["croco_overlap"] = ((p,), np.float32)
    if pointcontrast_enabled(config):
        m = int(config.pointcontrast.num_pairs)
        spec["pc_points"] = ((m, 3), np.float32)  # frame-0 volume coords, metres
        spec["pc_valid"] = ((m,), np.float32)
    return spec


def check_config(config) -> None:
    """Clear errors for pair settings the pipeline cannot honour."""
    if croco_enabled(config):
        c = config.croco
        if int(c.num_pairs) < 1:
            raise ConfigError(f"croco.num_pairs must be >= 1, got {c.num_pairs}")
        if not 0.0 <= float(c.min_overlap) <= 1.0:
            raise ConfigError(f"croco.min_overlap must be in [0, 1], got {c.min_overlap}")
        if int(config.data.frames) < 2 and not c.spatial_pairs:
            raise ConfigError(
                f"croco with data.frames={config.data.frames} has no temporal view pairs; "
                "use data.frames >= 2 or croco.spatial_pairs=True"
            )
    if pointcontrast_enabled(config):
        if int(config.data.frames) < 2:
            raise ConfigError(
                f"pointcontrast matches points between two frames: data.frames must be >= 2, "
                f"got {config.data.frames}"
            )
        if int(config.pointcontrast.num_pairs) < 2:
            raise ConfigError(
                f"pointcontrast.num_pairs must be >= 2 (negatives are the other pairs), "
                f"got {config.pointcontrast.num_pairs}"
            )


def keylidar2vol(
    ego2global_nt44: np.ndarray,
    lidar2ego_44: np.ndarray,
    lidar_ego2global_44: np.ndarray,
    front: int,
) -> np.ndarray:
    """(T, 4, 4): key-frame LiDAR coords -> frame-t volume coords, through the global frame
    (the LiDAR's own ego pose at its timestamp, CAM_FRONT's ego pose at frame t)."""
    vol2global_t44 = poses.vol2global(ego2global_nt44, lidar2ego_44, front)
    return np.linalg.inv(vol2global_t44) @ (lidar_ego2global_44 @ lidar2ego_44)[None]


def _apply(m44: np.ndarray, points_p3: np.ndarray) -> np.ndarray:
    return points_p3 @ m44[:3, :3].T + m44[:3, 3]


def project(
    lidar2img_44: np.ndarray, points_p3: np.ndarray, image_wh: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(uv (P, 2), inside (P,)) of volume-frame points in one image (`lidar2img` of its frame):
    in front of the camera and inside the un-padded image."""
    proj_p4 = points_p3 @ lidar2img_44[:3, :3].T + lidar2img_44[:3, 3]
    depth_p = proj_p4[:, 2]
    safe_p = np.where(depth_p > _MIN_DEPTH_M, depth_p, 1.0)
    uv_p2 = proj_p4[:, :2] / safe_p[:, None]
    w, h = image_wh
    inside_p = (
        (depth_p > _MIN_DEPTH_M)
        & (uv_p2[:, 0] >= 0)
        & (uv_p2[:, 0] <= w - 1)
        & (uv_p2[:, 1] >= 0)
        & (uv_p2[:, 1] <= h - 1)
    )
    return uv_p2, inside_p


# ----------------------------------------------------------------------------- view pairs


def view_pair_candidates(cameras: tuple[str, ...], frames: int, spatial: bool) -> np.ndarray:
    """(K, 4) int32 candidate pairs (cam1, frame1, cam2, frame2): every camera at frame 0 with
    itself at each earlier frame, then (with `spatial`) with its ring neighbours at frame 0."""
    out = [(n, 0, n, t) for n in range(len(cameras)) for t in range(1, frames)]
    if spatial:
        ring = [c for c in CAMERA_RING if c in cameras]
        for n, cam in enumerate(cameras):
            if cam not in ring or len(ring) < 2:
                continue
            i = ring.index(cam)
            for other in {ring[(i - 1) % len(ring)], ring[(i + 1) % len(ring)]} - {cam}:
                out.append((n, 0, cameras.index(other), 0))
    return np.asarray(out, np.int32).reshape(-1, 4)


def view_overlap(
    points_tp3: np.ndarray,
    lidar2img_nt44: np.ndarray,
    image_wh: tuple[int, int],
    pair_4: np.ndarray,
) -> float:
    """Fraction of the LiDAR points inside view 1 that also project inside view 2.

    `points_tp3[t]` are the key-frame points in frame-t volume coords. Occlusion is ignored:
    this measures shared field of view, which is what the completion task needs.
    """
    n1, t1, n2, t2 = (int(v) for v in pair_4)
    _, in1_p = project(lidar2img_nt44[n1, t1], points_tp3[t1], image_wh)
    _, in2_p = project(lidar2img_nt44[n2, t2], points_tp3[t2], image_wh)
    seen = int(in1_p.sum())
    return float((in1_p & in2_p).sum() / seen) if seen else 0.0


def view_pairs(
    rng: np.random.Generator,
    points_tp3: np.ndarray,
    lidar2img_nt44: np.ndarray,
    image_wh: tuple[int, int],
    cameras: tuple[str, ...],
    croco_cfg,
) -> dict[str, np.ndarray]:
    """`croco_pairs`, `croco_pair_valid`, `croco_overlap` of one example.

    Pairs are drawn without replacement from the candidates with enough overlap, repeating the
    kept set (in a fresh random order) only when it has fewer than `num_pairs` (a repeated
    pair still gets its own mask on the device). With no candidate above the threshold the
    best one fills the slots with valid 0, so the loss ignores them and shapes stay static.
    """
    frames = points_tp3.shape[0]
    cands_k4 = view_pair_candidates(cameras, frames, bool(croco_cfg.spatial_pairs))
    overlap_k = np.array([view_overlap(points_tp3, lidar2img_nt44, image_wh, c) for c in cands_k4])
    num = int(croco_cfg.num_pairs)
    good_k = np.flatnonzero(overlap_k >= float(croco_cfg.min_overlap))
    if len(good_k):
        reps = -(-num // len(good_k))
        order = np.concatenate([rng.permutation(good_k) for _ in range(reps)])[:num]
        valid = np.ones(num, np.float32)
    else:
        order = np.full(num, int(np.argmax(overlap_k)))
        valid = np.zeros(num, np.float32)
    return {
        "croco_pairs": cands_k4[order].astype(np.int32),
        "croco_pair_valid": valid,
        "croco_overlap": overlap_k[order].astype(np.float32),
    }


# ---------------------------------------------------------------------------- point pairs


def inside_boxes(points_p3: np.ndarray, boxes: dict | None, margin: float = 0.3) -> np.ndarray:
    """(P,) bool: inside any box (frame-0 volume coords; size = (width, length, height), yaw of
    the length axis from +x), each box grown by `margin` metres on every side."""
    inside_p = np.zeros(len(points_p3), bool)
    if boxes is None or len(boxes["center_b3"]) == 0:
        return inside_p
    for centre_3, size_3, yaw in zip(
        boxes["center_b3"], boxes["size_b3"], boxes["yaw_b"], strict=True
    ):
        c, s = np.cos(yaw), np.sin(yaw)
        rel_p3 = points_p3 - centre_3
        along_p = rel_p3[:, 0] * c + rel_p3[:, 1] * s  # length axis
        across_p = -rel_p3[:, 0] * s + rel_p3[:, 1] * c  # width axis
        width, length, height = size_3
        inside_p |= (
            (np.abs(along_p) <= length / 2 + margin)
            & (np.abs(across_p) <= width / 2 + margin)
            & (np.abs(rel_p3[:, 2]) <= height / 2 + margin)
        )
    return inside_p


def _colours(image_hw3: np.ndarray, uv_p2: np.ndarray) -> np.ndarray:
    u_p = np.clip(np.rint(uv_p2[:, 0]).astype(int), 0, image_hw3.shape[1] - 1)
    v_p = np.clip(np.rint(uv_p2[:, 1]).astype(int), 0, image_hw3.shape[0] - 1)
    return image_hw3[v_p, u_p].astype(np.float32)


def static_points(
    points_tp3: np.ndarray,
    k: int,
    lidar2img_nt44: np.ndarray,
    images_nthw3: np.ndarray,
    image_wh: tuple[int, int],
    max_color_diff: float,
    boxes: dict | None = None,
) -> np.ndarray:
    """(P,) bool: the point is seen by some camera at both frame 0 and frame k, its colour
    agrees (mean |RGB| <= max_color_diff, 0..255) in every camera that sees it at both, and it
    lies outside every annotated box."""
    seen_any_p = np.zeros(points_tp3.shape[1], bool)
    disagree_p = np.zeros(points_tp3.shape[1], bool)
    for n in range(lidar2img_nt44.shape[0]):
        uv0_p2, in0_p = project(lidar2img_nt44[n, 0], points_tp3[0], image_wh)
        uvk_p2, ink_p = project(lidar2img_nt44[n, k], points_tp3[k], image_wh)
        both_p = in0_p & ink_p
        if not both_p.any():
            continue
        diff_p = np.zeros(len(both_p), np.float32)
        diff_p[both_p] = np.abs(
            _colours(images_nthw3[n, 0], uv0_p2[both_p])
            - _colours(images_nthw3[n, k], uvk_p2[both_p])
        ).mean(axis=1)
        seen_any_p |= both_p
        disagree_p |= both_p & (diff_p > max_color_diff)
    return seen_any_p & ~disagree_p & ~inside_boxes(points_tp3[0], boxes)


def inside_grid(points_p3: np.ndarray, pc_range, voxel_size) -> np.ndarray:
    """(P,) bool: between the outermost voxel centres, where trilinear lookups do not fade."""
    lo_3 = np.asarray(pc_range[:3]) + 0.5 * np.asarray(voxel_size)
    hi_3 = np.asarray(pc_range[3:]) - 0.5 * np.asarray(voxel_size)
    return np.all((points_p3 >= lo_3) & (points_p3 <= hi_3), axis=1)


def point_pairs(
    rng: np.random.Generator,
    points_tp3: np.ndarray,
    k: int,
    lidar2img_nt44: np.ndarray,
    images_nthw3: np.ndarray,
    image_wh: tuple[int, int],
    config,
    boxes: dict | None = None,
) -> dict[str, np.ndarray]:
    """`pc_points` (M, 3) frame-0 volume coords and `pc_valid` (M,) of one example.

    Static points inside both frames' grids are drawn without replacement (a repeated point
    would be its own negative); missing slots are zeros with valid 0.
    """
    m = config.model
    pc = config.pointcontrast
    ok_p = (
        static_points(
            points_tp3, k, lidar2img_nt44, images_nthw3, image_wh, float(pc.max_color_diff), boxes
        )
        & inside_grid(points_tp3[0], m.pc_range, m.voxel_size)
        & inside_grid(points_tp3[k], m.pc_range, m.voxel_size)
    )
    num = int(pc.num_pairs)
    chosen = rng.permutation(np.flatnonzero(ok_p))[:num]
    points_m3 = np.zeros((num, 3), np.float32)
    valid_m = np.zeros(num, np.float32)
    points_m3[: len(chosen)] = points_tp3[0, chosen]
    valid_m[: len(chosen)] = 1.0
    return {"pc_points": points_m3, "pc_valid": valid_m}


def example_pairs(
    clip: dict,
    config,
    *,
    points_key_p3: np.ndarray,
    lidar2img_nt44: np.ndarray,
    images_nthw3: np.ndarray,
    target_frames: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The pair arrays of every enabled objective for one example (empty when none is on).

    `points_key_p3`: key-frame LiDAR points (LiDAR frame), `images_nthw3`: the un-padded uint8
    images, `lidar2img_nt44`: the example's projections (resized intrinsics)."""
    if not (croco_enabled(config) or pointcontrast_enabled(config)):
        return {}
    cams = tuple(config.data.cameras)
    front = cams.index("CAM_FRONT")
    key2vol_t44 = keylidar2vol(
        clip["ego2global"], clip["lidar2ego"], clip["lidar_ego2global"], front
    )
    points_tp3 = np.stack([_apply(m44, points_key_p3) for m44 in key2vol_t44])
    image_wh = tuple(int(v) for v in config.data.image_size)
    out: dict[str, np.ndarray] = {}
    croco_rng, pc_rng = rng.spawn(2)
    if croco_enabled(config):
        out.update(view_pairs(croco_rng, points_tp3, lidar2img_nt44, image_wh, cams, config.croco))
    if pointcontrast_enabled(config):
        out.update(
            point_pairs(
                pc_rng,
                points_tp3,
                int(target_frames[1]),
                lidar2img_nt44,
                images_nthw3,
                image_wh,
                config,
                clip.get("boxes"),
            )
        )
    return out

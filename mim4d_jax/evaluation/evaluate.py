r"""Pre-training evaluation: render every camera of every validation clip from the directly
lifted and the temporally predicted volume of the key frame; depth error against LiDAR (and
against the synthetic world's dense ground truth), RGB PSNR, and PNG panels.

  python -m mim4d_jax.evaluate --config configs/mim4d_tiny.py --workdir workdirs/tiny \
      --config.data.dir=datasets/synthetic_clips [--step N] [--depth_gt datasets/synthetic]

Writes `WORKDIR/eval/step_<N>.json` (`--blind`: `WORKDIR/eval/blind/step_<N>.json`,
`--shuffled`: `WORKDIR/eval/shuffled/step_<N>.json`):
  {"step": N, "direct": {"depth_abs_rel", "depth_rmse_m", "rgb_psnr_db", ...},
   "predicted": {...}}
(`dense_depth_abs_rel` / `dense_depth_rmse_m` too when `--depth_gt` names the synthetic
dataroot: every rendered pixel whose ground-truth surface lies inside `model.pc_range`)
and `WORKDIR/eval/step_<N>_clip<i>.png` panels: one row per camera with the
(masked) model input, the target image, and rendered RGB and depth of both volumes.

`--step 0` with no step-0 checkpoint evaluates the trainer's initial parameters (drawn from
`config.seed` exactly as mim4d_jax.train does).
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mim4d_jax import atomic_files, user_errors
from mim4d_jax.data.example import make_example
from mim4d_jax.data.reader import ClipReader
from mim4d_jax.evaluation import metrics as eval_metrics
from mim4d_jax.evaluation import panels as eval_panels
from mim4d_jax.geometry import camera_rays
from mim4d_jax.models.mim4d import build_model
from mim4d_jax.rendering.images import block_mean, denormalise
from mim4d_jax.rendering.renderer import Renderer
from mim4d_jax.rendering.targets import VOLUMES, target_volume
from mim4d_jax.training import backbone_init, checkpoint


def resolve_config(workdir: str, file_config=None, overrides: dict | None = None):
    """The config to evaluate with: the workdir's config.json, with only evaluation-side
    overrides (config_checks.EVAL_SIDE_KEYS) applied; a model-defining key that differs is a
    ConfigError naming it. `overrides=None` takes the evaluation-side values of
    `file_config` (library callers pass one config). A workdir with neither config.json nor
    checkpoints (a step-0 evaluation before training) uses `file_config` as it is."""
    return checkpoint.workdir_config(workdir, file_config, overrides, what="evaluation")


def load_params(config, workdir: str, step: int | None) -> tuple[dict, dict, int]:
    """(params, batch_stats, step) of the checkpoint, or the initial parameters for step 0."""
    ckpt_dir = checkpoint.workdir_path(workdir) / "checkpoints"
    saved = (
        checkpoint.make_manager(workdir, read_only=True).all_steps() if ckpt_dir.is_dir() else []
    )
    if step == 0 and 0 not in saved:
        model = build_model(config, nnx.Rngs(config.seed))
        _, params, bstats = nnx.split(model, nnx.Param, nnx.BatchStat)
        params = nnx.to_pure_dict(params)
        backbone = backbone_init.backbone_path(config)
        if backbone is not None:  # as the trainer's step 0
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            shardings = jax.tree.map(lambda _: device, params)
            params = backbone_init.load_backbone(backbone, params, shardings)
        return params, nnx.to_pure_dict(bstats), 0
    _, params, bstats, step = checkpoint.restore_params(workdir, step, config=config)
    return params, bstats, step


def make_eval_fn(config, graphdef, uv_p2: np.ndarray | None):
    """Jitted (params, batch_stats, batch of 1) -> renders of the key frame for both volumes:
    the LiDAR rays, and the pixels `uv_p2` of every camera unless it is None."""
    renderer = Renderer.from_config(config)
    uv_p2 = None if uv_p2 is None else jnp.asarray(uv_p2.reshape(-1, 2))

    @jax.jit
    def evaluate(params, bstats, batch):
        model = nnx.merge(graphdef, params, bstats, copy=True)
        vols_btzyxc = model.lift(batch["images"], batch["patch_keep"], batch["lidar2img"])
        key_b = jnp.zeros((1,), jnp.int32)
        out = {}
        for name in VOLUMES:
            vol_bzyxc = target_volume(model, vols_btzyxc, batch["vol2ref"], key_b, name)
            lidar = renderer.render_batch(
                model.render_model, vol_bzyxc, batch["ray_origin"][:, 0], batch["ray_dir"][:, 0]
            )
            out[name] = {"ray_depth": lidar["depth_r"][0]}
            if uv_p2 is not None:
                rgb_np3, depth_np, z_to_range_np = renderer.render_pixels(
                    model.render_model, vol_bzyxc[0], batch["lidar2img"][0, :, 0], uv_p2
                )
                out[name].update(rgb=rgb_np3, depth=depth_np, z_to_range=z_to_range_np)
        return out

    return evaluate


def _dense_gt(depth_gt_root: pathlib.Path, index: dict, token: str, cam: str, uv_hw2, image_wh):
    """Ground-truth camera z-depth of the synthetic world at the rendered pixels (0 = sky)."""
    path = depth_gt_root.parent / index[token][cam]  # index paths are relative to the dataroot
    depth_hw = np.load(path)
    scale_x = depth_hw.shape[1] / image_wh[0]
    scale_y = depth_hw.shape[0] / image_wh[1]
    cols = np.clip(np.floor((uv_hw2[..., 0] + 0.5) * scale_x), 0, depth_hw.shape[1] - 1).astype(int)
    rows = np.clip(np.floor((uv_hw2[..., 1] + 0.5) * scale_y), 0, depth_hw.shape[0] - 1).astype(int)
    return depth_hw[rows, cols]


def _in_volume_range(gt_z_nhw, lidar2img_n44, uv_hw2, pc_range) -> np.ndarray:
    """Dense ground truth as ray lengths (N, P), 0 where the surface is sky or outside the
    modelled volume (the renderer cannot place a surface there, as the LiDAR targets)."""
    lo_3, hi_3 = np.asarray(pc_range[:3]), np.asarray(pc_range[3:])
    out = []
    for gt_z_hw, lidar2img_44 in zip(gt_z_nhw, lidar2img_n44):
        origins, dirs, z_to_range = map(
            np.asarray, camera_rays.image_rays(jnp.asarray(lidar2img_44), uv_hw2.reshape(-1, 2))
        )
        range_p = gt_z_hw.reshape(-1) * z_to_range
        points_p3 = origins + dirs * range_p[:, None]
        inside = np.all((points_p3 >= lo_3) & (points_p3 <= hi_3), axis=1) & (range_p > 0)
        out.append(np.where(inside, range_p, 0.0))
    return np.stack(out)


def run(
    config,
    workdir: str,
    step: int | None,
    *,
    depth_gt: str = "",
    max_clips: int = 0,
    stride: int = 0,
    mask: bool = True,
    panels: int = 2,
    blind: bool = False,
    shuffled: bool = False,
    lidar_only: bool = False,
) -> dict:
    """Evaluates a checkpoint on `config.data.val_split`; returns and writes the metrics.
    `config` may change only evaluation-side keys of the workdir's config.json (resolve_config).

    `blind` removes the input images (the model sees zeros, the dataset mean, exactly as the
    `ablation.blind_images` control) while every target stays: how much of the trained
    model's depth comes from its images rather than a scene prior. Written to
    `eval/blind/` so that `eval/step_*.json` keeps meaning "with images".

    `shuffled` feeds clip i the input images of val clip (i + n // 2) mod n (n clips
    evaluated), targets and cameras kept: real images of another place, so what it costs is
    what the model reads from its own images' content, not its reaction to an unnatural input
    (zeros). A scene prior, and a model that only reacts to image statistics, score the same
    with and without it. Written to `eval/shuffled/`.

    `lidar_only` renders the LiDAR rays alone: depth metrics only (no RGB PSNR, dense depth or
    panels), about twice as fast, and all that the image controls above compare."""
    if blind and shuffled:
        raise user_errors.ConfigError("evaluate: --blind and --shuffled exclude each other")
    if lidar_only and depth_gt:
        raise user_errors.ConfigError(
            "evaluate: --lidar_only renders no pixels, so --depth_gt (dense depth) cannot apply"
        )
    config = resolve_config(workdir, config)
    params, bstats, step = load_params(config, workdir, step)
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0))))
    image_wh = tuple(int(v) for v in config.data.image_size)
    stride = stride or -(-image_wh[0] // 100)  # rendered images at most 100 px wide
    uv_hw2 = camera_rays.pixel_grid(image_wh, stride)
    out_hw = uv_hw2.shape[:2]
    evaluate = make_eval_fn(config, graphdef, None if lidar_only else uv_hw2)
    panels = 0 if lidar_only else panels

    depth_root = pathlib.Path(depth_gt) / "depth_gt" if depth_gt else None
    depth_index = json.loads((depth_root / "index.json").read_text()) if depth_root else None
    lidar = {v: eval_metrics.DepthErrors() for v in VOLUMES}
    dense = {v: eval_metrics.DepthErrors() for v in VOLUMES}
    colour = {v: eval_metrics.ColourErrors() for v in VOLUMES}
    variant = "blind" if blind else "shuffled" if shuffled else ""
    out_dir = checkpoint.workdir_path(workdir) / "eval" / variant
    cams = tuple(config.data.cameras)
    pc_range = tuple(config.model.pc_range)

    reader = ClipReader(config, config.data.val_split)
    num_clips = len(reader) if max_clips <= 0 else min(max_clips, len(reader))
    if shuffled and num_clips < 2:
        raise user_errors.DatasetError(
            f"evaluate --shuffled: needs at least 2 clips in split {config.data.val_split!r} "
            f"of {config.data.dir}, has {num_clips}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for index in range(num_clips):
        clip, where = reader.read_clip(index)
        example = make_example(
            clip, config, seed=config.seed, position=index, train=mask, where=where
        )
        batch = {k: jnp.asarray(v)[None] for k, v in example.items()}
        # The model's input only; the RGB target below still reads the clip's own images.
        if blind:
            batch["images"] = jnp.zeros_like(batch["images"])
        elif shuffled:
            other = (index + num_clips // 2) % num_clips
            other_clip, other_where = reader.read_clip(other)
            other_example = make_example(
                other_clip,
                config,
                seed=config.seed,
                position=other,
                train=False,
                where=other_where,
            )
            batch["images"] = jnp.asarray(other_example["images"])[None]
        renders = jax.device_get(evaluate(params, bstats, batch))
        ray_depth_gt = example["ray_depth"][0]
        for name in VOLUMES:
            lidar[name].add(renders[name]["ray_depth"], ray_depth_gt)
        if lidar_only:
            continue
        target_nhw3 = block_mean(denormalise(example["images"][:, 0]), stride, out_hw)
        gt_z_nhw = gt_range_np = None
        if depth_index is not None:
            gt_z_nhw = np.stack(
                [
                    _dense_gt(depth_root, depth_index, clip["sample_token"], cam, uv_hw2, image_wh)
                    for cam in cams
                ]
            )
            gt_range_np = _in_volume_range(gt_z_nhw, example["lidar2img"][:, 0], uv_hw2, pc_range)
        for name in VOLUMES:
            r = renders[name]
            colour[name].add(r["rgb"].reshape(target_nhw3.shape), target_nhw3)
            if gt_range_np is not None:
                dense[name].add(r["depth"], gt_range_np)
        if index < panels:
            eval_panels.write_panel(
                out_dir / f"step_{step}_clip{index}.png",
                {**example, "images": np.asarray(batch["images"][0])},  # what the model saw
                renders,
                target_nhw3,
                out_hw,
                cams,
                gt_range_np,
                float(config.model.depth_max),
            )
    reader.close()

    result = {
        "step": int(step),
        "num_clips": num_clips,
        "stride": stride,
        "blind": blind,
        "shuffled": shuffled,
        "lidar_only": lidar_only,
    }
    for name in VOLUMES:
        result[name] = {**lidar[name].result(), **({} if lidar_only else colour[name].result())}
        if depth_index is not None:
            result[name].update({f"dense_{k}": v for k, v in dense[name].result().items()})
    atomic_files.write_text(out_dir / f"step_{step}.json", json.dumps(result, indent=2))
    return result

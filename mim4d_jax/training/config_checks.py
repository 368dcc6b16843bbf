"""Config values checked before anything is built or compiled, each error naming its key.

Without these, a bad value surfaces late and far from its cause: `checkpoint_every=0` as a
ZeroDivisionError after compilation and one step, `data.image_size=(160,)` as "not enough
values to unpack". `check_config(config)` raises one `ConfigError` listing every bad key with
its value and allowed range. The trainer, evaluation and export call it first.

Keys a config does not have are skipped (older workdirs' config.json, other config files);
unknown keys are the config loader's job (the config is locked).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from typing import Any

import ml_collections

from mim4d_jax.user_errors import ConfigError

Check = Callable[[Any], str | None]  # None when fine, else the allowed range in words


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float)) and not isinstance(value, bool)


def int_at_least(low: int) -> Check:
    def check(value: Any) -> str | None:
        return None if _is_int(value) and value >= low else f"an integer >= {low}"

    return check


def int_or_minus_one(low: int = 1) -> Check:
    def check(value: Any) -> str | None:
        ok = _is_int(value) and (value == -1 or value >= low)
        return None if ok else f"-1 or an integer >= {low}"

    return check


def number_in(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    def check(value: Any) -> str | None:
        ok = _is_number(value) and math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low)
        ok = ok and (value < high if high_open else value <= high)
        if ok:
            return None
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        return f"a finite number in {left}{low:g}, {high:g}{right}"

    return check


def positive_number(value: Any) -> str | None:
    ok = _is_number(value) and math.isfinite(value) and value > 0
    return None if ok else "a finite number > 0"


def non_negative_number(value: Any) -> str | None:
    ok = _is_number(value) and math.isfinite(value) and value >= 0
    return None if ok else "a finite number >= 0"


def positive_int_pair(value: Any) -> str | None:
    ok = (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(_is_int(v) and v >= 1 for v in value)
    )
    return None if ok else "a pair (W, H) of integers >= 1"


def number_tuple(length: int, *, positive: bool = False) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, tuple | list) and len(value) == length
        ok = ok and all(
            _is_number(v) and math.isfinite(v) and (v > 0 or not positive) for v in value
        )
        return None if ok else f"{length} finite numbers{' > 0' if positive else ''}"

    return check


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "True or False"


def string(value: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


# Every numeric (and shape-like) key of configs/mim4d_vs01.py.
CHECKS: dict[str, Check] = {
    "seed": int_at_least(0),
    "total_steps": int_at_least(1),
    "batch_size": int_at_least(1),
    "checkpoint_every": int_at_least(1),
    "keep_checkpoints": int_at_least(1),
    "log_every": int_at_least(1),
    "image_log_every": int_at_least(0),
    "mesh.data": int_or_minus_one(),
    "mesh.fsdp": int_or_minus_one(),
    "mesh.tensor": int_or_minus_one(),
    "data.dir": string,
    "data.frames": int_at_least(1),
    "data.image_size": positive_int_pair,
    "data.pad_size": positive_int_pair,
    "data.num_rays": int_at_least(1),
    "data.sky_fraction": number_in(0.0, 1.0, high_open=True),
    "data.top_up_stride": int_at_least(1),
    "data.lidar_min_dist": non_negative_number,
    "data.lidar_min_xy": non_negative_number,
    "data.lidar_max_xy": positive_number,
    "data.mask_ratio": number_in(0.0, 1.0, high_open=True),
    "data.mask_patch": int_at_least(1),
    "data.num_parallel_calls": int_or_minus_one(),
    "data.prefetch": int_at_least(1),
    "model.drop_path_rate": number_in(0.0, 1.0, high_open=True),
    "model.layer_scale_init": non_negative_number,
    "model.frozen_stages": int_at_least(0),
    "model.fpn_channels": int_at_least(1),
    "model.fpn_start_level": int_at_least(0),
    "model.fpn_num_outs": int_at_least(1),
    "model.depth_bins": int_at_least(1),
    "model.depth_max": positive_number,
    "model.pc_range": number_tuple(6),
    "model.voxel_size": number_tuple(3, positive=True),
    "model.render_channels": int_at_least(1),
    "model.history.embed_dims": int_at_least(1),
    "model.history.reduction": int_at_least(1),
    "model.history.num_layers": int_at_least(1),
    "model.history.long_heads": int_at_least(1),
    "model.history.short_heads": int_at_least(1),
    "model.history.num_points": int_at_least(1),
    "model.history.ffn_dims": int_at_least(1),
    "render.num_samples": int_at_least(2),
    "render.num_importance": int_at_least(0),
    "render.up_sample_inv_s": positive_number,
    "render.hidden_dims": int_at_least(1),
    "render.sdf_blocks": int_at_least(1),
    "render.rgb_blocks": int_at_least(1),
    "render.geo_dims": int_at_least(1),
    "render.variance_init": positive_number,
    "render.near_min": positive_number,
    "render.chunk_rays": int_at_least(1),
    "render.rgb_weight": non_negative_number,
    "render.depth_weight": non_negative_number,
    "optim.lr": number_in(0.0, 1.0, low_open=True),
    "optim.weight_decay": non_negative_number,
    "optim.backbone_lr_mult": non_negative_number,
    "optim.grad_clip": positive_number,
    "optim.warmup_steps": int_at_least(0),
    "optim.warmup_start_factor": number_in(0.0, 1.0, low_open=True),
    "optim.min_lr_ratio": number_in(0.0, 1.0),
    "optim.ema_decay": number_in(0.0, 1.0, high_open=True),
    "init.backbone": string,
    "profile.start_step": int_or_minus_one(0),
    "profile.num_steps": int_at_least(1),
    "resume.fallback": boolean,
}


def get_path(config: ml_collections.ConfigDict, key: str) -> tuple[bool, Any]:
    """(present, value) of a dotted key."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict | dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _relations(config: ml_collections.ConfigDict) -> list[str]:
    """Problems between keys that are each fine alone."""
    problems = []
    have = {k: get_path(config, k) for k in ("total_steps", "optim.warmup_steps")}
    if all(p for p, _ in have.values()):
        total, warmup = have["total_steps"][1], have["optim.warmup_steps"][1]
        valid = (
            CHECKS["total_steps"](total) is None and CHECKS["optim.warmup_steps"](warmup) is None
        )
        if valid and warmup > total:
            problems.append(f"optim.warmup_steps={warmup}: must be <= total_steps ({total})")
    (p_img, image), (p_pad, pad) = (
        get_path(config, "data.image_size"),
        get_path(config, "data.pad_size"),
    )
    if p_img and p_pad and not positive_int_pair(image) and not positive_int_pair(pad):
        if pad[0] < image[0] or pad[1] < image[1]:
            problems.append(
                f"data.pad_size={tuple(pad)}: must be >= data.image_size {tuple(image)} "
                "in both W and H"
            )
        (p_patch, patch) = get_path(config, "data.mask_patch")
        if p_patch and _is_int(patch) and patch >= 1 and (pad[0] % patch or pad[1] % patch):
            problems.append(f"data.mask_patch={patch}: must divide data.pad_size {tuple(pad)}")
    present, pc_range = get_path(config, "model.pc_range")
    if present and not number_tuple(6)(pc_range):
        if not all(pc_range[i] < pc_range[i + 3] for i in range(3)):
            problems.append(
                f"model.pc_range={tuple(pc_range)}: must be (x0, y0, z0, x1, y1, z1) "
                "with x0 < x1, y0 < y1, z0 < z1"
            )
    (p_lo, lo), (p_hi, hi) = (
        get_path(config, "data.lidar_min_xy"),
        get_path(config, "data.lidar_max_xy"),
    )
    if p_lo and p_hi and _is_number(lo) and _is_number(hi) and lo >= hi:
        problems.append(f"data.lidar_min_xy={lo}: must be < data.lidar_max_xy ({hi})")
    return problems


def config_problems(config: ml_collections.ConfigDict) -> list[str]:
    """Every problem as 'key=value: must be <range>'."""
    problems = []
    for key, check in CHECKS.items():
        present, value = get_path(config, key)
        if not present:
            continue
        allowed = check(value)
        if allowed is not None:
            problems.append(f"{key}={value!r}: must be {allowed}")
    return problems + _relations(config)


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming every key whose value is outside its allowed range."""
    problems = config_problems(config)
    if len(problems) == 1:
        raise ConfigError(f"bad config value {problems[0]}")
    if problems:
        raise ConfigError("bad config values:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------------------------------
# Which keys define the model, and which an evaluation or export may change.

# Keys (or key prefixes ending in '.') whose value changes what a set of parameters computes:
# a checkpoint means nothing under other values of these.
MODEL_KEYS = (
    "model.",
    "render.",
    "data.cameras",
    "data.frames",
    "data.image_size",
    "data.pad_size",
    "data.mask_patch",
    "data.mask_ratio",
)
# ... except these, which change only speed or the training loss weights.
NOT_MODEL_KEYS = ("render.chunk_rays", "render.rgb_weight", "render.depth_weight")
# Overrides evaluation and export accept: where the data is and how it is read, the mask
# seed, the ImageNet weights of a step-0 evaluation, and the renderer's chunking.
EVAL_SIDE_KEYS = (
    "data.dir",
    "data.val_split",
    "data.num_parallel_calls",
    "data.prefetch",
    "render.chunk_rays",
    "seed",
    "init.backbone",
)


def is_model_key(key: str) -> bool:
    if key in NOT_MODEL_KEYS:
        return False
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in MODEL_KEYS)


def flatten(config: ml_collections.ConfigDict | dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict | dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def differences(
    a: ml_collections.ConfigDict, b: ml_collections.ConfigDict
) -> list[tuple[str, Any, Any]]:
    """(key, a's value, b's value) of every key present in both whose values differ."""
    flat_a, flat_b = flatten(a), flatten(b)
    return [
        (key, flat_a[key], flat_b[key])
        for key in sorted(flat_a.keys() & flat_b.keys())
        if not _same(flat_a[key], flat_b[key])
    ]


def _set(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """Sets a dotted key of an unlocked config."""
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = value


def resolve_run_config(
    run_config: ml_collections.ConfigDict,
    *,
    file_config: ml_collections.ConfigDict | None = None,
    overrides: dict[str, Any] | None = None,
    what: str = "evaluation",
) -> ml_collections.ConfigDict:
    """The workdir's config (config.json) with the allowed `overrides` applied.

    `overrides` (key -> value, the --config.KEY=VALUE flags) may change EVAL_SIDE_KEYS; any
    other key must keep the run's value: a different one is a ConfigError naming the key and
    both values. `file_config` (the --config file, when one is given) must agree with the run
    on every model-defining key; its other keys are ignored (config.json is the record of the
    run). Returns a new, locked config.
    """
    overrides = dict(overrides or {})
    flat_run = flatten(run_config)
    problems = []
    for key, value in overrides.items():
        if key not in flat_run:
            problems.append(f"--config.{key}: the run's config.json has no such key")
        elif key not in EVAL_SIDE_KEYS and not _same(value, flat_run[key]):
            problems.append(
                f"--config.{key}={value!r}: the run was trained with {flat_run[key]!r}, and "
                f"{what} cannot change it"
            )
    if file_config is not None:
        for key, file_value, run_value in differences(file_config, run_config):
            if is_model_key(key) and key not in overrides:
                problems.append(
                    f"{key}: the --config file has {file_value!r}, the run was trained with "
                    f"{run_value!r}"
                )
    if problems:
        raise ConfigError(
            f"the {what} config does not describe the trained model:\n  " + "\n  ".join(problems),
            hint=f"drop the --config file and model overrides: {what} reads the workdir's "
            f"config.json; only {', '.join(EVAL_SIDE_KEYS)} may be overridden",
        )
    config = ml_collections.ConfigDict(run_config.to_dict())
    for key, value in overrides.items():
        if key in EVAL_SIDE_KEYS:
            _set(config, key, value)
    config.lock()
    return config


def parse_override_value(text: str) -> Any:
    """A --config.KEY=VALUE value as the config flags read it: a Python literal, else the
    string itself (paths)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text

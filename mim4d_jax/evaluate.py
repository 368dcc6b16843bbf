"""`python -m mim4d_jax.evaluate`: the command line of the pre-training evaluation (the code
and its outputs: mim4d_jax/evaluation/evaluate.py)."""

from __future__ import annotations

import json

from absl import app, flags
from ml_collections import config_flags

from mim4d_jax import user_errors
from mim4d_jax.evaluation import evaluate
from mim4d_jax.training import config_checks

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "optional: a config file, needed only to pass --config.KEY=VALUE overrides of the "
    f"evaluation-side keys ({', '.join(config_checks.EVAL_SIDE_KEYS)}); the model is always "
    "the workdir's config.json",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "training workdir (checkpoints, eval/ output)")
_STEP = flags.DEFINE_integer("step", None, "checkpoint step; default: the latest")
_DEPTH_GT = flags.DEFINE_string("depth_gt", "", "synthetic dataroot with depth_gt/ (optional)")
_MAX_CLIPS = flags.DEFINE_integer("max_clips", 0, "evaluate the first N clips (0 = all)")
_STRIDE = flags.DEFINE_integer("stride", 0, "render every Nth pixel (0 = about 100 px wide)")
_MASK = flags.DEFINE_bool("mask", True, "mask the inputs as in pre-training (seeded)")
_PANELS = flags.DEFINE_integer("panels", 2, "PNG panels for the first N clips")
_BLIND = flags.DEFINE_bool(
    "blind", False, "remove the input images (targets kept); writes eval/blind/step_N.json"
)
_SHUFFLED = flags.DEFINE_bool(
    "shuffled",
    False,
    "feed every clip another val clip's images (targets kept); writes eval/shuffled/step_N.json",
)


_LIDAR_ONLY = flags.DEFINE_bool(
    "lidar_only",
    False,
    "render only the LiDAR rays: depth metrics, no PSNR, dense depth or panels (fast controls)",
)


def main(argv) -> None:
    del argv
    file_config = _CONFIG.value
    overrides = (
        config_flags.get_override_values(flags.FLAGS["config"]) if file_config is not None else {}
    )
    result = evaluate.run(
        evaluate.resolve_config(_WORKDIR.value, file_config, overrides),
        _WORKDIR.value,
        _STEP.value,
        depth_gt=_DEPTH_GT.value,
        max_clips=_MAX_CLIPS.value,
        stride=_STRIDE.value,
        mask=_MASK.value,
        panels=_PANELS.value,
        blind=_BLIND.value,
        shuffled=_SHUFFLED.value,
        lidar_only=_LIDAR_ONLY.value,
    )
    print(json.dumps(result))


def cli() -> None:
    """Console script `mim4d-evaluate` and `python -m mim4d_jax.evaluate`."""
    flags.mark_flags_as_required(["workdir"])
    # Known errors (bad data, bad config, damaged checkpoint) as one line.
    user_errors.run_cli(lambda: app.run(main))


if __name__ == "__main__":
    cli()

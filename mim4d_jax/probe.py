r"""Downstream yardstick: train and score a BEV vehicle-segmentation probe.

  python -m mim4d_jax.probe --config configs/probe_bev.py[:variant] --workdir DIR \
      --init PRETRAIN_WORKDIR|random [--freeze backbone|lift|none] [--config.k=v ...]

The probe is a small BEV head on the key frame's lifted volume (mim4d_jax/models/bev_head.py),
trained on the train split with the pre-training trainer (same mesh, jit step, Orbax
checkpoints, metrics.jsonl, TensorBoard) in DIR/probe/, then scored on the val split:
vehicle IoU at threshold 0.5 and at the best threshold, written to DIR/probe/result.json with
PNG panels DIR/probe/panel_<i>.png. A run resumes from DIR/probe/checkpoints.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from etils import epath
from flax import nnx

from mim4d_jax import atomic_files
from mim4d_jax import train as train_lib  # defines --config, --workdir (shared with train)
from mim4d_jax.data.example import make_example
from mim4d_jax.data.pipeline import make_input_pipeline
from mim4d_jax.data.reader import ClipReader, open_dataset_dir, require_boxes
from mim4d_jax.evaluation.bev_panels import write_bev_panel
from mim4d_jax.evaluation.bev_probe import BEVIoU, frozen_prefixes, make_probe_loss
from mim4d_jax.models.bev_head import build_probe
from mim4d_jax.training import checkpoint
from mim4d_jax.training.overlay import overlay

_INIT = flags.DEFINE_string("init", None, "pre-training workdir, or 'random'")
_FREEZE = flags.DEFINE_enum("freeze", "lift", ["backbone", "lift", "none"], "what stays frozen")

# Input geometry the representation was trained with; the probe must feed the same.
_SAME_DATA_KEYS = ("cameras", "image_size", "pad_size", "mask_patch")


def _as_tuple(value: Any) -> tuple:
    """Sequences (cameras, sizes) and scalars (mask_patch) in one comparable form."""
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def resolve_config(
    config: ml_collections.ConfigDict, init: str, freeze: str
) -> ml_collections.ConfigDict:
    """The probe config of a run: the representation (model, render) of the pre-training
    workdir `init` (or the config's own for "random"), the freeze mode's frozen parameters."""
    config = ml_collections.ConfigDict(config.to_dict())  # an unlocked copy
    config.probe.init, config.probe.freeze = init, freeze
    config.optim.frozen_prefixes = frozen_prefixes(freeze)
    if init != "random":
        pre = checkpoint.read_config(init)
        config.model, config.render = pre.model, pre.render
        for key in _SAME_DATA_KEYS:
            mine, theirs = _as_tuple(config.data[key]), _as_tuple(pre.data[key])
            if mine != theirs:
                raise ValueError(
                    f"data.{key}={mine} differs from the pre-training run's {theirs} "
                    f"({init}/config.json): pass --config.data.{key}={theirs}"
                )
    config.lock()
    return config


def pretrained_init(config: ml_collections.ConfigDict) -> train_lib.InitFn:
    """init_fn for the trainer: every parameter and BatchNorm statistic of the pre-trained
    MIM4D (all but `bev_head`) from the `probe.init` workdir."""
    step = None if config.probe.init_step < 0 else int(config.probe.init_step)

    def init(params: dict, batch_stats: dict, shardings: dict) -> tuple[dict, dict]:
        _, pre_params, pre_bstats, pre_step = checkpoint.restore_params(config.probe.init, step)
        logging.info("probe: initialised from %s step %d", config.probe.init, pre_step)
        # The probe's own head is new; everything else is the representation under test.
        head_only = ("bev_head",)
        source = f"the pre-training checkpoint {config.probe.init} step {pre_step}"
        return (
            overlay(params, pre_params, shardings["params"], source_name=source, skip=head_only),
            overlay(batch_stats, pre_bstats, shardings["batch_stats"], source_name=source),
        )

    return init


def _unmasked_train_pipeline(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    return make_input_pipeline(config, mesh, split=config.data.train_split, train=False)


def evaluate(
    config: ml_collections.ConfigDict, probe_dir: epath.Path, panels_by_split: dict[str, int]
) -> dict[str, dict]:
    """Scores the latest probe checkpoint on each split of `panels_by_split`, writing that
    many BEV panels of the split's first samples; returns {split: scores}."""
    _, params, bstats, step = checkpoint.restore_params(
        probe_dir, None, config=config, build=build_probe
    )
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: build_probe(config, nnx.Rngs(0))))

    @jax.jit
    def probabilities(params, bstats, images, lidar2img):
        model = nnx.merge(graphdef, params, bstats, copy=True)
        logits = model.bev_logits(images, lidar2img, freeze_lift=True, train=False)
        return jax.nn.sigmoid(logits)[0]

    def predict(images_nthwc: np.ndarray, lidar2img_nt44: np.ndarray) -> np.ndarray:
        images, lidar2img = jnp.asarray(images_nthwc)[None], jnp.asarray(lidar2img_nt44)[None]
        return np.asarray(probabilities(params, bstats, images, lidar2img))

    return {
        split: _score_split(config, probe_dir, predict, step, split, panels)
        for split, panels in panels_by_split.items()
    }


def _score_split(config, probe_dir, predict, step: int, split: str, panels: int) -> dict:
    """BEVIoU of `predict` (one sample's images, lidar2img -> (H, W) probabilities) over the
    split's samples, and the panels of its first `panels` samples."""
    scores = BEVIoU()
    reader = ClipReader(config, split)
    limit = int(config.probe.eval_max_samples)
    count = len(reader) if limit <= 0 else min(limit, len(reader))
    w, h = (int(v) for v in config.data.image_size)
    for index in range(count):
        clip, where = reader.read_clip(index)
        example = make_example(
            clip, config, seed=config.seed, position=index, train=False, where=where
        )
        prob_hw = predict(example["images"], example["lidar2img"])
        scores.add(prob_hw, example["bev_target"])
        if index < panels:
            write_bev_panel(
                probe_dir / f"panel_{index}.png",
                example["images"][:, 0, :h, :w],
                tuple(config.data.cameras),
                example["bev_target"],
                prob_hw,
                tuple(config.model.pc_range),
                f"{split} sample {index} ({clip['sample_token'][:8]}): "
                f"init={config.probe.init}, freeze={config.probe.freeze}, step {step}",
            )
    reader.close()
    return {**scores.result(), "step": int(step)}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (or resumes) the probe in WORKDIR/probe, scores it, writes result.json."""
    require_boxes(open_dataset_dir(config.data.dir))
    probe_dir = checkpoint.workdir_path(workdir) / "probe"
    init_fn = None if config.probe.init == "random" else pretrained_init(config)
    train_lib.train(
        config,
        probe_dir,
        pipeline_factory=_unmasked_train_pipeline,
        model_factory=lambda rngs: build_probe(config, rngs),
        loss_fn=make_probe_loss(config),
        init_fn=init_fn,
    )
    splits = {config.data.val_split: int(config.probe.panels)}
    if config.probe.fit_split:
        splits.setdefault(config.probe.fit_split, 0)
    scored = evaluate(config, probe_dir, splits)
    # The same head scored on the split it was trained on: a probe that cannot fit its own
    # training data measures the head (or too few steps), not the features.
    fit: dict = {}
    if config.probe.fit_split:
        fit_scores = scored[config.probe.fit_split]
        fit = {f"fit_{key}": fit_scores[key] for key in ("iou", "best_iou", "num_samples")}
        fit["fit_split"] = config.probe.fit_split
    result = {
        **scored[config.data.val_split],
        **fit,
        "init": config.probe.init,
        "freeze": config.probe.freeze,
        "steps": int(config.total_steps),
        "data": config.data.dir,
        "val_split": config.data.val_split,
        "bev_hw": list(config.data.bev_hw),
        "categories": list(config.data.bev_categories),
        "blind_images": bool(config.ablation.blind_images),
    }
    atomic_files.write_text(probe_dir / "result.json", json.dumps(result, indent=2))
    return result


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS.workdir or not _INIT.value:
        raise app.UsageError("--workdir and --init are required")
    config = resolve_config(flags.FLAGS.config, _INIT.value, _FREEZE.value)
    print(json.dumps(run(config, flags.FLAGS.workdir)), flush=True)


def cli() -> None:
    """Console script `mim4d-probe` and `python -m mim4d_jax.probe`."""
    flags.mark_flag_as_required("config")
    app.run(main)


if __name__ == "__main__":
    cli()

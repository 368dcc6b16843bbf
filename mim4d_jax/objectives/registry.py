"""The objective registry: every pre-training objective by name, what it needs, and the one
loss function that trains the weighted combination of `config.objectives`.

    config.objectives = {mim4d: 1.0, croco: 0.0, pointcontrast: 0.0}   # 0 = off
    --config.objectives.croco=1.0      # switches CroCo on, next to MIM4D

`build_loss_fn(config)` returns `loss_fn(model, batch, rng, *, train) -> (total, aux)`:
total = sum of weight * objective loss over the objectives with weight > 0; aux["losses"]
holds every objective's terms (MIM4D's four under their own names, the others prefixed by the
objective's name) and, when more than one objective is on, `<name>_loss` per objective
(unweighted). With the default config the loss function is MIM4D's own, computed exactly as
`objectives.mim4d.make_loss_fn` computes it (same rng, no rescaling).

The objectives share one forward pass where they can: the model is wrapped so that a second
`lift` of the same batch arrays returns the first one's volumes (MIM4D and PointContrast
both contrast/render the lifted volumes of the same masked inputs).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from mim4d_jax.data.batch import example_spec
from mim4d_jax.objectives import croco, mim4d, pointcontrast
from mim4d_jax.user_errors import ConfigError

LossFn = Callable[..., tuple[jax.Array, dict]]

MIM4D_BATCH_KEYS = (
    "images",
    "patch_keep",
    "lidar2img",
    "vol2ref",
    "target_frames",
    "ray_origin",
    "ray_dir",
    "ray_rgb",
    "ray_depth",
    "temporal_valid",
)
MIM4D_SUBMODULES = (
    "img_backbone",
    "img_neck",
    "input_proj",
    "depth_net",
    "render_conv",
    "history_decoder",
    "render_model",
)


@dataclasses.dataclass(frozen=True)
class Objective:
    """One pre-training objective: its loss builder and what it reads."""

    name: str
    make_loss_fn: Callable[[ml_collections.ConfigDict], LossFn]
    batch_keys: tuple[str, ...]  # batch entries the loss reads
    submodules: tuple[str, ...]  # model attributes the loss calls
    terms: tuple[str, ...]  # aux["losses"] keys it logs
    rng_stream: int  # fold_in index of its rng (MIM4D's is the step rng itself)


OBJECTIVES: dict[str, Objective] = {
    "mim4d": Objective(
        "mim4d", mim4d.make_loss_fn, MIM4D_BATCH_KEYS, MIM4D_SUBMODULES, mim4d.LOSS_TERMS, 0
    ),
    "croco": Objective(
        "croco", croco.make_loss_fn, croco.BATCH_KEYS, croco.SUBMODULES, croco.TERMS, 1
    ),
    "pointcontrast": Objective(
        "pointcontrast",
        pointcontrast.make_loss_fn,
        pointcontrast.BATCH_KEYS,
        pointcontrast.SUBMODULES,
        pointcontrast.TERMS,
        2,
    ),
}


def active_objectives(config: ml_collections.ConfigDict) -> list[tuple[str, float]]:
    """(name, weight) of the objectives with weight > 0, in registry order."""
    check_config(config)
    return [
        (name, float(config.objectives[name]))
        for name in OBJECTIVES
        if float(config.objectives[name]) > 0
    ]


def check_config(config: ml_collections.ConfigDict) -> None:
    """Errors naming an unknown or missing objective, a bad weight, or a batch key that an
    enabled objective needs and this config's batch spec lacks."""
    if "objectives" not in config:
        raise ConfigError(
            "config has no 'objectives' block; expected weights for " + ", ".join(OBJECTIVES)
        )
    given = dict(config.objectives.items())
    unknown = sorted(set(given) - set(OBJECTIVES))
    if unknown:
        raise ConfigError(
            f"unknown objective(s) {unknown} in config.objectives; known: {sorted(OBJECTIVES)}"
        )
    missing = [name for name in OBJECTIVES if name not in given]
    if missing:
        raise ConfigError(
            f"config.objectives lacks {missing}: every objective needs a weight (0 = off)"
        )
    for name, weight in given.items():
        if not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"config.objectives.{name}={weight!r} must be a finite number >= 0")
    if not any(float(w) > 0 for w in given.values()):
        raise ConfigError(f"every weight in config.objectives is 0 ({given}): nothing to train")
    spec = example_spec(config)
    for name in OBJECTIVES:
        if float(given[name]) <= 0:
            continue
        absent = [key for key in OBJECTIVES[name].batch_keys if key not in spec]
        if absent:
            raise ConfigError(
                f"objective {name!r} needs batch key(s) {absent}, which the batch spec of this "
                "config does not produce"
            )


class SharedModel:
    """The model, with `lift` memoised on the identity of its input arrays.

    Every objective sees this wrapper instead of the model; all other attributes are the
    model's. The first objective to lift a batch decides the lift's rng (MIM4D when on, so
    its result is unchanged); a later objective lifting the same arrays gets those volumes,
    and its gradient flows through the one lift.
    """

    def __init__(self, model: Any) -> None:
        self._model = model
        self._lifts: dict[tuple, tuple[tuple, jax.Array]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def lift(self, images, patch_keep, lidar2img, *, rng=None, train: bool = False):
        key = (id(images), id(patch_keep), id(lidar2img), bool(train))
        if key not in self._lifts:
            vols = self._model.lift(images, patch_keep, lidar2img, rng=rng, train=train)
            # The inputs are kept alive with the result, so their ids cannot be reused.
            self._lifts[key] = ((images, patch_keep, lidar2img), vols)
        return self._lifts[key][1]


def build_loss_fn(config: ml_collections.ConfigDict) -> LossFn:
    """The weighted sum of the enabled objectives (see the module docstring)."""
    active = active_objectives(config)
    fns = {name: OBJECTIVES[name].make_loss_fn(config) for name, _ in active}

    def loss_fn(
        model: Any, batch: dict[str, jax.Array], rng: jax.Array | None, *, train: bool = True
    ) -> tuple[jax.Array, dict]:
        shared = SharedModel(model)
        total = None
        losses: dict[str, jax.Array] = {}
        for name, weight in active:
            objective = OBJECTIVES[name]
            absent = [key for key in objective.batch_keys if key not in batch]
            if absent:
                raise KeyError(f"objective {name!r} needs batch key(s) {absent}")
            lacking = [sub for sub in objective.submodules if not hasattr(model, sub)]
            if lacking:
                raise AttributeError(
                    f"objective {name!r} needs model submodule(s) {lacking}; the model builds "
                    f"them when config.objectives.{name} > 0"
                )
            key = rng
            if rng is not None and objective.rng_stream:
                key = jax.random.fold_in(rng, objective.rng_stream)
            value, aux = fns[name](shared, batch, key, train=train)
            weighted = value if weight == 1.0 else weight * value
            total = weighted if total is None else total + weighted
            for term, term_value in aux["losses"].items():
                if name != "mim4d" and not term.startswith(name + "_"):
                    raise ValueError(f"objective {name!r} logs {term!r} without its name prefix")
                losses[term] = term_value
            if len(active) > 1:
                losses.setdefault(f"{name}_loss", value)
        return total, {"losses": losses}

    return loss_fn

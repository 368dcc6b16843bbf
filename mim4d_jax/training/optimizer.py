"""The reference optimiser: AdamW with a slower backbone, frozen early stages, clipping,
linear warm-up then cosine decay, and an optional EMA of the parameters.

Parameters are pure nested dicts (the `to_pure_dict()` of the NNX Param state); a parameter
is named by its dotted path, e.g. `img_backbone.stages.0.1.pwconv1.kernel`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

FROZEN, BACKBONE, DEFAULT = "frozen", "backbone", "default"
BACKBONE_PREFIX = "img_backbone"


def path_name(path: tuple) -> str:
    """Dotted name of a pytree path of dict keys / sequence indices."""
    parts = []
    for key in path:
        for attr in ("key", "idx", "name"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return ".".join(parts)


# Never used by the renderer (the reference keeps it for checkpoint parity): it gets no
# gradient, and PyTorch's AdamW skips it, so it must not drift under decoupled weight decay.
ALWAYS_FROZEN = ("render_model.laplace_density",)


def frozen_prefixes(frozen_stages: int, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """mmcv ConvNeXt `_freeze_stages`: stages i < frozen_stages and their downsample layers
    (downsample_layers.0 is the stem), the parameters no loss reaches, and `extra`
    (`optim.frozen_prefixes`, e.g. a probe's frozen features)."""
    prefixes = [*ALWAYS_FROZEN, *extra]
    for i in range(frozen_stages):
        prefixes += [f"{BACKBONE_PREFIX}.downsample_layers.{i}", f"{BACKBONE_PREFIX}.stages.{i}"]
    return tuple(prefixes)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def param_labels(params: Any, frozen_stages: int, extra_frozen: tuple[str, ...] = ()) -> Any:
    """Same tree as `params` with each leaf replaced by FROZEN, BACKBONE or DEFAULT."""
    frozen = frozen_prefixes(frozen_stages, extra_frozen)

    def label(path: tuple, _: Any) -> str:
        name = path_name(path)
        if any(_under(name, p) for p in frozen):
            return FROZEN
        return BACKBONE if _under(name, BACKBONE_PREFIX) else DEFAULT

    return jax.tree_util.tree_map_with_path(label, params)


def make_schedule(optim: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Linear warm-up from warmup_start_factor*lr to lr, then cosine down to min_lr_ratio*lr.

    The reference steps the cosine per epoch; per-step cosine is the smooth equivalent and
    does not depend on the epoch length of a particular dataset.
    """
    warmup = int(optim.warmup_steps)
    decay_steps = max(int(total_steps) - warmup, 1)
    cosine = optax.cosine_decay_schedule(optim.lr, decay_steps, alpha=optim.min_lr_ratio)
    if warmup <= 0:
        return cosine
    ramp = optax.linear_schedule(optim.lr * optim.warmup_start_factor, optim.lr, warmup)
    return optax.join_schedules([ramp, cosine], [warmup])


def make_optimizer(
    config: ml_collections.ConfigDict, params: Any
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW (PyTorch betas/eps) per group, clipping over the trainable grads only.

    Frozen parameters get exactly zero updates, so neither Adam nor the decoupled weight
    decay moves them; their gradients are zeroed before the global norm so that clipping
    sees the same gradient set as PyTorch (where frozen params have requires_grad=False).
    """
    optim = config.optim
    schedule = make_schedule(optim, config.total_steps)
    labels = param_labels(params, config.model.frozen_stages, tuple(optim.frozen_prefixes))

    def adamw(scale: float) -> optax.GradientTransformation:
        return optax.adamw(
            lambda step: scale * schedule(step),
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            weight_decay=optim.weight_decay,
        )

    mask_frozen = optax.multi_transform(
        {FROZEN: optax.set_to_zero(), BACKBONE: optax.identity(), DEFAULT: optax.identity()}, labels
    )
    update = optax.multi_transform(
        {FROZEN: optax.set_to_zero(), BACKBONE: adamw(optim.backbone_lr_mult), DEFAULT: adamw(1.0)},
        labels,
    )
    tx = optax.chain(mask_frozen, optax.clip_by_global_norm(optim.grad_clip), update)
    return tx, schedule


def trainable_grad_norm(
    grads: Any, frozen_stages: int, extra_frozen: tuple[str, ...] = ()
) -> jax.Array:
    """Global L2 norm of the gradients the optimiser clips (frozen ones excluded)."""
    labels = param_labels(grads, frozen_stages, extra_frozen)
    kept = jax.tree.map(
        lambda g, label: g if label != FROZEN else jnp.zeros((), g.dtype), grads, labels
    )
    return optax.tree.norm(kept)


def ema_update(ema: Mapping, params: Mapping, decay: float) -> Any:
    """ema <- decay * ema + (1 - decay) * params (mmcv EMAHook with momentum 1 - decay)."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)

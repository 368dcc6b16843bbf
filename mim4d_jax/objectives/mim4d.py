"""The pre-training loss: render the directly lifted and the predicted volume of two target
frames ([0, k]) along LiDAR rays, L1 on RGB and depth (reference weights 10 and 10).

Total = 1/2 * sum over the two targets of (rgb + depth on the direct volume + rgb_adj +
depth_adj on the predicted volume), averaged over the batch: the reference's
`losses[key] /= len(new_id_list)` with one sample per device, generalised to any batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mim4d_jax.models.mim4d import MIM4D
from mim4d_jax.rendering.losses import render_losses
from mim4d_jax.rendering.renderer import render_rays

NUM_TARGETS = 2
LOSS_TERMS = ("rgb_loss", "depth_loss", "rgb_loss_adj", "depth_loss_adj")


def render_batch(
    model: MIM4D, vol_bzyxc: jax.Array, origin_br3, dir_br3, rng: jax.Array | None
) -> dict[str, jax.Array]:
    """render_rays over the batch: one volume and its rays per sample."""
    cfg = model.render_cfg
    field = model.render_model
    keys = None if rng is None else jax.random.split(rng, vol_bzyxc.shape[0])

    def one(vol, origins, dirs, key):
        return render_rays(field, vol, origins, dirs, cfg, model.model_cfg, key)

    return jax.vmap(one)(vol_bzyxc, origin_br3, dir_br3, keys)


def loss_fn(
    model: MIM4D, batch: dict[str, jax.Array], rng: jax.Array | None, *, train: bool = True
) -> tuple[jax.Array, dict]:
    """(total loss, aux) for a batch laid out as in docs/architecture.md.

    aux["losses"] holds the four terms averaged over targets and batch.
    """
    drop_rng = render_rng = None
    if rng is not None:
        drop_rng, render_rng = jax.random.split(rng)
    vols_btzyxc = model.lift(
        batch["images"],
        batch["patch_keep"],
        batch["lidar2img"],
        rng=drop_rng if train else None,
        train=train,
    )
    batch_idx = jnp.arange(vols_btzyxc.shape[0])
    # Samples without real history fall back to the direct volume alone, counted under both
    # names (the reference's is_hop=False): no temporal target made of repeated frames.
    temporal_b = batch["temporal_valid"] > 0
    sums = dict.fromkeys(LOSS_TERMS, 0.0)
    for i in range(NUM_TARGETS):
        key_b = batch["target_frames"][:, i]
        volumes = {
            "": vols_btzyxc[batch_idx, key_b],
            "_adj": model.predict(vols_btzyxc, batch["vol2ref"], key_b),
        }
        per_sample = {}
        for j, (suffix, vol_bzyxc) in enumerate(volumes.items()):
            key = None if render_rng is None else jax.random.fold_in(render_rng, 2 * i + j)
            pred = render_batch(
                model, vol_bzyxc, batch["ray_origin"][:, i], batch["ray_dir"][:, i], key
            )
            losses = jax.vmap(
                lambda p, rgb, depth: render_losses(
                    p, rgb, depth, model.render_cfg, model.model_cfg
                )
            )(pred, batch["ray_rgb"][:, i], batch["ray_depth"][:, i])
            per_sample.update({name + suffix: value_b for name, value_b in losses.items()})
        for name in ("rgb_loss", "depth_loss"):
            per_sample[name + "_adj"] = jnp.where(
                temporal_b, per_sample[name + "_adj"], per_sample[name]
            )
        for name, value_b in per_sample.items():
            sums[name] = sums[name] + jnp.mean(value_b) / NUM_TARGETS
    total = sum(sums.values())
    return total, {"losses": sums}

"""The MIM4D pre-training loss: render the directly lifted and the predicted volume of two
target frames ([0, k]) along LiDAR rays, L1 on RGB and depth (reference weights 10 and 10).

Total = 1/2 * sum over the two targets of (rgb + depth on the direct volume + rgb_adj +
depth_adj on the predicted volume), averaged over the batch: the reference's
`losses[key] /= len(new_id_list)` with one sample per device, generalised to any batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from mim4d_jax.models.mim4d import MIM4D
from mim4d_jax.rendering.renderer import Renderer
from mim4d_jax.rendering.targets import target_volume

NUM_TARGETS = 2
LOSS_TERMS = ("rgb_loss", "depth_loss", "rgb_loss_adj", "depth_loss_adj")
# The loss term suffix of each rendered volume.
_SUFFIX = {"direct": "", "predicted": "_adj"}


def make_loss_fn(config: ml_collections.ConfigDict):
    """`loss_fn(model, batch, rng, *, train) -> (total, aux)` with the config's renderer."""
    renderer = Renderer.from_config(config)

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
        # Samples without real history fall back to the direct volume alone, counted under
        # both names (the reference's is_hop=False): no temporal target of repeated frames.
        temporal_b = batch["temporal_valid"] > 0
        sums = dict.fromkeys(LOSS_TERMS, 0.0)
        for i in range(NUM_TARGETS):
            key_b = batch["target_frames"][:, i]
            per_sample = {}
            for j, (which, suffix) in enumerate(_SUFFIX.items()):
                vol_bzyxc = target_volume(model, vols_btzyxc, batch["vol2ref"], key_b, which)
                key = None if render_rng is None else jax.random.fold_in(render_rng, 2 * i + j)
                pred = renderer.render_batch(
                    model.render_model,
                    vol_bzyxc,
                    batch["ray_origin"][:, i],
                    batch["ray_dir"][:, i],
                    key,
                )
                losses = jax.vmap(renderer.losses)(
                    pred, batch["ray_rgb"][:, i], batch["ray_depth"][:, i]
                )
                per_sample.update({name + suffix: value_b for name, value_b in losses.items()})
            for name in ("rgb_loss", "depth_loss"):
                per_sample[name + "_adj"] = jnp.where(
                    temporal_b, per_sample[name + "_adj"], per_sample[name]
                )
            for name, value_b in per_sample.items():
                sums[name] = sums[name] + jnp.mean(value_b) / NUM_TARGETS
        total = sum(sums.values())
        return total, {"losses": sums}

    return loss_fn

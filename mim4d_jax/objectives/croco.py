"""CroCo-style cross-view completion: reconstruct the masked patches of view 1 from its few
visible patches and a second, unmasked view of the same scene.

Per sample, `croco.num_pairs` view pairs come from the input pipeline (`croco_pairs`: same
camera at the key frame and an earlier frame, optionally ring-neighbour cameras; only pairs
with LiDAR-measured overlap, data/pairs.py). On the device:
1. view 1 gets its own random patch mask at `croco.mask_ratio` (exactly
   round(L * (1 - ratio)) visible patches per image, drawn from the step's rng: a different
   mask every step, independent of `data.mask_ratio`);
2. both views go through the shared SparK-masked ConvNeXt in one call (view 2 unmasked);
   the stride-32 output is one token per mask patch;
3. `model.croco_decoder` predicts every view-1 patch's pixels;
4. the loss is the MSE against per-patch normalised pixels (`croco.norm_pix_loss`) over the
   masked patches only, averaged per pair and then over valid pairs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from mim4d_jax.data import masks
from mim4d_jax.models.convnext import MASK_STRIDE
from mim4d_jax.user_errors import ConfigError

BATCH_KEYS = ("images", "croco_pairs", "croco_pair_valid")
SUBMODULES = ("img_backbone", "croco_decoder")
TERMS = ("croco_loss",)
_EVAL_MASK_SEED = 0  # a fixed mask when the loss is evaluated without an rng


def random_keep(rng: jax.Array, num_images: int, grid_hw: tuple[int, int], ratio: float):
    """(num_images, rows, cols) float32, 1 = visible, exactly `masks.num_visible` per image
    (the ranks of uniform noise: one uniformly random subset per image)."""
    rows, cols = grid_hw
    length = rows * cols
    visible = masks.num_visible(length, ratio)
    noise_nl = jax.random.uniform(rng, (num_images, length))
    ranks_nl = jnp.argsort(jnp.argsort(noise_nl, axis=1), axis=1)
    return (ranks_nl < visible).astype(jnp.float32).reshape(num_images, rows, cols)


def patchify(images_nhwc: jax.Array, patch: int) -> jax.Array:
    """(N, H, W, 3) -> (N, H/p, W/p, p*p*3), each patch in (row, column, RGB) order."""
    n, h, w, c = images_nhwc.shape
    x = images_nhwc.reshape(n, h // patch, patch, w // patch, patch, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h // patch, w // patch, patch * patch * c)


def patch_targets(images_nhwc: jax.Array, patch: int, norm_pix: bool) -> jax.Array:
    """Pixel targets per patch; with `norm_pix` each patch is standardised by its own mean
    and variance (CroCo/MAE's norm_pix_loss), so the loss weighs structure, not brightness."""
    target = patchify(images_nhwc.astype(jnp.float32), patch)
    if norm_pix:
        mean = jnp.mean(target, axis=-1, keepdims=True)
        var = jnp.var(target, axis=-1, keepdims=True)
        target = (target - mean) / jnp.sqrt(var + 1e-6)
    return target


def masked_patch_loss(
    pred_nhwd: jax.Array, target_nhwd: jax.Array, keep_nhw: jax.Array, valid_n: jax.Array
) -> jax.Array:
    """Mean squared error over the masked (keep = 0) patches of each image, averaged over the
    images with valid = 1. Visible patches never count."""
    err_nhw = jnp.mean(jnp.square(pred_nhwd.astype(jnp.float32) - target_nhwd), axis=-1)
    masked_nhw = 1.0 - keep_nhw
    per_image_n = jnp.sum(err_nhw * masked_nhw, axis=(1, 2)) / jnp.maximum(
        jnp.sum(masked_nhw, axis=(1, 2)), 1.0
    )
    return jnp.sum(per_image_n * valid_n) / jnp.maximum(jnp.sum(valid_n), 1.0)


def gather_views(images_bnthwc: jax.Array, pairs_bp4: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(view 1, view 2) images (B*P, H, W, 3) of each sample's pairs."""
    b, p = pairs_bp4.shape[:2]
    b_idx = jnp.arange(b)[:, None]
    view1 = images_bnthwc[b_idx, pairs_bp4[..., 0], pairs_bp4[..., 1]]
    view2 = images_bnthwc[b_idx, pairs_bp4[..., 2], pairs_bp4[..., 3]]
    shape = (b * p, *images_bnthwc.shape[3:])
    return view1.reshape(shape), view2.reshape(shape)


def check_config(config: ml_collections.ConfigDict) -> None:
    c = config.croco
    masks.num_visible(1, float(c.mask_ratio))
    if int(config.data.mask_patch) != MASK_STRIDE:
        raise ConfigError(
            f"croco predicts one patch per stride-{MASK_STRIDE} backbone token: "
            f"data.mask_patch must be {MASK_STRIDE}, got {config.data.mask_patch}"
        )
    if int(c.dec_dims) % (4 * int(c.dec_heads)):
        raise ConfigError(
            f"croco.dec_dims={c.dec_dims} must be a multiple of 4 * croco.dec_heads="
            f"{c.dec_heads} (2D RoPE splits each head in four)"
        )


def make_loss_fn(config: ml_collections.ConfigDict):
    """`loss_fn(model, batch, rng, *, train) -> (loss, aux)`; aux["losses"] has TERMS."""
    check_config(config)
    ratio = float(config.croco.mask_ratio)
    norm_pix = bool(config.croco.norm_pix_loss)
    wp, hp = (int(v) for v in config.data.pad_size)
    grid_hw = masks.patch_grid((wp, hp), MASK_STRIDE)

    def loss_fn(model, batch: dict, rng: jax.Array | None, *, train: bool = True):
        view1, view2 = gather_views(batch["images"], batch["croco_pairs"])
        valid_n = batch["croco_pair_valid"].reshape(-1).astype(jnp.float32)
        n = view1.shape[0]
        if rng is None:
            mask_rng, drop_rng = jax.random.key(_EVAL_MASK_SEED), None
        else:
            mask_rng, drop_rng = jax.random.split(rng)
        keep1_nhw = random_keep(mask_rng, n, grid_hw, ratio)
        # One backbone call for both views (view 2 fully visible): the same weights and BN-free
        # layers, so this equals two calls, at one launch's cost.
        keep_nhw = jnp.concatenate([keep1_nhw, jnp.ones_like(keep1_nhw)])
        backbone_l, _ = model.features(
            jnp.concatenate([view1, view2]), keep_nhw, rng=drop_rng if train else None
        )
        tokens_nhwc = backbone_l[-1]
        pred_nhwd = model.croco_decoder(tokens_nhwc[:n], keep1_nhw, tokens_nhwc[n:])
        target_nhwd = patch_targets(view1, MASK_STRIDE, norm_pix)
        loss = masked_patch_loss(pred_nhwd, target_nhwd, keep1_nhw, valid_n)
        return loss, {"losses": {"croco_loss": loss}}

    return loss_fn

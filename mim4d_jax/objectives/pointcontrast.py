"""PointContrast-style PointInfoNCE between the lifted volumes of two frames of a clip.

The input pipeline gives `pc_points`: key-frame LiDAR points of static structure in frame-0
volume coordinates, with `pc_valid` (data/pairs.py). The same world point in the coordinates
of frame k = target_frames[:, 1] is inv(vol2ref[k]) @ p. Features are read from the frame-0
and frame-k lifted volumes at the two positions (trilinear), projected by `model.pc_head` and
L2-normalised; point i of frame 0 must pick its own match among all valid frame-k points of
the sample (the other pairs are the negatives) with logits f0_i . fk_j / temperature.

The lift is the same call as the MIM4D objective's, so with both objectives on it runs once
(the registry shares it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from mim4d_jax.geometry.grid import VoxelGrid
from mim4d_jax.geometry.rigid import invert_rigid
from mim4d_jax.geometry.trilinear import trilinear_lookup
from mim4d_jax.user_errors import ConfigError

BATCH_KEYS = (
    "images",
    "patch_keep",
    "lidar2img",
    "vol2ref",
    "target_frames",
    "pc_points",
    "pc_valid",
)
SUBMODULES = ("img_backbone", "img_neck", "input_proj", "depth_net", "render_conv", "pc_head")
TERMS = ("pointcontrast_loss", "pointcontrast_acc")
_HIGHEST = jax.lax.Precision.HIGHEST
_NEG = -1e9  # logit of an invalid (padding) candidate: exp() underflows to exactly 0


def frame_points(points_bm3: jax.Array, vol2ref_bt44: jax.Array, k_b: jax.Array) -> jax.Array:
    """Frame-0 volume coords -> frame-k coords of each sample: inv(vol2ref[b, k_b]) @ p."""
    ref2vol_b44 = invert_rigid(vol2ref_bt44[jnp.arange(vol2ref_bt44.shape[0]), k_b])
    rot_b33, trans_b3 = ref2vol_b44[:, :3, :3], ref2vol_b44[:, :3, 3]
    return jnp.einsum("bij,bmj->bmi", rot_b33, points_bm3, precision=_HIGHEST) + trans_b3[:, None]


def point_info_nce(
    q_bmd: jax.Array, k_bmd: jax.Array, valid_bm: jax.Array, temperature: float
) -> tuple[jax.Array, jax.Array]:
    """(loss, top-1 accuracy) of PointInfoNCE over each sample's valid pairs.

    Row i's positive is column i; every other valid column of the same sample is a negative;
    invalid rows and columns take no part. The loss is the mean over valid rows of
    logsumexp_j(q_i . k_j / T) - q_i . k_i / T, then over samples that have a valid row.
    With M valid pairs and constant features it is exactly log(M).
    """
    valid_bm = valid_bm.astype(jnp.float32)
    logits_bmm = jnp.einsum("bid,bjd->bij", q_bmd, k_bmd, precision=_HIGHEST) / float(temperature)
    logits_bmm = jnp.where(valid_bm[:, None, :] > 0, logits_bmm, _NEG)
    positive_bm = jnp.diagonal(logits_bmm, axis1=1, axis2=2)
    loss_bm = jax.nn.logsumexp(logits_bmm, axis=-1) - positive_bm
    hit_bm = (jnp.argmax(logits_bmm, axis=-1) == jnp.arange(q_bmd.shape[1])).astype(jnp.float32)
    rows_b = jnp.sum(valid_bm, axis=1)
    has_b = (rows_b > 0).astype(jnp.float32)
    denom = jnp.maximum(jnp.sum(has_b), 1.0)

    def mean(x_bm: jax.Array) -> jax.Array:
        per_b = jnp.sum(x_bm * valid_bm, axis=1) / jnp.maximum(rows_b, 1.0)
        return jnp.sum(per_b * has_b) / denom

    return mean(loss_bm), mean(hit_bm)


def check_config(config: ml_collections.ConfigDict) -> None:
    temperature = float(config.pointcontrast.temperature)
    if not temperature > 0:
        raise ConfigError(f"pointcontrast.temperature must be > 0, got {temperature}")


def make_loss_fn(config: ml_collections.ConfigDict):
    """`loss_fn(model, batch, rng, *, train) -> (loss, aux)`; aux["losses"] has TERMS."""
    check_config(config)
    grid = VoxelGrid.from_config(config.model.pc_range, config.model.voxel_size)
    temperature = float(config.pointcontrast.temperature)

    def loss_fn(model, batch: dict, rng: jax.Array | None, *, train: bool = True):
        drop_rng = None if rng is None else jax.random.split(rng)[0]
        vols_btzyxc = model.lift(
            batch["images"],
            batch["patch_keep"],
            batch["lidar2img"],
            rng=drop_rng if train else None,
            train=train,
        )
        b = vols_btzyxc.shape[0]
        k_b = batch["target_frames"][:, 1]
        points0_bm3 = batch["pc_points"].astype(jnp.float32)
        pointsk_bm3 = frame_points(points0_bm3, batch["vol2ref"].astype(jnp.float32), k_b)
        lookup = jax.vmap(lambda vol, pts: trilinear_lookup(vol, pts, grid))
        feat0_bmc = lookup(vols_btzyxc[:, 0], points0_bm3)
        featk_bmc = lookup(vols_btzyxc[jnp.arange(b), k_b], pointsk_bm3)
        loss, acc = point_info_nce(
            model.pc_head(feat0_bmc), model.pc_head(featk_bmc), batch["pc_valid"], temperature
        )
        return loss, {"losses": {"pointcontrast_loss": loss, "pointcontrast_acc": acc}}

    return loss_fn

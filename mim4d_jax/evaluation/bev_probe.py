"""The BEV probe's loss and scores: sigmoid focal (or BCE) + dice on the vehicle-occupancy
target, and dataset-level IoU at 0.5 and at the best of a fixed threshold sweep."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

FREEZE_MODES = ("backbone", "lift", "none")
# Thresholds of the IoU sweep; 0.5 is among them (index 9).
THRESHOLDS = np.round(np.linspace(0.05, 0.95, 19), 2)


def frozen_prefixes(freeze: str) -> tuple[str, ...]:
    """Parameter prefixes that never update under a freeze mode. The history decoder and the
    render field are never used by the probe, so they are always frozen (no weight decay)."""
    if freeze not in FREEZE_MODES:
        raise ValueError(f"--freeze {freeze!r} is not one of {FREEZE_MODES}")
    unused = ("history_decoder", "render_model")
    lift = ("img_backbone", "img_neck", "input_proj", "depth_net", "render_conv")
    return {"none": unused, "backbone": ("img_backbone", *unused), "lift": (*lift, *unused)}[freeze]


def segmentation_losses(
    logits_bhw: jax.Array, target_bhw: jax.Array, probe: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
    """{"cls": focal or BCE term, "dice": 1 - soft dice}, each averaged over the batch.

    The focal term is summed over cells and divided by the number of positive cells (at least
    1), as RetinaNet: rare vehicles are not drowned by the empty road.
    """
    prob_bhw = jax.nn.sigmoid(logits_bhw)
    bce_bhw = (
        jnp.maximum(logits_bhw, 0)
        - logits_bhw * target_bhw
        + jnp.log1p(jnp.exp(-jnp.abs(logits_bhw)))
    )
    positives_b = jnp.maximum(jnp.sum(target_bhw, axis=(1, 2)), 1.0)
    if probe.loss == "focal_dice":
        p_t = prob_bhw * target_bhw + (1 - prob_bhw) * (1 - target_bhw)
        alpha_t = probe.focal_alpha * target_bhw + (1 - probe.focal_alpha) * (1 - target_bhw)
        cls_b = jnp.sum(alpha_t * (1 - p_t) ** probe.focal_gamma * bce_bhw, axis=(1, 2))
        cls_b = cls_b / positives_b
    elif probe.loss == "bce_dice":
        cls_b = jnp.mean(bce_bhw, axis=(1, 2))
    else:
        raise ValueError(f"probe.loss={probe.loss!r} is not focal_dice or bce_dice")
    inter_b = jnp.sum(prob_bhw * target_bhw, axis=(1, 2))
    union_b = jnp.sum(prob_bhw, axis=(1, 2)) + jnp.sum(target_bhw, axis=(1, 2))
    dice_b = 1.0 - (2.0 * inter_b + 1.0) / (union_b + 1.0)
    return {"cls": jnp.mean(cls_b), "dice": probe.dice_weight * jnp.mean(dice_b)}


def make_probe_loss(config: ml_collections.ConfigDict):
    """`loss_fn(model, batch, rng, *, train) -> (total, aux)` for the trainer's jit step."""
    freeze_lift = config.probe.freeze == "lift"
    probe = ml_collections.FrozenConfigDict(config.probe)

    def loss_fn(model, batch, rng, *, train: bool = True):
        logits_bhw = model.bev_logits(
            batch["images"], batch["lidar2img"], freeze_lift=freeze_lift, train=train, rng=rng
        )
        terms = segmentation_losses(logits_bhw, batch["bev_target"], probe)
        return terms["cls"] + terms["dice"], {"losses": terms}

    return loss_fn


class BEVIoU:
    """Dataset-level IoU of the positive class (sums of TP, FP, FN over every cell of every
    sample, as LSS and BEVFormer report), for every threshold of THRESHOLDS at once."""

    def __init__(self) -> None:
        self.tp = np.zeros(len(THRESHOLDS))
        self.fp = np.zeros(len(THRESHOLDS))
        self.fn = np.zeros(len(THRESHOLDS))
        self.samples = 0
        self.positive_cells = 0.0
        self.cells = 0

    def add(self, prob_hw: np.ndarray, target_hw: np.ndarray) -> None:
        pred_khw = np.asarray(prob_hw)[None] >= THRESHOLDS[:, None, None]
        truth_hw = np.asarray(target_hw) > 0.5
        self.tp += np.sum(pred_khw & truth_hw, axis=(1, 2))
        self.fp += np.sum(pred_khw & ~truth_hw, axis=(1, 2))
        self.fn += np.sum(~pred_khw & truth_hw, axis=(1, 2))
        self.samples += 1
        self.positive_cells += float(truth_hw.sum())
        self.cells += truth_hw.size

    def result(self) -> dict[str, float]:
        union = self.tp + self.fp + self.fn
        iou_k = np.where(union > 0, self.tp / np.maximum(union, 1), 0.0)
        best = int(np.argmax(iou_k))
        half = int(np.flatnonzero(THRESHOLDS == 0.5)[0])
        return {
            "iou": float(iou_k[half]),
            "best_iou": float(iou_k[best]),
            "best_threshold": float(THRESHOLDS[best]),
            "num_samples": self.samples,
            "positive_fraction": self.positive_cells / max(self.cells, 1),
        }

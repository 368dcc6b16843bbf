r"""Downstream yardstick: a BEV vehicle-segmentation probe on a pre-trained model's lift.

  python -m mim4d_jax.probe --config configs/probe_bev.py:tiny --workdir RUN \
      --init PRETRAIN_WORKDIR|random [--freeze backbone|lift|none] \
      --config.data.dir=DATA [--config.total_steps=N]

Variants: `tiny` (default: the CPU-sized mim4d_tiny model and the synthetic world) and `S`
(the vs0.1 model, 200x200 BEV at 0.5 m as LSS / BEVFormer's vehicle segmentation). With
`--init WORKDIR`, the model, render and image geometry come from that workdir's config.json
(the representation under test); the keys below only configure the probe.
"""

import ml_collections

from configs import mim4d_tiny, mim4d_vs01


def get_config(arg=None) -> ml_collections.ConfigDict:
    variant = arg or "tiny"
    if variant == "tiny":
        c = mim4d_tiny.get_config()
        # 1000 steps (about 10 epochs of the 10-scene world's 96 train clips; 4-5 steps/s
        # frozen on the 2-core CPU): at 300 a random-init head fitted its own train split only
        # to best IoU 0.06, at 1000 to 0.23 (benchmarks/README.md, "Representation"). An
        # under-fitted head measures the head's budget, not the features.
        c.total_steps = 1000
        c.batch_size = 2
        c.checkpoint_every = 250
        bev_hw = (64, 64)  # 0.8 m cells over the tiny 51.2 m range
        head_channels = 32
        c.optim.lr = 2e-3
        c.optim.warmup_steps = 20
    elif variant == "S":
        c = mim4d_vs01.get_config("S")
        c.total_steps = 10_000
        c.checkpoint_every = 1000
        bev_hw = (200, 200)  # 0.512 m cells over 102.4 m
        head_channels = 128
        c.optim.lr = 2e-4
    else:
        raise ValueError(f"unknown variant {variant!r} of configs/probe_bev.py (use tiny or S)")
    # Previews render the pre-training volumes; the probe writes its own BEV panels instead.
    c.image_log_every = 0
    c.optim.warmup_start_factor = 0.1
    # Downstream inputs are unmasked; the masking of pre-training is not part of the probe.
    c.data.mask_ratio = 0.0
    c.data.bev_targets = True
    c.data.bev_hw = bev_hw  # (rows along y, columns along x) over model.pc_range
    c.data.bev_categories = ("vehicle.",)  # category-name prefixes counted as positive

    c.probe = ml_collections.ConfigDict()
    c.probe.init = "random"  # a pre-training workdir, or "random" (set by --init)
    c.probe.init_step = -1  # checkpoint step of --init; -1 = the latest
    c.probe.freeze = "lift"  # backbone | lift | none (set by --freeze)
    c.probe.head_channels = head_channels
    c.probe.head_layers = 3  # 3x3 convs at the voxel grid's BEV resolution
    c.probe.loss = "focal_dice"  # focal_dice | bce_dice
    c.probe.focal_gamma = 2.0
    c.probe.focal_alpha = 0.25
    c.probe.dice_weight = 1.0
    c.probe.eval_max_samples = 0  # val samples scored (0 = all)
    # Also score this split ("" = none; "train" = the split the head was fitted on): result.json
    # then holds fit_iou / fit_best_iou beside the val figures.
    c.probe.fit_split = "train"
    c.probe.panels = 2  # PNG panels of the first N val samples
    return c

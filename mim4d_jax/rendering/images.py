"""Image helpers shared by previews, evaluation and probe panels: ImageNet de-normalisation and
block means (the colour a ray through a block centre sees). Each takes `xp` = numpy or
jax.numpy. (Patch masks at pixel resolution: `models.convnext.upsample_keep`.)"""

from __future__ import annotations

import numpy as np

from mim4d_jax.data.example import IMAGENET_MEAN, IMAGENET_STD


def denormalise(images_hw3, xp=np):
    """ImageNet-normalised RGB (any leading dims) -> RGB in [0, 1] (not clipped)."""
    return images_hw3 * xp.asarray(IMAGENET_STD / 255.0) + xp.asarray(IMAGENET_MEAN / 255.0)


def block_mean(images_nhwc, stride: int, out_hw: tuple[int, int], xp=np):
    """Mean of `stride` x `stride` blocks of (..., H, W, C) images -> (..., h, w, C)."""
    h, w = out_hw
    crop = images_nhwc[..., : h * stride, : w * stride, :]
    lead = crop.shape[:-3]
    blocks = crop.reshape(*lead, h, stride, w, stride, crop.shape[-1])
    return blocks.mean(axis=(-4, -2))

"""The BEV probe: MIM4D's lift with a small segmentation head on the bird's-eye view.

The head sees the key frame's volume collapsed to BEV as the history decoder does it
(docs/architecture.md: (B, Y, X, C*Z), channel `c * Z + z`), runs a few 3x3 convs at the voxel
grid's resolution, upsamples bilinearly to the target BEV size and predicts one logit per
cell. It is deliberately small, so its score measures the features and not the head.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from mim4d_jax.models import layers
from mim4d_jax.models.history_decoder import volume_to_bev
from mim4d_jax.models.mim4d import MIM4D


class BEVHead(nnx.Module):
    """(B, Z, Y, X, C) volume -> (B, H, W) logits."""

    def __init__(
        self, in_channels: int, channels: int, num_layers: int, out_hw: tuple[int, int], rngs
    ) -> None:
        self.out_hw = tuple(int(v) for v in out_hw)
        widths = [in_channels] + [channels] * num_layers
        self.convs = nnx.List(
            [
                layers.conv(c_in, c_out, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
                for c_in, c_out in zip(widths[:-1], widths[1:])
            ]
        )
        self.classifier = layers.conv(channels, 1, (1, 1), rngs=rngs)
        # Start at the prior of a rare class (p = 0.01, as RetinaNet's focal-loss head), so
        # the first steps do not spend themselves pushing every cell negative.
        self.classifier.bias.set_value(jnp.full((1,), -jnp.log(99.0), jnp.float32))

    def __call__(self, vol_bzyxc: jax.Array) -> jax.Array:
        x_byxc = volume_to_bev(vol_bzyxc.astype(jnp.float32))
        for conv in self.convs:
            x_byxc = jax.nn.relu(conv(x_byxc))
        b, _, _, c = x_byxc.shape
        # Upsample features, not logits: the classifier then sees interpolated evidence.
        x_bhwc = jax.image.resize(x_byxc, (b, *self.out_hw, c), method="bilinear")
        return self.classifier(x_bhwc)[..., 0]


class BEVProbe(MIM4D):
    """MIM4D plus `bev_head`: the pre-training parameters keep their names, so a pre-training
    checkpoint restores into it key for key (and the optimiser's backbone groups still apply)."""

    def __init__(self, config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> None:
        super().__init__(config, rngs)
        z_size = self.grid.shape_zyx[0]
        self.bev_head = BEVHead(
            int(config.model.render_channels) * z_size,
            int(config.probe.head_channels),
            int(config.probe.head_layers),
            tuple(config.data.bev_hw),
            rngs,
        )

    def bev_logits(
        self,
        images_bnthwc: jax.Array,
        lidar2img_bnt44: jax.Array,
        *,
        freeze_lift: bool,
        train: bool,
        rng: jax.Array | None = None,
    ) -> jax.Array:
        """(B, H, W) vehicle logits of the key frame (frame 0) from unmasked images.

        `freeze_lift` stops gradients at the volume and keeps BatchNorm on its running
        statistics: the frozen-feature probe.
        """
        vols_btzyxc = self.lift(
            images_bnthwc[:, :, :1],
            None,
            lidar2img_bnt44[:, :, :1],
            rng=rng,
            train=train and not freeze_lift,
        )
        vol_bzyxc = vols_btzyxc[:, 0]
        if freeze_lift:
            vol_bzyxc = jax.lax.stop_gradient(vol_bzyxc)
        return self.bev_head(vol_bzyxc)


def build_probe(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> BEVProbe:
    return BEVProbe(config, rngs)

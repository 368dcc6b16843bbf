"""The transferable part of the reference detector in PyTorch: what a fine-tune loads.

`PerceptionRef` has the reference's top-level names (`img_backbone`, `img_neck`, `input_proj`,
`depth_net`, `render_conv`) so that the matching slice of an exported state dict loads into it
with `strict=True`. The history decoder and the SDF field are pre-training-only and checked by
key and shape (`reference_keys.py`), not re-implemented here.
"""

from collections.abc import Mapping, Sequence

import ml_collections
import torch
from torch import nn

from mim4d_jax.interop.torch_ref.convnext import VARIANTS, ConvNeXt
from mim4d_jax.interop.torch_ref.fpn import FPN

# State-dict prefixes owned by PerceptionRef (everything else in an export is pre-train-only).
PREFIXES: tuple[str, ...] = (
    "img_backbone.",
    "img_neck.",
    "input_proj.",
    "depth_net.",
    "render_conv.",
)


class PerceptionRef(nn.Module):
    """Backbone -> FPN (4 levels), plus the shared 1x1 heads and the Conv3d render projection."""

    def __init__(
        self,
        depths: Sequence[int],
        dims: Sequence[int],
        fpn_channels: int,
        start_level: int,
        num_outs: int,
        depth_bins: int,
        render_channels: int,
    ) -> None:
        super().__init__()
        self.img_backbone = ConvNeXt(depths, dims)
        self.img_neck = FPN(dims, fpn_channels, start_level=start_level, num_outs=num_outs)
        self.input_proj = nn.Conv2d(fpn_channels, fpn_channels, 1)
        self.depth_net = nn.Conv2d(fpn_channels, depth_bins, 1)
        # Conv3d 3x3x3 + BatchNorm3d + ReLU (the reference's `UVTRSSL.render_conv`),
        # keys render_conv.0.* / render_conv.1.*.
        self.render_conv = nn.Sequential(
            nn.Conv3d(fpn_channels, render_channels, 3, padding=1),
            nn.BatchNorm3d(render_channels),
            nn.ReLU(),
        )

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "PerceptionRef":
        m = config.model
        if m.backbone not in VARIANTS:
            raise ValueError(
                f"unknown ConvNeXt variant {m.backbone!r}; choose from {sorted(VARIANTS)}"
            )
        depths, dims = VARIANTS[m.backbone]
        return cls(
            depths,
            dims,
            int(m.fpn_channels),
            int(m.fpn_start_level),
            int(m.fpn_num_outs),
            int(m.depth_bins),
            int(m.render_channels),
        )

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> "PerceptionRef":
        """Sizes read off the tensors themselves, so a consumer needs no config to check an
        export (a missing key here raises KeyError naming it)."""
        keys = state_dict.keys()
        depths = [
            len({k.split(".")[3] for k in keys if k.startswith(f"img_backbone.stages.{s}.")})
            for s in range(4)
        ]
        dims = [state_dict[f"img_backbone.norm{i}.weight"].shape[0] for i in range(4)]
        lateral = len({k.split(".")[2] for k in keys if k.startswith("img_neck.lateral_convs.")})
        outs = len({k.split(".")[2] for k in keys if k.startswith("img_neck.fpn_convs.")})
        return cls(
            depths,
            dims,
            state_dict["input_proj.weight"].shape[0],
            len(dims) - lateral,
            outs,
            state_dict["depth_net.weight"].shape[0],
            state_dict["render_conv.0.weight"].shape[0],
        )

    def forward(self, images_nchw: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Returns (4 normed backbone outputs, FPN levels before the input projection)."""
        feats = self.img_backbone(images_nchw)
        return feats, self.img_neck(feats)

    def heads(self, level_nchw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_proj(level), depth logits(level)); the softmax over bins is the consumer's."""
        return self.input_proj(level_nchw), self.depth_net(level_nchw)


def own_slice(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of a full export that PerceptionRef owns."""
    return {k: v for k, v in state_dict.items() if k.startswith(PREFIXES)}

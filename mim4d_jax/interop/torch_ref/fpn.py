"""mmdet-style FPN in PyTorch (`img_neck.*` of the reference), written from the config below.

The reference config: FPN(in_channels=C, out_channels, start_level=1, num_outs=4,
add_extra_convs='on_output', relu_before_extra_convs=True). mmdet wraps every conv in a
ConvModule (no norm, no activation here), hence the `.conv` level in the keys:
`lateral_convs.{i}.conv`, `fpn_convs.{i}.conv`; the last fpn_conv is the extra stride-2 conv.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvModule(nn.Module):
    """A bare Conv2d under the attribute name `conv` (mmcv ConvModule with no norm/act)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=kernel_size // 2)

    def forward(self, x_nchw: torch.Tensor) -> torch.Tensor:
        return self.conv(x_nchw)


class FPN(nn.Module):
    """Top-down FPN over backbone levels start_level.., plus extra stride-2 convs on the last
    output until num_outs levels exist."""

    def __init__(
        self, in_channels: Sequence[int], out_channels: int, start_level: int = 1, num_outs: int = 4
    ) -> None:
        super().__init__()
        self.start_level = start_level
        used = len(in_channels) - start_level
        if num_outs < used:
            raise ValueError(f"num_outs={num_outs} is fewer than the {used} used input levels")
        self.lateral_convs = nn.ModuleList(
            [ConvModule(in_channels[start_level + i], out_channels, 1) for i in range(used)]
        )
        self.fpn_convs = nn.ModuleList(
            [ConvModule(out_channels, out_channels, 3) for _ in range(used)]
            + [ConvModule(out_channels, out_channels, 3, stride=2) for _ in range(num_outs - used)]
        )

    def forward(self, inputs_nchw: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [
            conv(inputs_nchw[self.start_level + i]) for i, conv in enumerate(self.lateral_convs)
        ]
        for i in range(len(laterals) - 1, 0, -1):
            # mmdet's default: nearest upsampling to the finer lateral's exact size.
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[2:], mode="nearest"
            )
        outs = [self.fpn_convs[i](lat) for i, lat in enumerate(laterals)]
        for i, conv in enumerate(self.fpn_convs[len(laterals) :]):
            # 'on_output': the first extra conv reads the last output as is; mmdet applies
            # relu_before_extra_convs only before the second and later extra convs.
            outs.append(conv(outs[-1] if i == 0 else F.relu(outs[-1])))
        return outs

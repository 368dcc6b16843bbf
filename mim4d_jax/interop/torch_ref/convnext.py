"""ConvNeXt v1 in PyTorch with the official key names (`img_backbone.*` of the reference).

Written from the reference's `MaskConvNeXt` layout, not copied: this is the consumer an
exported checkpoint must load into with `strict=True`. No masking: verification runs with the
mask off, where the SparK backbone is exactly a dense ConvNeXt.

Keys: downsample_layers.{0}.{0: Conv 4x4/4, 1: LN}, downsample_layers.{1..3}.{0: LN, 1: Conv
2x2/2}, stages.{s}.{b}.{dwconv, norm, pwconv1, pwconv2, gamma}, norm0..norm3 (output LNs).
"""

from collections.abc import Sequence

import torch
from torch import nn

LN_EPS = 1e-6  # ConvNeXt uses 1e-6 everywhere (torch's LayerNorm default is 1e-5)

# The same variant table as the JAX model, written out again so a change on one side shows up
# as a failing equivalence test instead of silently following.
VARIANTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "S": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "B": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "tiny": ((1, 1, 2, 1), (16, 32, 64, 128)),
    "nano": ((1, 1, 1, 1), (8, 16, 32, 64)),
}


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (official "channels_first" LN)."""

    def __init__(self, channels: int, eps: float = LN_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x_nchw: torch.Tensor) -> torch.Tensor:
        mean = x_nchw.mean(dim=1, keepdim=True)
        var = (x_nchw - mean).pow(2).mean(dim=1, keepdim=True)  # biased, as LayerNorm
        x_nchw = (x_nchw - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x_nchw + self.bias[:, None, None]


class Block(nn.Module):
    """dwconv 7x7 -> LN (channels last) -> Linear C->4C -> GELU -> Linear 4C->C -> *gamma,
    added to the input (no drop path: verification is inference)."""

    def __init__(self, dim: int, layer_scale_init: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()  # exact erf GELU
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init))

    def forward(self, x_nchw: torch.Tensor) -> torch.Tensor:
        y_nhwc = self.dwconv(x_nchw).permute(0, 2, 3, 1)
        y_nhwc = self.pwconv2(self.act(self.pwconv1(self.norm(y_nhwc))))
        return x_nchw + (self.gamma * y_nhwc).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """Returns the four normed stage outputs (strides 4, 8, 16, 32), NCHW."""

    def __init__(self, depths: Sequence[int], dims: Sequence[int]) -> None:
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0]))]
        )
        for i in range(1, 4):
            self.downsample_layers.append(
                nn.Sequential(
                    LayerNorm2d(dims[i - 1]),
                    nn.Conv2d(dims[i - 1], dims[i], kernel_size=2, stride=2),
                )
            )
        self.stages = nn.ModuleList(
            [nn.Sequential(*[Block(dims[s]) for _ in range(depths[s])]) for s in range(4)]
        )
        for i in range(4):
            self.add_module(f"norm{i}", LayerNorm2d(dims[i]))

    def forward(self, x_nchw: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(4):
            x_nchw = self.stages[i](self.downsample_layers[i](x_nchw))
            outs.append(getattr(self, f"norm{i}")(x_nchw))
        return outs

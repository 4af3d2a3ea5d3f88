"""``--backbone resnet_slim``: ResNet-18's BasicBlocks at a fraction of its widths, from scratch.

Why: at 4-7 minutes on one GPU, ResNet-18 n (11.25 M parameters) is the only member that passed
mAP@[.5:.95] 0.90 on the held-out set, while the separable ``tiny`` backbone levels off near
0.85; but the shipped bundle must stay under 10 MB, and a bundle stores every weight twice
(float16: ~4.2 bytes a parameter, so ~2.3 M parameters). This keeps ResNet's dense 3x3 residual
blocks (the GPU's fastest convolution, and the one that separates the two) and ResNet-18's widths
at strides 4 and 8, where localisation is decided; narrower at strides 16 and 32, where ResNet-18
keeps most of its parameters. Measured on one H200 (bench/README.md), the held-out mAP rose with
the widths at strides 4 and 8 (n < s < m).

No ImageNet weights exist for these widths: ``--pretrained`` is refused for it.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import BasicBlock
from .centernet import conv_bn

# --size -> (stem width at stride 2, widths at strides 4, 8, 16, 32), BasicBlocks per stage.
RESNET_SLIM = {
    'n': ((24, 32, 64, 96, 128), (2, 2, 2, 2)),
    's': ((32, 64, 96, 160, 192), (2, 2, 2, 1)),
    'm': ((32, 64, 128, 160, 192), (2, 2, 2, 1)),
}


def residual_stage(c_in: int, c_out: int, blocks: int, stride: int) -> nn.Sequential:
    rest = (BasicBlock(c_out, c_out, 1) for _ in range(blocks - 1))
    return nn.Sequential(BasicBlock(c_in, c_out, stride), *rest)


class ResNetSlim(nn.Module):
    """Two 3x3 stride-2 convolutions to stride 4 (the tiny backbone's stem: ResNet's 7x7 and
    max-pool throw away detail the small objects need), then four BasicBlock stages."""

    name = 'resnet_slim'

    def __init__(self, size: str = 'n') -> None:
        super().__init__()
        (w0, w4, w8, w16, w32), blocks = RESNET_SLIM[size]
        self.channels = (w4, w8, w16, w32)
        self.stem = nn.Sequential(conv_bn(3, w0, 3, 2), conv_bn(w0, w4, 3, 2))
        self.layer1 = residual_stage(w4, w4, blocks[0], 1)
        self.layer2 = residual_stage(w4, w8, blocks[1], 2)
        self.layer3 = residual_stage(w8, w16, blocks[2], 2)
        self.layer4 = residual_stage(w16, w32, blocks[3], 2)
        for m in self.modules():  # as torchvision initialises its ResNets
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c4 = self.layer1(self.stem(x))
        c8 = self.layer2(c4)
        c16 = self.layer3(c8)
        return c4, c8, c16, self.layer4(c16)

"""ResNet with bottleneck blocks (ResNet-50 by default), torchvision's parameter names, no classifier.

DECA's encoders use this trunk (an ImageNet ResNet-50 without its ``fc``
layer) in front of a small MLP; their checkpoints name its tensors the way
torchvision does, so a state dict loads by name:

    conv1 (7x7, stride 2), bn1                       the stem, then ReLU and 3x3/2 max pooling
    layer{s}.{b}.conv1 / bn1                         1x1 reduce to the stage width
    layer{s}.{b}.conv2 / bn2                         3x3 (the stride-2 block strides here)
    layer{s}.{b}.conv3 / bn3                         1x1 expand to 4x the width
    layer{s}.0.downsample.{0: conv1x1, 1: BN}        the projection shortcut of a stage's first block

Stages ``s = 1..4`` are 64, 128, 256 and 512 wide (256...2048 after
expansion); ResNet-50 has (3, 4, 6, 3) blocks.  Every convolution is
bias-free and followed by BatchNorm (evaluated with its running statistics);
the activation is ReLU.  The output is the globally average-pooled last
feature map, ``[B, 2048]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RESNET50_BLOCKS = (3, 4, 6, 3)
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1, each with BatchNorm, ReLU after all but the last; plus the shortcut."""

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNetTrunk(nn.Module):
    """Images ``[B, 3, H, W]`` -> pooled features ``[B, 2048]`` (H = W = 224 gives a 7x7 last map)."""

    def __init__(self, blocks: tuple[int, ...] = RESNET50_BLOCKS):
        super().__init__()
        if len(blocks) != len(STAGE_WIDTHS) or min(blocks) < 1:
            raise ValueError(f"expected {len(STAGE_WIDTHS)} stages of at least one block, got {blocks}")
        self.blocks = tuple(blocks)
        self.conv1 = nn.Conv2d(3, STAGE_WIDTHS[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        channels = STAGE_WIDTHS[0]
        for index, (count, width) in enumerate(zip(blocks, STAGE_WIDTHS)):
            stride = 1 if index == 0 else 2
            stage = []
            for block in range(count):
                stage.append(Bottleneck(channels, width, stride if block == 0 else 1))
                channels = width * EXPANSION
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), kernel_size=3, stride=2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        # Global average pooling as DECA's AvgPool2d(7) over a 224 input's 7x7 map: the same kernel, so the
        # same summation order and bit-identical features (a .mean() differs by float rounding).
        return F.avg_pool2d(x, kernel_size=x.shape[-2:]).flatten(1)

"""IR-SE residual networks: the ArcFace face-recognition backbone and e4e's feature extractor.

Module names follow TreB1eN/InsightFace_Pytorch (``model_ir_se50.pth``), which
e4e and PTI copy, so their state dicts load by name:

    input_layer.{0: conv3x3, 1: BN, 2: PReLU}
    body.{i}.shortcut_layer.{0: conv1x1, 1: BN}      (only where the width changes)
    body.{i}.res_layer.{0: BN, 1: conv3x3, 2: PReLU, 3: conv3x3/stride, 4: BN, 5: SE}
    body.{i}.res_layer.5.fc1 / fc2                   (squeeze-excitation 1x1 convs)
    output_layer.{0: BN2d, 1: Dropout, 2: Flatten, 3: Linear, 4: BN1d}   (ArcFace only)

IR-SE50 is 4 stages of (3, 4, 14, 3) units, 64/128/256/512 wide; every stage
starts with a stride-2 unit.  Widths and unit counts are parameters so tests
can build the same layout small; loaders infer them from a state dict.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IRSE50_UNITS = (3, 4, 14, 3)
IRSE_DEPTHS = (64, 128, 256, 512)


@dataclass(frozen=True)
class IRSEConfig:
    units: tuple[int, ...] = IRSE50_UNITS
    depths: tuple[int, ...] = IRSE_DEPTHS
    se: bool = True          # 'ir_se' (squeeze-excitation) or plain 'ir'
    se_reduction: int = 16

    @property
    def stage_ends(self) -> list[int]:
        """Index of the last unit of each stage (e4e taps the features there)."""
        ends, total = [], 0
        for count in self.units:
            total += count
            ends.append(total - 1)
        return ends


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x):
        scale = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return x * scale


class IRUnit(nn.Module):
    """Pre-activation residual unit: BN, conv, PReLU, strided conv, BN (, SE), plus a shortcut."""

    def __init__(self, in_channels: int, depth: int, stride: int, config: IRSEConfig):
        super().__init__()
        self.stride = stride
        if in_channels != depth:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        else:
            self.shortcut_layer = None  # identity, subsampled by the stride (a 1x1 max-pool)
        layers = [nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
                  nn.PReLU(depth), nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth)]
        if config.se:
            layers.append(SqueezeExcite(depth, config.se_reduction))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x):
        shortcut = x[:, :, ::self.stride, ::self.stride] if self.shortcut_layer is None else self.shortcut_layer(x)
        return self.res_layer(x) + shortcut


def irse_input_layer(depth: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, depth, 3, 1, 1, bias=False), nn.BatchNorm2d(depth), nn.PReLU(depth))


def irse_body(config: IRSEConfig) -> nn.Sequential:
    units = []
    in_channels = config.depths[0]
    for count, depth in zip(config.units, config.depths):
        for index in range(count):
            units.append(IRUnit(in_channels, depth, 2 if index == 0 else 1, config))
            in_channels = depth
    return nn.Sequential(*units)


class ArcFaceBackbone(nn.Module):
    """Aligned face crop ([N,3,S,S] in [-1,1], S = 112 or 224) -> unit-length 512-d identity embedding."""

    def __init__(self, config: IRSEConfig = IRSEConfig(), input_size: int = 112, embedding: int = 512,
                 dropout: float = 0.6):
        super().__init__()
        if input_size % 16:
            raise ValueError(f"ArcFace input size must be a multiple of 16, got {input_size}")
        self.config = config
        self.input_size = input_size
        self.input_layer = irse_input_layer(config.depths[0])
        self.body = irse_body(config)
        spatial = input_size // 16
        self.output_layer = nn.Sequential(nn.BatchNorm2d(config.depths[-1]), nn.Dropout(dropout), nn.Flatten(),
                                          nn.Linear(config.depths[-1] * spatial * spatial, embedding),
                                          nn.BatchNorm1d(embedding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.output_layer(self.body(self.input_layer(x)))
        return F.normalize(features, dim=1)

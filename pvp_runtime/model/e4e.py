"""The e4e encoder (Tov et al. 2021, ``Encoder4Editing(50, 'ir_se')``): image -> W+ offsets.

An IR-SE50 body with a feature pyramid.  W+ layer 0 comes from the coarsest
features (stride 16); every other layer adds a delta predicted from the
coarse (layers 1-2), middle (3-6, stride 8) or fine (7+, stride 4) pyramid
level.  Each predictor (``styles.{i}``) halves its feature map down to 1x1
with stride-2 convolutions, then applies an equalized-lr linear layer.
The caller adds ``latent_avg`` (e4e is trained to start from the mean W).

Names follow the e4e repository so its ``encoder.*`` tensors load by name:
``input_layer``, ``body`` (see :mod:`.irse`), ``styles.{i}.convs.{2k}`` and
``styles.{i}.linear``, ``latlayer1`` (stage 3 -> top width), ``latlayer2``
(stage 2 -> top width).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .irse import IRSEConfig, irse_body, irse_input_layer

COARSE_END = 3   # W+ layers [0, 3) read the stride-16 features
MIDDLE_END = 7   # [3, 7) the stride-8 pyramid level, the rest the stride-4 level


class EqualizedLinear(nn.Module):
    """Linear layer with run-time weight scaling 1/sqrt(fan_in) (StyleGAN's equalized learning rate)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = 1 / math.sqrt(in_features)

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


class StylePredictor(nn.Module):
    """Feature map [N, C, s, s] -> one W vector [N, C] (``GradualStyleBlock`` in e4e)."""

    def __init__(self, channels: int, spatial: int):
        super().__init__()
        layers = []
        for _ in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualizedLinear(channels, channels)
        self.channels = channels

    def forward(self, x):
        return self.linear(self.convs(x).reshape(-1, self.channels))


class Encoder4Editing(nn.Module):
    def __init__(self, num_ws: int, config: IRSEConfig = IRSEConfig(), input_size: int = 256):
        super().__init__()
        if len(config.units) != 4 or input_size % 16:
            raise ValueError("e4e needs a 4-stage IR-SE body and an input size divisible by 16")
        self.config = config
        self.num_ws = num_ws
        self.input_size = input_size
        width = config.depths[-1]
        self.input_layer = irse_input_layer(config.depths[0])
        self.body = irse_body(config)
        spatial = {0: input_size // 16, 1: input_size // 8, 2: input_size // 4}
        self.styles = nn.ModuleList(StylePredictor(width, spatial[self.level(i)]) for i in range(num_ws))
        self.latlayer1 = nn.Conv2d(config.depths[2], width, 1)
        self.latlayer2 = nn.Conv2d(config.depths[1], width, 1)

    @staticmethod
    def level(layer: int) -> int:
        return 0 if layer < COARSE_END else 1 if layer < MIDDLE_END else 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, input_size, input_size] in [-1, 1] -> W+ offsets from latent_avg [N, num_ws, C]."""
        x = self.input_layer(images)
        taps = {}
        ends = self.config.stage_ends
        for index, unit in enumerate(self.body):
            x = unit(x)
            if index in ends:
                taps[index] = x
        c1, c2, c3 = taps[ends[1]], taps[ends[2]], taps[ends[3]]
        w = self.styles[0](c3)
        codes = [w]
        features = c3
        for layer in range(1, self.num_ws):
            if layer == COARSE_END:
                features = _upsample_add(c3, self.latlayer1(c2))
                middle = features
            elif layer == MIDDLE_END:
                features = _upsample_add(middle, self.latlayer2(c1))
            codes.append(w + self.styles[layer](features))
        return torch.stack(codes, dim=1)


def _upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """Feature-pyramid merge: bilinear (align_corners=True) upsampling of ``top`` to ``lateral``'s size."""
    return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral

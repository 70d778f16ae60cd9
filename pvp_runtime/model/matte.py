"""The matte head: a subject's learnt alpha, read off the synthesis network's last features.

A fit with mattes (``pvp fit --mattes``) learns it next to the generator
(``fit/matte_loss.py``).  It is a separate module rather than a fourth ToRGB
channel so that the generator is untouched by it: a pretrained StyleGAN2 keeps
its exact layout and weights, a subject without mattes renders bit-identically,
and the RGB fit does not depend on whether mattes were given (the head reads
the features detached, so its loss never reaches the generator).

Input: the last synthesis block's features ``[N, C, R, R]`` and the RGB image
``[N, 3, R, R]`` the generator made from them (the image also carries the
lower-resolution skip path the last features alone miss).  One 3x3
convolution (a little spatial context for the silhouette edge), a leaky ReLU,
and a 1x1 convolution to one logit per pixel; alpha is its sigmoid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_HIDDEN = 16


@dataclass(frozen=True)
class MatteConfig:
    in_channels: int            # the generator's channels at its output resolution
    resolution: int             # the generator's output resolution
    hidden: int = DEFAULT_HIDDEN

    def __post_init__(self):
        for field in ("in_channels", "resolution", "hidden"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"matte {field} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MatteConfig":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class MatteHead(nn.Module):
    def __init__(self, config: MatteConfig):
        super().__init__()
        self.config = config
        self.conv = nn.Conv2d(config.in_channels + 3, config.hidden, 3, padding=1)
        self.out = nn.Conv2d(config.hidden, 1, 1)
        # Starts as the prior alone (a zero last layer), so a new head is no worse than its prior.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.prior = nn.Parameter(torch.zeros(1, 1, config.resolution, config.resolution))

    def forward(self, features: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Alpha ``[N, 1, R, R]`` in [0, 1] (float32) from the last features and the generator's image."""
        x = torch.cat([features, images.to(features.dtype)], dim=1)
        logits = self.out(F.leaky_relu(self.conv(x), 0.2)) + self.prior.to(x.dtype)
        return torch.sigmoid(logits.float())

"""The shape every pretrained face network takes inside `pvp fit`: a frozen, differentiable function.

ArcFace (identity), DECA (channel estimation) and e4e (inversion) are used the same way:
generator-space images ``[N, 3, H, W]`` in [-1, 1] go in, the losses backpropagate through
them to the renders, and the networks themselves never change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FrozenNetwork(nn.Module):
    """Wraps ``network`` so its weights never train and its BatchNorm statistics never move.

    Training loops call ``.train()`` on everything they hold; the saved BatchNorm statistics are
    part of the pretrained network, so the wrapped network stays in eval mode regardless.
    """

    def __init__(self, network: nn.Module, name: str):
        super().__init__()
        self.name = name  # logged by `pvp fit` with the other networks it used
        self.network = network.eval().requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.network.eval()
        return self


def check_images(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [N, 3, H, W], got {tuple(images.shape)}")


def check_crop(crop: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    top, bottom, left, right = crop
    if not (top < bottom and left < right):
        raise ValueError(f"crop must be fractions (top, bottom, left, right) with top < bottom, left < right, "
                         f"got {crop}")
    return crop


def face_box(images: torch.Tensor, crop: tuple[float, float, float, float]) -> torch.Tensor:
    """The box ``crop`` (top, bottom, left, right as fractions of the image) cut out of ``images``.

    Where the box leaves the image it is filled with zeros, as a warp with zero fill would.
    """
    height, width = images.shape[-2:]
    top, bottom, left, right = crop
    rows = round(top * height), round(bottom * height)
    cols = round(left * width), round(right * width)
    # Negative padding crops, positive padding adds zeros: one call cuts the box out.
    return F.pad(images, (-cols[0], cols[1] - width, -rows[0], rows[1] - height))

"""Pixel reconstruction losses of the scratch prior: ``mse`` and ``laplacian_l1``.

Both ignore the pixels a rolled render does not cover (``coverage`` from
frame_roll.py; None: every pixel counts).

``laplacian_l1`` is the mean absolute error of each level of a Laplacian pyramid
of the difference, summed over levels, so every octave of detail weighs the same
(Bojanowski et al. 2018, "Optimizing the Latent Space of Generative Networks").
Why: without pretrained LPIPS weights (not downloadable here) the scratch prior
learns from pixels alone.  Where the channels do not pin a frame down exactly (a
blink half a frame early, a tracker's jitter), MSE's best render is the mean of
the candidate frames: a ghosted, blurred eye or mouth, in which an expression
channel has nothing sharp left to move.  L1's best render is their median, one of
the sharp frames; taking it per octave keeps coarse and fine structure in balance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PIXEL_LOSSES = ("mse", "laplacian_l1")
COARSEST_LEVEL = 8  # pixels: below this a level is only a few blobs


def _masked_difference(images: torch.Tensor, targets: torch.Tensor, coverage: torch.Tensor | None) -> torch.Tensor:
    if coverage is None:
        return images - targets
    return (images - targets * coverage) * coverage


def covered_mse(images: torch.Tensor, targets: torch.Tensor, coverage: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error where the (rolled) render covers the crop."""
    if coverage is None:
        return F.mse_loss(images, targets)
    squared = (images - targets * coverage).square() * coverage
    return squared.sum() / (coverage.sum() * images.shape[1]).clamp(min=1.0)


def laplacian_l1(images: torch.Tensor, targets: torch.Tensor, coverage: torch.Tensor | None) -> torch.Tensor:
    """Sum over pyramid levels of the covered mean |level of (images - targets)|.

    The pyramid is linear, so the pyramid of the difference is the difference of
    the pyramids; coverage is box-filtered alongside to normalise each level.
    """
    difference = _masked_difference(images, targets, coverage)
    weight = torch.ones_like(images[:, :1]) if coverage is None else coverage
    total = images.new_zeros(())
    while True:
        coarse_ok = difference.shape[-1] // 2 >= COARSEST_LEVEL
        if coarse_ok:
            down = F.avg_pool2d(difference, 2)
            level = difference - F.interpolate(down, scale_factor=2, mode="bilinear", align_corners=False)
        else:
            level = difference
        total = total + (level.abs() * weight).sum() / (weight.sum() * images.shape[1]).clamp(min=1.0)
        if not coarse_ok:
            return total
        difference, weight = down, F.avg_pool2d(weight, 2)


def pixel_loss(name: str):
    """The loss function called ``name`` (one of PIXEL_LOSSES)."""
    if name == "mse":
        return covered_mse
    if name == "laplacian_l1":
        return laplacian_l1
    raise ValueError(f"pixel loss must be one of {', '.join(PIXEL_LOSSES)}, got {name!r}")

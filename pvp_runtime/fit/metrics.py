"""Image metrics of the evaluation: PSNR, SSIM and LPIPS, per frame.

Images are ``[B, 3, H, W]`` float sRGB in [0, 1].  SSIM is Wang et al.'s
with an 11-tap Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, computed per
channel, averaged over channels and over the image away from the border,
which is what ``skimage.metrics.structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=...)``
computes (the tests compare against it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .lpips import LPIPS

SSIM_SIGMA = 1.5
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)  # skimage truncates its Gaussian at 3.5 sigma
SSIM_K1, SSIM_K2 = 0.01, 0.03


def psnr(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-frame PSNR; with ``weights`` ``[B, 1, H, W]`` (a soft region mask) the mean squared
    error is the weighted mean over the region only."""
    squared = (a.double() - b.double()).square()
    if weights is None:
        mse = squared.mean(dim=(1, 2, 3))
    else:
        w = weights.double().expand_as(squared)
        mse = (squared * w).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3)).clamp(min=1e-12)
    return torch.where(mse > 0, 10 * torch.log10(1.0 / mse.clamp(min=1e-20)), torch.full_like(mse, math.inf)).float()


def _gaussian_filter(x: torch.Tensor) -> torch.Tensor:
    taps = torch.exp(-0.5 * (torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=x.dtype) / SSIM_SIGMA) ** 2)
    taps = (taps / taps.sum()).to(x.device)
    c = x.shape[1]
    x = F.pad(x, (SSIM_RADIUS,) * 4, mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ssim(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-frame SSIM; with ``weights`` the SSIM map is averaged over the soft region only."""
    if min(a.shape[-2:]) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * SSIM_RADIUS + 1} px, got {tuple(a.shape[-2:])}")
    a, b = a.double(), b.double()
    mu_a, mu_b = _gaussian_filter(a), _gaussian_filter(b)
    var_a = _gaussian_filter(a * a) - mu_a ** 2
    var_b = _gaussian_filter(b * b) - mu_b ** 2
    cov = _gaussian_filter(a * b) - mu_a * mu_b
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    r = SSIM_RADIUS
    index = index[..., r:-r, r:-r]
    if weights is None:
        return index.mean(dim=(1, 2, 3)).float()
    w = weights.double()[..., r:-r, r:-r].expand_as(index)
    return ((index * w).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3)).clamp(min=1e-12)).float()


@torch.no_grad()
def frame_metrics(render: torch.Tensor, truth: torch.Tensor, lpips: LPIPS | None, matte: torch.Tensor | None = None,
                  region: torch.Tensor | None = None) -> dict:
    """Per-frame PSNR, SSIM, LPIPS; with a matte both images lose their background (set to black).

    With ``region`` (the soft eyes-and-mouth mask, ``[B, 1, H, W]``) also PSNR and SSIM inside it:
    full-frame scores reward a blurry average head, these are where expression shows.
    """
    if matte is not None:
        render, truth = render * matte, truth * matte
    metrics = {"psnr": psnr(render, truth), "ssim": ssim(render, truth)}
    if lpips is not None:
        metrics["lpips"] = lpips(render * 2 - 1, truth * 2 - 1)
    if region is not None:
        metrics["psnr_eyes_mouth"] = psnr(render, truth, region)
        metrics["ssim_eyes_mouth"] = ssim(render, truth, region)
    return metrics

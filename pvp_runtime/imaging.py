"""Colour and pixel conventions of rendered frames.

The generator is trained on sRGB-encoded photos, so its output is sRGB.  We
hand out two forms:

* ``linear``: float32 scene-linear RGBA, alpha premultiplied, top row first.
  This is what Blender's Render Result holds (Blender wants the bottom row
  first; the add-on flips).
* ``srgb8``: uint8 sRGB RGBA, straight (not premultiplied) alpha, top row
  first: what PNG files and video encoders expect.
"""

from __future__ import annotations

import numpy as np
import torch


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def generator_to_srgb(img: torch.Tensor) -> torch.Tensor:
    """Generator output (about [-1, 1]) -> sRGB in [0, 1]."""
    return ((img.float() + 1.0) * 0.5).clamp(0.0, 1.0)


def srgb_to_uint8(srgb: torch.Tensor) -> torch.Tensor:
    return (srgb * 255.0).round().clamp(0, 255).to(torch.uint8)


def unpremultiply(rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return torch.where(alpha > 0, rgb / alpha.clamp(min=1e-8), torch.zeros_like(rgb))


def to_channels_last_numpy(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).cpu().numpy())


def linear_to_srgb16(linear: np.ndarray) -> np.ndarray:
    """[..., 4] float scene-linear premultiplied RGBA -> uint16 sRGB with straight alpha (16-bit PNG)."""
    rgba = torch.from_numpy(np.ascontiguousarray(linear, dtype=np.float32))
    alpha = rgba[..., 3:].clamp(0.0, 1.0)
    srgb = linear_to_srgb(unpremultiply(rgba[..., :3], alpha))
    return (torch.cat([srgb, alpha], dim=-1) * 65535.0).round().to(torch.int32).numpy().astype(np.uint16)

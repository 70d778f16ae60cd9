"""The eye and mouth mask of the RGB consistency loss (paper section 4.3).

Convex hulls of landmarks 36-41 (one eye), 42-47 (the other) and 48-60 (the
mouth) are filled, dilated with a 31x31 kernel and blurred with a 51x51
Gaussian (sigma 5).  Those sizes are the reference code's at 512 px; at
another loss resolution every kernel scales by ``resolution / 512`` (kept odd),
so the mask covers the same part of the face at any size.

1 inside the eyes and mouth, falling smoothly to 0 outside.  The consistency
loss compares a render with its expression-perturbed twin *outside* it.
"""

from __future__ import annotations

import cv2
import numpy as np

from .config import MaskConfig

REGIONS = (slice(36, 42), slice(42, 48), slice(48, 61))


def _odd(size: float) -> int:
    return max(1, int(round(size)) // 2 * 2 + 1)


def eye_mouth_mask(landmarks: np.ndarray, resolution: int, config: MaskConfig = MaskConfig()) -> np.ndarray:
    """``[resolution, resolution]`` float32 mask from 68 landmarks in crop pixels at ``resolution``."""
    scale = resolution / config.reference_resolution
    canvas = np.zeros((resolution, resolution), dtype=np.uint8)
    # Fill at 4x sub-pixel precision so tiny test resolutions still get their hulls.
    shift = 2
    for region in REGIONS:
        points = np.asarray(landmarks[region], dtype=np.float64)
        hull = cv2.convexHull(np.round(points * (1 << shift)).astype(np.int32))
        cv2.fillConvexPoly(canvas, hull, 255, lineType=cv2.LINE_AA, shift=shift)
    dilation = _odd(config.dilation * scale)
    if dilation > 1:
        canvas = cv2.dilate(canvas, np.ones((dilation, dilation), np.uint8))
    mask = canvas.astype(np.float32) / 255.0
    blur = _odd(config.blur * scale)
    if blur > 1:
        mask = cv2.GaussianBlur(mask, (blur, blur), config.sigma * scale)
    return np.clip(mask, 0.0, 1.0)


def batch_masks(landmarks: np.ndarray, crop_resolution: int, resolution: int,
                config: MaskConfig = MaskConfig()) -> np.ndarray:
    """``[B, 1, R, R]`` masks for landmarks given in crop pixels at ``crop_resolution``."""
    scale = resolution / crop_resolution
    # Pixel centres: x_new = (x + 0.5) * scale - 0.5.
    return np.stack([eye_mouth_mask((lm + 0.5) * scale - 0.5, resolution, config) for lm in landmarks])[:, None]

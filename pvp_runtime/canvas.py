"""Placing the square avatar crop on an output canvas of any size (Blender's render resolution).

The crop is scaled uniformly to fit the canvas ("contain": the whole head is
always visible), centred, and the rest of the canvas is transparent.  At the
crop's own size this is the identity, so a 256 x 256 render of a 256 subject
holds exactly the runtime's pixels.  Resampling works on premultiplied linear
colour (correct for filtering) with antialiasing when shrinking.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MAX_CANVAS_SIDE = 16384


def fit_rect(size: int, width: int, height: int) -> tuple[int, int, int]:
    """(side, left, top) of the scaled square inside a ``width`` x ``height`` canvas."""
    side = max(1, min(width, height))
    return side, (width - side) // 2, (height - side) // 2


def place_on_canvas(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """``[F, S, S, 4]`` linear premultiplied frames -> ``[F, height, width, 4]``, top row first."""
    if not (1 <= width <= MAX_CANVAS_SIDE and 1 <= height <= MAX_CANVAS_SIDE):
        raise ValueError(f"canvas {width} x {height} is outside 1..{MAX_CANVAS_SIDE}")
    count, size = frames.shape[0], frames.shape[1]
    if (width, height) == (size, size):
        return frames
    side, left, top = fit_rect(size, width, height)
    scaled = frames
    if side != size:
        tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        tensor = F.interpolate(tensor, size=(side, side), mode="bilinear", align_corners=False,
                               antialias=side < size)
        scaled = tensor.permute(0, 2, 3, 1).clamp(min=0.0).numpy()
    canvas = np.zeros((count, height, width, 4), dtype=np.float32)
    canvas[:, top:top + side, left:left + side] = scaled
    return canvas

"""Placing the square avatar crop on an output canvas of any size (Blender's render resolution).

Two ways.  ``place_on_canvas`` (no placement given; the rig's "Lock to frame centre"): the crop is scaled uniformly to fit the canvas ("contain": the whole head is
always visible), centred, and the rest of the canvas is transparent.  At the
crop's own size this is the identity, so a 256 x 256 render of a 256 subject
holds exactly the runtime's pixels.  Resampling works on premultiplied linear
colour (correct for filtering) with antialiasing when shrinking.  ``warp_on_canvas``: each frame
by its own affine (crop pixels -> canvas pixels; a similarity, or its image through non-square
pixels), as the Blender engine computes it from the camera (``pvp_blender/placement_math.py``)
and ``pvp render`` from its ``place_*`` columns.
"""

from __future__ import annotations

import math

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


# --------------------------------------------------------------------------- placement in a shot

def similarity(x: float, y: float, scale: float, angle: float, anchor: tuple[float, float]) -> np.ndarray:
    """The 2x3 affine (crop px -> canvas px, y down) that puts crop point ``anchor`` at canvas
    ``(x, y)``, scales by ``scale`` and turns by ``angle`` radians counter-clockwise as seen."""
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    linear = np.array([[cos, sin], [-sin, cos]])  # counter-clockwise on screen is clockwise in y-down maths
    return np.concatenate([linear, (np.array([x, y]) - linear @ np.asarray(anchor, dtype=np.float64))[:, None]], 1)


def warp_on_canvas(frames: np.ndarray, affines: np.ndarray, width: int, height: int) -> np.ndarray:
    """``[F, S, S, 4]`` linear premultiplied frames placed by ``[F, 2, 3]`` affines (crop pixel
    coordinates -> canvas pixel coordinates, both with (0, 0) at the top-left corner of the first
    pixel, y down) on a ``width`` x ``height`` canvas, transparent outside the crop.

    Bilinear sampling of premultiplied colour (the crop's border pixels repeat up to its edge), times
    the share of each output pixel the crop covers, so its edge is antialiased over one output
    pixel and exactly where the affine puts it (a whole-pixel placement has a hard edge, as
    ``place_on_canvas``); a frame shrunk by more than 2x is first box-filtered (``antialias``) to
    about its placed size so fine detail does not alias.  An affine whose 2x2 part is singular
    (the head behind the camera) gives a transparent frame.
    """
    if not (1 <= width <= MAX_CANVAS_SIDE and 1 <= height <= MAX_CANVAS_SIDE):
        raise ValueError(f"canvas {width} x {height} is outside 1..{MAX_CANVAS_SIDE}")
    affines = np.asarray(affines, dtype=np.float64)
    if affines.shape != (len(frames), 2, 3) or not np.isfinite(affines).all():
        raise ValueError(f"placement must be {len(frames)} finite 2x3 affines, got shape {list(affines.shape)}")
    canvas = np.zeros((len(frames), height, width, 4), dtype=np.float32)
    columns, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    for index, (frame, affine) in enumerate(zip(frames, affines)):
        linear = affine[:, :2]
        determinant = np.linalg.det(linear)
        if abs(determinant) < 1e-12:
            continue
        size = frame.shape[0]
        source = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None]
        shrink = math.sqrt(abs(determinant))  # canvas pixels per crop pixel, on average
        if shrink < 0.5:
            side = max(1, math.ceil(size * shrink))
            source = F.interpolate(source, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        inverse = np.linalg.inv(linear)
        x = inverse[0, 0] * (columns - affine[0, 2]) + inverse[0, 1] * (rows - affine[1, 2])
        y = inverse[1, 0] * (columns - affine[0, 2]) + inverse[1, 1] * (rows - affine[1, 2])
        # grid_sample's [-1, 1] spans the crop's outer edges (align_corners=False), whatever its size.
        grid = torch.from_numpy(np.stack([2 * x / size - 1, 2 * y / size - 1], axis=-1)[None]).float()
        sampled = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
        # Coverage along each crop axis: distance inside the crop's edge in output pixels, plus a half.
        stretch = np.linalg.norm(linear, axis=0)  # output pixels per crop pixel along crop x and y
        coverage = np.ones_like(x)
        for coordinate, factor in ((x, stretch[0]), (y, stretch[1])):
            coverage *= np.clip((size / 2 - np.abs(coordinate - size / 2)) * factor + 0.5, 0.0, 1.0)
        placed = sampled[0].permute(1, 2, 0).clamp(min=0.0).numpy() * coverage[..., None].astype(np.float32)
        canvas[index] = placed
    return canvas


def column_affines(columns: dict, count: int, width: int, height: int, resolution: int,
                   head_centre: tuple[float, float]) -> np.ndarray:
    """``[count, 2, 3]`` affines from ``pvp render``'s ``place_*`` columns (``contract/placement_columns.py``).

    A column left out takes the centred framing's value: the head centre where the centred crop
    puts it, the scale that fits the crop to the canvas, no turn.
    """
    side, left, top = fit_rect(resolution, width, height)
    defaults = {"place_x": left + head_centre[0] * side, "place_y": top + head_centre[1] * side,
                "place_scale": side / resolution, "place_angle": 0.0}
    values = {name: np.broadcast_to(np.asarray(columns.get(name, default), dtype=np.float64), (count,))
              for name, default in defaults.items()}
    anchor = (head_centre[0] * resolution, head_centre[1] * resolution)
    return np.stack([similarity(values["place_x"][i], values["place_y"][i], values["place_scale"][i],
                                values["place_angle"][i], anchor) for i in range(count)])


def to_srgb8(frames: np.ndarray) -> np.ndarray:
    """Canvas frames (linear premultiplied) -> uint8 sRGB with straight alpha, as PNG files want."""
    from .imaging import linear_to_srgb, srgb_to_uint8, unpremultiply
    rgba = torch.from_numpy(np.ascontiguousarray(frames))
    alpha = rgba[..., 3:]
    srgb = linear_to_srgb(unpremultiply(rgba[..., :3], alpha))
    return srgb_to_uint8(torch.cat([srgb, alpha.clamp(0.0, 1.0)], dim=-1)).numpy()

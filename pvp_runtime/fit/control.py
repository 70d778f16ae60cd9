"""The control sheet: does every channel an animator keys visibly drive the avatar?

Full-frame PSNR rewards a blurry average head and cannot tell a fit that ignores
the jaw from one that follows it.  So every fit also renders, for each channel
that actually moved in the training clip, a *sweep*: that channel from the 2nd
to the 98th percentile of its training values, every other channel held at its
training median.  One sweep is one row of ``control_sheet.png``; a channel the
fit ignores shows a row of identical faces.

Swept: head yaw and pitch, ``jaw_x`` (the mouth opening), every expression
coefficient with real spread in the clip, and the eye channels when the clip
has gaze.  The sweeps are data (:class:`Sweep`), so a benchmark with ground
truth can render the same rows from its own renderer and score them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..contract.channels import ChannelLayout

PERCENTILES = (2.0, 98.0)
SWEEP_STEPS = 7
# A channel whose 2nd-98th percentile spread is below this (radians or FLAME PCA units) did not
# move in the clip: there is nothing the fit could have learnt about it.
MIN_SPREAD = 1e-3
POSE_CHANNELS = ("head_yaw", "head_pitch", "jaw_x")
EYE_CHANNELS_SWEPT = ("eye_l_x", "eye_l_y")  # both eyes move together; one row per axis
LABEL_WIDTH = 88
MAX_TILE = 96


@dataclass(frozen=True)
class Sweep:
    channel: str
    values: np.ndarray   # [S] the swept channel's values
    frames: np.ndarray   # [S, C] full channel records: the median frame with this channel set


def channel_spread(train_channels: np.ndarray, column: int) -> tuple[float, float]:
    low, high = np.percentile(np.asarray(train_channels, np.float64)[:, column], PERCENTILES)
    return float(low), float(high)


def moved(train_channels: np.ndarray, columns) -> bool:
    """Did any of these channels really move in the training clip (2nd-98th percentile spread)?"""
    low, high = np.percentile(np.asarray(train_channels, np.float64)[:, columns], PERCENTILES, axis=0)
    return bool(np.any(np.asarray(high - low) > MIN_SPREAD))


def swept_channels(train_channels: np.ndarray, layout: ChannelLayout) -> list[str]:
    """The channels with real spread in the training clip, in rig order."""
    names = list(POSE_CHANNELS) + [n for n in layout.names[layout.slice("expression")]]
    names += list(EYE_CHANNELS_SWEPT)
    moving = []
    for name in names:
        if moved(train_channels, layout.index(name)):
            moving.append(name)
    return moving


def _with_gaze(frames: np.ndarray, layout: ChannelLayout, name: str) -> None:
    """Sweeping one eye sweeps both (the rig's eyes look together; a capture's gaze does)."""
    if name.startswith("eye_l_"):
        partner = layout.index("eye_r_" + name[len("eye_l_"):])
        frames[:, partner] = frames[:, layout.index(name)]


def sweeps(train_channels: np.ndarray, layout: ChannelLayout, steps: int = SWEEP_STEPS,
           names: list[str] | None = None) -> list[Sweep]:
    train_channels = np.asarray(train_channels, np.float32)
    median = np.median(train_channels, axis=0).astype(np.float32)
    result = []
    for name in names if names is not None else swept_channels(train_channels, layout):
        column = layout.index(name)
        low, high = channel_spread(train_channels, column)
        values = np.linspace(low, high, steps, dtype=np.float32)
        frames = np.repeat(median[None], steps, axis=0)
        frames[:, column] = values
        _with_gaze(frames, layout, name)
        result.append(Sweep(name, values, frames))
    return result


def neutral_frame(train_channels: np.ndarray) -> np.ndarray:
    """``[C]`` every channel at its training median: the frame each sweep departs from."""
    return np.median(np.asarray(train_channels, np.float32), axis=0).astype(np.float32)


def _label(text: str, values: np.ndarray, height: int) -> np.ndarray:
    tile = np.full((height, LABEL_WIDTH, 3), 24, np.uint8)
    lines = [text, f"{values[0]:+.2f}..", f"{values[-1]:+.2f}"]
    scale = 0.36
    for i, line in enumerate(lines):
        y = int(height / 2 + (i - 1) * 13 + 4)
        cv2.putText(tile, line, (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (230, 230, 230), 1, cv2.LINE_AA)
    return tile


def control_sheet(all_sweeps: list[Sweep], renders: list[np.ndarray]) -> np.ndarray:
    """``[rows * T, label + S * T, 3]`` uint8: one labelled row of renders per sweep.

    ``renders[i]`` is ``[S, H, W, 3]`` uint8 for ``all_sweeps[i]``; tiles are shrunk to at most
    96 px so a 50-expression subject still gives a sheet one can open.
    """
    if not all_sweeps:
        raise ValueError("no channel moved in the training clip: nothing to sweep")
    rows = []
    for sweep, images in zip(all_sweeps, renders):
        size = min(images.shape[1], MAX_TILE)
        tiles = [cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) if image.shape[0] != size else image
                 for image in images]
        rows.append(np.concatenate([_label(sweep.channel, sweep.values, size)] + tiles, axis=1))
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows]
    return np.concatenate(rows, axis=0)

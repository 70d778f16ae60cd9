"""Live Link Face captures (Epic's iPhone app): the CSV as the app writes it, and rig channels from it.

The layout (the same header in several independent public importers and Unreal's
``EARFaceBlendShape`` names; see the README, "Face capture"):

    Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,...,TongueOut,HeadYaw,HeadPitch,HeadRoll,
    LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll
    14:03:52:28.207,61,0.0123,...

* ``Timecode`` is ``HH:MM:SS:FF.fff``: ``FF`` counts frames at the take's timecode rate and
  ``.fff`` is the fraction of a frame.  The rate is not written anywhere: it is the smallest
  standard rate above the largest ``FF`` of a take that crosses a second (``FF`` runs
  ``0..rate-1``), and the clip's rate is the standard rate nearest its median row spacing.
* ``BlendShapeCount`` is 61 (52 blendshapes + 9 rotations), informational.
* The 52 blendshapes are ARKit's weights in 0..1 (names PascalCase; matched without case).
* Head and eye rotations: nothing public documents their unit or axes.  We read radians (values
  past +-pi are refused as "looks like degrees") in ARKit's face-anchor axes, which are FLAME's
  camera axes (+x the face's left, +y up, +z towards the camera): yaw about +y (> 0 towards the
  subject's left), pitch about +x (> 0 down), roll about +z (> 0 counter-clockwise as seen), i.e.
  the rig's ``head_*`` as they are.  :data:`ROTATION_SIGNS` is the one place to flip an axis.

Rows are resampled onto a uniform grid at the clip's rate (linear, in time from the first row),
so a dropped frame in the take does not shift everything after it.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract.arkit import ARKIT_NAMES, ArkitMap, canonical_arkit_name
from ..contract.channels import ChannelLayout, head_rotation_matrix, matrix_to_axis_angle, validate_frames
from ..contract.errors import ChannelError

HEADER_START = ("timecode", "blendshapecount")
ROTATION_COLUMNS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                    "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
#: Sign applied to each yaw, pitch, roll (head and eyes) to get the rig's convention.
ROTATION_SIGNS = (1.0, 1.0, 1.0)
STANDARD_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 120.0)
WEIGHT_SLACK = 1e-3  # ARKit weights are 0..1; a little float noise is fine
_TIMECODE = re.compile(r"(\d{1,2}):(\d{2}):(\d{2}):(\d{1,3})(?:\.(\d+))?")


@dataclass
class LiveLinkCapture:
    arkit: np.ndarray      # [F, 52] in contract.arkit.ARKIT_NAMES order, on the uniform grid
    rotations: np.ndarray  # [F, 9] radians: head yaw/pitch/roll, left eye, right eye (ROTATION_COLUMNS)
    fps: float             # the clip's rate (frames are 1/fps apart)
    timecode_rate: float
    source: str
    row_times: np.ndarray  # [R] seconds since the first row, as recorded
    row_arkit: np.ndarray  # [R, 52] the weights as recorded (one row per captured frame)
    row_rotations: np.ndarray  # [R, 9] the rotations as recorded

    def at_rate(self, fps: float) -> "LiveLinkCapture":
        """The same take resampled onto a uniform grid at ``fps`` (e.g. a Blender scene's rate)."""
        grid = np.arange(int(math.floor(self.row_times[-1] * fps + 1e-6)) + 1) / fps
        return LiveLinkCapture(_resample(self.row_times, self.row_arkit, grid),
                               _resample(self.row_times, self.row_rotations, grid), fps, self.timecode_rate,
                               self.source, self.row_times, self.row_arkit, self.row_rotations)


def is_live_link_csv(path: str | os.PathLike) -> bool:
    """Does the file start like a Live Link Face CSV?"""
    path = Path(path)
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return tuple(part.strip().lower() for part in first.split(",")[:2]) == HEADER_START


def read_live_link_csv(path: str | os.PathLike) -> LiveLinkCapture:
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ChannelError(f"{path}: not a readable Live Link Face CSV ({exc})") from None
    if not rows or tuple(name.strip().lower() for name in rows[0][:2]) != HEADER_START:
        raise ChannelError(f"{path}: not a Live Link Face CSV (the header must start with Timecode,BlendShapeCount)")
    header = [name.strip() for name in rows[0]]
    weights, rotations = _columns(header, path)
    if len(rows) < 2:
        raise ChannelError(f"{path}: holds no frames")
    times, rate = _times([row[0] for row in rows[1:]], path)
    values = np.empty((len(rows) - 1, len(header) - 2))
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ChannelError(f"{path}: line {line} has {len(row)} values, the header has {len(header)}")
        for column, text in enumerate(row[2:]):
            try:
                values[line - 2, column] = float(text)
            except ValueError:
                raise ChannelError(f"{path}: line {line}, column '{header[column + 2]}': {text!r} is not a number") \
                    from None
    _check_values(values, header, weights, rotations, path)
    arkit = np.zeros((len(values), len(ARKIT_NAMES)))
    for name, column in weights.items():
        arkit[:, ARKIT_NAMES.index(name)] = values[:, column]
    turns = values[:, [rotations[name] for name in ROTATION_COLUMNS]] * np.tile(ROTATION_SIGNS, 3)
    recorded = LiveLinkCapture(arkit, turns, rate, rate, str(path), times, arkit, turns)
    return recorded.at_rate(_clip_rate(times, rate))


def _columns(header: list[str], path: Path) -> tuple[dict[str, int], dict[str, int]]:
    weights, rotations = {}, {}
    rotation_names = {name.lower(): name for name in ROTATION_COLUMNS}
    for index, name in enumerate(header[2:]):
        key = name.lower()
        if key in rotation_names:
            target, label = rotations, rotation_names[key]
        else:
            try:
                target, label = weights, canonical_arkit_name(name)
            except ChannelError:
                raise ChannelError(f"{path}: column '{name}' is neither an ARKit blendshape nor a head/eye "
                                   "rotation") from None
        if label in target:
            raise ChannelError(f"{path}: column '{name}' appears twice")
        target[label] = index
    missing = [name for name in ARKIT_NAMES if name not in weights] + [n for n in ROTATION_COLUMNS if n not in rotations]
    if missing:
        raise ChannelError(f"{path}: Live Link Face CSV lacks {len(missing)} column(s): {', '.join(missing[:4])}"
                           + (" ..." if len(missing) > 4 else ""))
    return weights, rotations


def _times(codes: list[str], path: Path) -> tuple[np.ndarray, float]:
    """Seconds since the first row, and the timecode rate."""
    parts = []
    for line, code in enumerate(codes, start=2):
        match = _TIMECODE.fullmatch(code.strip())
        if not match:
            raise ChannelError(f"{path}: line {line}: timecode {code!r} is not HH:MM:SS:FF.fff")
        hours, minutes, seconds, frame = (int(match.group(i)) for i in range(1, 5))
        fraction = int(match.group(5)) / 10 ** len(match.group(5)) if match.group(5) else 0.0
        if minutes > 59 or seconds > 59:
            raise ChannelError(f"{path}: line {line}: timecode {code!r} is not HH:MM:SS:FF.fff")
        parts.append((hours * 3600 + minutes * 60 + seconds, frame + fraction, line))
    whole = np.array([p[0] for p in parts], dtype=np.float64)
    frames = np.array([p[1] for p in parts], dtype=np.float64)
    if len(parts) > 1 and whole[-1] == whole[0]:
        raise ChannelError(f"{path}: the take spans less than a second of timecode, so its frame rate cannot be "
                           "derived from it")
    top = int(frames.max())
    rate = next((r for r in STANDARD_RATES if r > top), None)
    if rate is None:
        raise ChannelError(f"{path}: timecode frame number {top} is past every standard rate")
    times = whole + frames / rate
    steps = np.diff(times)
    if (steps <= 0).any():
        line = parts[int(np.flatnonzero(steps <= 0)[0]) + 1][2]
        raise ChannelError(f"{path}: line {line}: timecode does not advance (duplicate or earlier than the row before)")
    return times - times[0], rate


def _clip_rate(times: np.ndarray, rate: float) -> float:
    if len(times) < 2:
        return rate
    measured = 1.0 / float(np.median(np.diff(times)))
    nearest = min(STANDARD_RATES, key=lambda r: abs(r - measured))
    return nearest if abs(nearest - measured) <= 0.05 * nearest else measured


def _check_values(values: np.ndarray, header: list[str], weights: dict, rotations: dict, path: Path) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ChannelError(f"{path}: line {row + 2}, column '{header[column + 2]}' is not a finite number")
    weight_columns = list(weights.values())
    outside = (values[:, weight_columns] < -WEIGHT_SLACK) | (values[:, weight_columns] > 1 + WEIGHT_SLACK)
    if outside.any():
        row, index = np.argwhere(outside)[0]
        column = weight_columns[index]
        raise ChannelError(f"{path}: line {row + 2}, column '{header[column + 2]}' = {values[row, column]:.4g} is "
                           "outside ARKit's 0..1")
    turn_columns = list(rotations.values())
    outside = np.abs(values[:, turn_columns]) > math.pi
    if outside.any():
        row, index = np.argwhere(outside)[0]
        column = turn_columns[index]
        raise ChannelError(f"{path}: line {row + 2}, column '{header[column + 2]}' = {values[row, column]:.4g} "
                           "is past +-pi: rotations are read as radians (this looks like degrees)")


def _resample(times: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    if len(times) == 1:
        return values.copy()
    return np.stack([np.interp(grid, times, values[:, c]) for c in range(values.shape[1])], axis=1)


# --------------------------------------------------------------------------- -> rig channels

def eye_axis_angles(yaw_pitch_roll: np.ndarray) -> np.ndarray:
    """``[F, 3]`` eye yaw, pitch, roll -> FLAME axis-angles, composed like the head's angles."""
    return np.stack([matrix_to_axis_angle(head_rotation_matrix(*row)) for row in yaw_pitch_roll]) \
        if len(yaw_pitch_roll) else np.zeros((0, 3))


def capture_frames(capture: LiveLinkCapture, arkit_map: ArkitMap, layout: ChannelLayout,
                   arkit_sliders: bool = False) -> np.ndarray:
    """Rig channel frames of a capture through a map.

    Head rotations go to ``head_*``.  Eye rotations the take recorded (not all zero) go to
    ``eye_*`` and replace the map's own eye targets, which would count the same gaze twice.
    With ``arkit_sliders`` the map's weights are left out (the caller keys the ARKit weights
    themselves, which the rig maps every frame) but not its bias; a map that moves the eyes then
    keeps them (the sliders drive them), and the recorded eye rotations are not used.
    """
    frames = layout.defaults(len(capture.arkit)).astype(np.float64)
    frames[:, layout.slice("head")] = capture.rotations[:, 0:3]
    weights, bias, _ = arkit_map.on_layout(layout)
    eyes = layout.slice("eyes")
    map_moves_eyes = bool(weights[eyes].any() or bias[eyes].any())
    if np.any(capture.rotations[:, 3:9] != 0) and not (arkit_sliders and map_moves_eyes):
        frames[:, eyes.start:eyes.start + 3] = eye_axis_angles(capture.rotations[:, 3:6])
        frames[:, eyes.start + 3:eyes.stop] = eye_axis_angles(capture.rotations[:, 6:9])
        weights[eyes] = 0.0
        bias[eyes] = 0.0
    if not arkit_sliders:
        frames += capture.arkit @ weights.T
    frames += bias
    return validate_frames(frames, layout, capture.source)

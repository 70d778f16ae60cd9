"""Live Link Face takes and ARKit maps for tests, written exactly as the app and our tools write them."""

from pathlib import Path

import numpy as np

from pvp_runtime.contract.arkit import ARKIT_NAMES, ArkitMap
from pvp_runtime.formats.live_link import ROTATION_COLUMNS


def pascal(name: str) -> str:
    return name[0].upper() + name[1:]


LIVE_LINK_HEADER = ["Timecode", "BlendShapeCount", *map(pascal, ARKIT_NAMES), *ROTATION_COLUMNS]


def timecode(frame: int, rate: int = 60, start=(14, 3, 52, 28), fraction: str = "") -> str:
    """The app's ``HH:MM:SS:FF.fff`` for ``frame`` frames after ``start`` at ``rate``."""
    h, m, s, f = start
    total = ((h * 60 + m) * 60 + s) * rate + f + frame
    f, total = total % rate, total // rate
    s, total = total % 60, total // 60
    m, h = total % 60, total // 60
    return f"{h:02d}:{m:02d}:{s:02d}:{f:02d}" + (f".{fraction}" if fraction else ".000")


def write_live_link_csv(path: Path, weights: np.ndarray, rotations: np.ndarray | None = None,
                        frames=None, rate: int = 60) -> Path:
    """One row per entry of ``frames`` (timecode frame numbers; default 0..F-1) in the app's layout."""
    rotations = np.zeros((len(weights), 9)) if rotations is None else rotations
    frames = range(len(weights)) if frames is None else frames
    lines = [",".join(LIVE_LINK_HEADER)]
    for number, row, turn in zip(frames, weights, rotations):
        lines.append(",".join([timecode(number, rate), "61", *(f"{v:.8f}" for v in row), *(f"{v:.8f}" for v in turn)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def known_map(rng, expressions: int = 10, eyes: bool = False) -> ArkitMap:
    targets = [f"expr_{i:02d}" for i in range(expressions)] + ["jaw_x", "jaw_y", "jaw_z"]
    if eyes:
        targets += [f"eye_{s}_{a}" for s in "lr" for a in "xyz"]
    matrix = rng.normal(0, 0.6, (len(targets), len(ARKIT_NAMES)))
    matrix[expressions:] *= 0.1  # jaw and eyes in radians: small
    matrix[expressions, ARKIT_NAMES.index("jawOpen")] = 0.4
    bias = rng.normal(0, 0.05, len(targets))
    return ArkitMap(ARKIT_NAMES, tuple(targets), matrix, bias, source="test map")

"""Per-frame channel files: .npz, .json and .csv in the runtime's own layout.

Layouts (channel names as in :mod:`.channels`; any channel left out takes its
default, an unknown name is an error):

``.csv``   header row of channel names, then one row per frame.  An optional
           first column ``frame`` is ignored (it is there for people).
``.json``  ``{"fps": 30, "frames": [{"head_yaw": 0.1, "jaw_x": 0.2}, ...]}``
           (one record per frame) or ``{"fps": 30, "channels": {"head_yaw": [...], ...}}``
           (one list per channel).
``.npz``   one 1-D array per channel name, all the same length; an optional
           scalar ``fps``.

Optional ``place_*`` columns (placement in the shot, read by ``pvp render``) are set aside
in ``ChannelClip.placement``; see :mod:`.placement_columns`.

Every file we write names how its head angles compose (``channels.HEAD_ROTATION``):
a ``"head_rotation"`` key (``.json``), a scalar string array ``head_rotation``
(``.npz``), or a first line ``# head_rotation: Rz(roll) Ry(yaw) Rx(pitch)`` (``.csv``).
A file without the marker was written before it existed, when roll was the
innermost rotation (``channels.LEGACY_HEAD_ROTATION``): its frames that combine
roll with yaw or pitch are converted on read (with a warning), the rest are
read as they are.

These readers back ``pvp render``, ``pvp fit`` and the Blender import operator.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic_files import replacing
from .channels import (HEAD_ROTATION, LEGACY_HEAD_ROTATION, ChannelLayout, convert_head_rotation,
                       frames_from_columns, frames_from_records, head_rotation_convention)
from .errors import ChannelError
from .placement_columns import split_columns, split_records

log = logging.getLogger(__name__)
SUPPORTED_SUFFIXES = (".npz", ".json", ".csv")
MARKER = "head_rotation"  # the key / array / CSV comment naming how the head angles compose


@dataclass
class ChannelClip:
    frames: np.ndarray  # [num_frames, layout.size] float32, validated
    fps: float | None
    placement: dict = field(default_factory=dict)  # optional place_* columns (placement_columns.py), [F] each


def read_channel_file(path: str | os.PathLike, layout: ChannelLayout) -> ChannelClip:
    path = Path(path)
    if not path.is_file():
        raise ChannelError(f"{path}: channel file not found")
    suffix = path.suffix.lower()
    readers = {".npz": _read_npz, ".json": _read_json, ".csv": _read_csv}
    if suffix not in readers:
        raise ChannelError(f"{path}: unsupported channel file type {suffix!r} "
                           f"(expected one of {', '.join(SUPPORTED_SUFFIXES)})")
    clip, marker = readers[suffix](path, layout)
    if len(clip.frames) == 0:
        raise ChannelError(f"{path}: holds no frames")
    for name, values in clip.placement.items():
        if len(values) != len(clip.frames):
            raise ChannelError(f"{path}: column '{name}' has {len(values)} values for {len(clip.frames)} frames")
    convention = LEGACY_HEAD_ROTATION if marker is None else head_rotation_convention(marker, str(path))
    clip.frames, converted = convert_head_rotation(clip.frames, layout, convention)
    if converted:
        why = "no head_rotation marker (written before it existed)" if marker is None else f"head_rotation {convention}"
        log.warning("%s: %s: converted %d frame(s) that combine head roll with yaw or pitch to %s",
                    path, why, converted, HEAD_ROTATION)
    return clip


def _read_npz(path: Path, layout: ChannelLayout) -> tuple[ChannelClip, str | None]:
    try:
        # allow_pickle=False: an .npz may carry object arrays that unpickle code.
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ChannelError(f"{path}: not a readable .npz file ({exc})") from None
    fps = arrays.pop("fps", None)
    marker = arrays.pop(MARKER, None)
    if marker is not None:
        marker = str(marker.reshape(())) if marker.dtype.kind == "U" and marker.size == 1 else marker.tolist()
    arrays, placement = split_columns(arrays, str(path))
    return ChannelClip(frames_from_columns(arrays, layout, str(path)), _fps(fps, path), placement), marker


def _read_json(path: Path, layout: ChannelLayout) -> tuple[ChannelClip, str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChannelError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or ("frames" not in data and "channels" not in data):
        raise ChannelError(f"{path}: expected an object with a 'frames' list or a 'channels' mapping")
    if "frames" in data:
        if not isinstance(data["frames"], list):
            raise ChannelError(f"{path}: 'frames' must be a list of per-frame records")
        records, placement = split_records(data["frames"], str(path))
        frames = frames_from_records(records, layout, str(path))
    else:
        if not isinstance(data["channels"], dict):
            raise ChannelError(f"{path}: 'channels' must map channel names to lists")
        columns, placement = split_columns(data["channels"], str(path))
        frames = frames_from_columns(columns, layout, str(path))
    return ChannelClip(frames, _fps(data.get("fps"), path), placement), data.get(MARKER)


def _read_csv(path: Path, layout: ChannelLayout) -> tuple[ChannelClip, str | None]:
    marker = None
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            lines = handle.read().splitlines(keepends=True)
        # Leading "# key: value" lines are comments; "head_rotation" is the one that means something.
        comments = 0
        while comments < len(lines) and lines[comments].lstrip().startswith("#"):
            key, _, value = lines[comments].lstrip()[1:].partition(":")
            if key.strip() == MARKER:
                marker = value.strip()
            comments += 1
        rows = list(csv.reader(lines[comments:]))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ChannelError(f"{path}: not a readable CSV file ({exc})") from None
    rows = [row for row in rows if row]
    if not rows:
        raise ChannelError(f"{path}: empty CSV file")
    header = [name.strip() for name in rows[0]]
    skip = {0} if header and header[0].lower() == "frame" else set()
    columns = {name: [] for i, name in enumerate(header) if i not in skip}
    if len(columns) != len(header) - len(skip):
        raise ChannelError(f"{path}: duplicate column names in the header")
    for line, row in enumerate(rows[1:], start=2 + comments):
        if len(row) != len(header):
            raise ChannelError(f"{path}: line {line} has {len(row)} values, the header has {len(header)}")
        for i, (name, value) in enumerate(zip(header, row)):
            if i in skip:
                continue
            try:
                columns[name].append(float(value))
            except ValueError:
                raise ChannelError(f"{path}: line {line}, channel '{name}': {value!r} is not a number") from None
    columns, placement = split_columns(columns, str(path))
    return ChannelClip(frames_from_columns(columns, layout, str(path)), None, placement), marker


def _fps(value, path: Path) -> float | None:
    if value is None:
        return None
    try:
        fps = float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        raise ChannelError(f"{path}: 'fps' must be a number") from None
    if not 0 < fps < 1000:
        raise ChannelError(f"{path}: fps {fps} is out of range")
    return fps


def write_channel_file(path: str | os.PathLike, frames: np.ndarray, layout: ChannelLayout,
                       fps: float | None = None) -> None:
    """Write a clip in any supported layout, atomically (temp file + rename)."""
    path = Path(path)
    frames = np.asarray(frames, dtype=np.float32)
    suffix = path.suffix.lower()
    with replacing(path) as tmp:
        if suffix == ".npz":
            columns = {name: frames[:, i] for i, name in enumerate(layout.names)}
            if fps is not None:
                columns["fps"] = np.float32(fps)
            np.savez(tmp, **columns, **{MARKER: np.array(HEAD_ROTATION)})
        elif suffix == ".json":
            records = [{name: float(v) for name, v in zip(layout.names, row)} for row in frames]
            payload = {MARKER: HEAD_ROTATION, **({} if fps is None else {"fps": fps}), "frames": records}
            tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
        elif suffix == ".csv":
            with tmp.open("w", newline="", encoding="utf-8") as handle:
                handle.write(f"# {MARKER}: {HEAD_ROTATION}\n")
                writer = csv.writer(handle)
                writer.writerow(["frame", *layout.names])
                for i, row in enumerate(frames):
                    writer.writerow([i, *(f"{float(v):.7g}" for v in row)])
        else:
            raise ChannelError(f"{path}: unsupported channel file type {suffix!r}")

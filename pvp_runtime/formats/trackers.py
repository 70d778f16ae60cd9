"""Per-frame FLAME parameters from face trackers -> rig channel frames.

Supported outputs (none of these tools has one standard file, so we read what
their code writes or naturally saves):

DECA     ``.npz`` of the ``codedict`` stacked over frames (``np.savez(path,
         **util.dict_tensor2npy(codedict))``): ``pose`` [F,6] = global 3 + jaw 3
         axis-angle, ``exp`` [F,50], optional ``cam`` [F,3] (scale, tx, ty),
         ``shape``, ``tex``, ``light``, ``detail`` (ignored).
EMOCA    the ``--save_codes`` folder: one sub-folder per image holding
         ``pose.npy`` [6] (DECA layout), ``exp.npy`` [50], ``shape.npy``,
         ``tex.npy``, ``detail.npy``.  Video runs name folders
         ``{frame:05d}_{face:03d}``; we take one face per frame and refuse gaps
         (a frame with no face would shift every later frame).
SMIRK    ``.npz`` of the encoder outputs stacked over frames: ``pose_params``
         [F,3] global axis-angle, ``jaw_params`` [F,3], ``expression_params``
         [F,50], optional ``eyelid_params`` [F,2], ``cam``, ``shape_params``.
feats    the PVP authors' ``feats.json``: a list with one ``{"pose": [6],
         "expr": [50], "lmks": ...}`` record per frame (DECA layout).

Head yaw/pitch/roll come from the global axis-angle by the rig's documented
convention (:func:`head_angles_from_axis_angle`).  None of these trackers
estimates neck or eye pose; those channels stay at their defaults.  SMIRK's
eyelid parameters have no rig channel and are dropped (reported).
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract.channels import ChannelLayout, head_angles_from_axis_angle, validate_frames
from ..contract.errors import ChannelError

log = logging.getLogger(__name__)


@dataclass
class FlameParams:
    """Per-frame FLAME pose and expression as a tracker estimated them."""

    global_pose: np.ndarray  # [F, 3] axis-angle
    jaw_pose: np.ndarray     # [F, 3] axis-angle
    expression: np.ndarray   # [F, E]
    source: str
    dropped: tuple[str, ...] = ()  # parameters the rig has no channel for

    @property
    def num_frames(self) -> int:
        return len(self.global_pose)

    @property
    def num_expressions(self) -> int:
        return self.expression.shape[1]


def params_to_frames(params: FlameParams, layout: ChannelLayout) -> np.ndarray:
    """FLAME parameters -> validated ``[F, layout.size]`` channel frames.

    A tracker with more expression components than the subject keeps the
    leading ones (FLAME's PCA components are ordered by variance); one with
    fewer leaves the rest at 0.  Either way it is logged.
    """
    frames = layout.defaults(params.num_frames).astype(np.float64)
    frames[:, layout.slice("head")] = [head_angles_from_axis_angle(pose) for pose in params.global_pose]
    frames[:, layout.slice("jaw")] = params.jaw_pose
    count = min(params.num_expressions, layout.num_expressions)
    if params.num_expressions != layout.num_expressions:
        log.warning("%s: %d expression components, the subject uses %d; %s", params.source,
                    params.num_expressions, layout.num_expressions,
                    "keeping the leading ones" if params.num_expressions > count else "the rest stay at 0")
    expression = layout.slice("expression")
    frames[:, expression.start:expression.start + count] = params.expression[:, :count]
    if params.dropped:
        log.info("%s: no rig channels for %s; dropped", params.source, ", ".join(params.dropped))
    return validate_frames(frames.astype(np.float32), layout, params.source)


# --------------------------------------------------------------------------- readers

def _npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ChannelError(f"{path}: not a readable .npz of plain arrays ({exc})") from None


def _per_frame(arrays: dict, key: str, width: int | None, path: Path, what: str) -> np.ndarray:
    """``arrays[key]`` as float64 ``[F, width]``; a single frame may drop the frame axis."""
    if key not in arrays:
        raise ChannelError(f"{path}: {what} has no '{key}' array (found {', '.join(sorted(arrays)) or 'none'})")
    value = np.asarray(arrays[key])
    if not np.issubdtype(value.dtype, np.number):
        raise ChannelError(f"{path}: '{key}' holds {value.dtype}, expected numbers")
    if value.ndim == 1:
        value = value[None]
    if value.ndim != 2 or (width is not None and value.shape[1] != width):
        expected = f"[frames, {width}]" if width is not None else "[frames, components]"
        raise ChannelError(f"{path}: '{key}' has shape {list(np.shape(arrays[key]))}, expected {expected}")
    if not np.isfinite(value).all():
        frame = int(np.argwhere(~np.isfinite(value))[0][0])
        raise ChannelError(f"{path}: frame {frame}: '{key}' is not finite")
    return value.astype(np.float64)


def _same_length(path: Path, **columns: np.ndarray) -> None:
    lengths = {name: len(value) for name, value in columns.items()}
    if len(set(lengths.values())) != 1:
        listed = ", ".join(f"'{name}' {count}" for name, count in lengths.items())
        raise ChannelError(f"{path}: frame counts differ ({listed})")
    if not next(iter(lengths.values())):
        raise ChannelError(f"{path}: holds no frames")


def read_deca_codes(path: str | os.PathLike) -> FlameParams:
    path = Path(path)
    arrays = _npz(path)
    pose = _per_frame(arrays, "pose", 6, path, "DECA codes")
    expression = _per_frame(arrays, "exp", None, path, "DECA codes")
    _same_length(path, pose=pose, exp=expression)
    if "cam" in arrays:
        _same_length(path, pose=pose, cam=_per_frame(arrays, "cam", 3, path, "DECA codes"))
    return FlameParams(pose[:, :3], pose[:, 3:], expression, str(path))


def read_smirk_codes(path: str | os.PathLike) -> FlameParams:
    path = Path(path)
    arrays = _npz(path)
    columns = {"pose_params": _per_frame(arrays, "pose_params", 3, path, "SMIRK outputs"),
               "jaw_params": _per_frame(arrays, "jaw_params", 3, path, "SMIRK outputs"),
               "expression_params": _per_frame(arrays, "expression_params", None, path, "SMIRK outputs")}
    dropped = ()
    if "eyelid_params" in arrays:
        columns["eyelid_params"] = _per_frame(arrays, "eyelid_params", 2, path, "SMIRK outputs")
        dropped = ("eyelid_params",)
    _same_length(path, **columns)
    return FlameParams(columns["pose_params"], columns["jaw_params"], columns["expression_params"],
                       str(path), dropped)


def read_feats_json(path: str | os.PathLike) -> FlameParams:
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChannelError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(records, list) or not records:
        raise ChannelError(f"{path}: expected a list of per-frame records like "
                           f'{{"pose": [6 values], "expr": [50 values]}}')
    poses, expressions = [], []
    for frame, record in enumerate(records):
        if not isinstance(record, dict) or "pose" not in record or "expr" not in record:
            raise ChannelError(f"{path}: frame {frame}: expected a record with 'pose' and 'expr'")
        try:
            pose = np.asarray(record["pose"], dtype=np.float64).reshape(-1)
            expression = np.asarray(record["expr"], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ChannelError(f"{path}: frame {frame}: 'pose' and 'expr' must be lists of numbers") from None
        if pose.shape != (6,):
            raise ChannelError(f"{path}: frame {frame}: 'pose' has {pose.size} values, expected 6 "
                               f"(global 3 + jaw 3)")
        if expressions and expression.shape != expressions[0].shape:
            raise ChannelError(f"{path}: frame {frame}: 'expr' has {expression.size} values, frame 0 has "
                               f"{expressions[0].size}")
        poses.append(pose)
        expressions.append(expression)
    pose = np.stack(poses)
    expression = np.stack(expressions)
    if not (np.isfinite(pose).all() and np.isfinite(expression).all()):
        frame = int(np.argwhere(~(np.isfinite(pose).all(1) & np.isfinite(expression).all(1)))[0][0])
        raise ChannelError(f"{path}: frame {frame}: values are not finite")
    return FlameParams(pose[:, :3], pose[:, 3:], expression, str(path))


VIDEO_FRAME_NAME = re.compile(r"^(\d+)_(\d+)$")  # EMOCA video runs: {frame:05d}_{face:03d}


def read_emoca_codes(folder: str | os.PathLike, face_index: int = 0) -> FlameParams:
    folder = Path(folder)
    if not folder.is_dir():
        raise ChannelError(f"{folder}: expected an EMOCA --save_codes output folder")
    samples = sorted(p for p in folder.iterdir() if p.is_dir() and (p / "exp.npy").exists())
    if not samples:
        raise ChannelError(f"{folder}: no per-frame folders with exp.npy and pose.npy (EMOCA --save_codes output)")
    samples = _one_face_per_frame(folder, samples, face_index)
    poses, expressions = [], []
    for frame, sample in enumerate(samples):
        arrays = {}
        for name in ("pose", "exp"):
            file = sample / f"{name}.npy"
            if not file.exists():
                raise ChannelError(f"{file}: missing (frame {frame}); EMOCA writes pose.npy and exp.npy per frame")
            try:
                arrays[name] = np.load(file, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise ChannelError(f"{file}: not a readable .npy array ({exc})") from None
        pose = _per_frame(arrays, "pose", 6, sample, "EMOCA codes")
        expression = _per_frame(arrays, "exp", None, sample, "EMOCA codes")
        if len(pose) != 1 or len(expression) != 1:
            raise ChannelError(f"{sample}: expected one frame of codes, found {len(pose)}")
        if expressions and expression.shape[1] != len(expressions[0]):
            raise ChannelError(f"{sample}: exp.npy has {expression.shape[1]} values, the first frame has "
                               f"{len(expressions[0])}")
        poses.append(pose[0])
        expressions.append(expression[0])
    pose = np.stack(poses)
    return FlameParams(pose[:, :3], pose[:, 3:], np.stack(expressions), str(folder))


def _one_face_per_frame(folder: Path, samples: list[Path], face_index: int) -> list[Path]:
    """Video output: keep face ``face_index`` of each frame and insist the frames are consecutive."""
    parsed = [VIDEO_FRAME_NAME.match(p.name) for p in samples]
    if not all(parsed):
        return samples  # image folders: one face per image, in name order
    by_frame: dict[int, dict[int, Path]] = {}
    for match, sample in zip(parsed, samples):
        by_frame.setdefault(int(match.group(1)), {})[int(match.group(2))] = sample
    numbers = sorted(by_frame)
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise ChannelError(f"{folder}: no codes for frames {shown} (no face detected?); the clip would drift out "
                           f"of sync with the video")
    lacking = [n for n in numbers if face_index not in by_frame[n]]
    if lacking:
        raise ChannelError(f"{folder}: frame {lacking[0]} has no face {face_index}")
    if any(len(faces) > 1 for faces in by_frame.values()):
        log.warning("%s: some frames hold several faces; using face %d", folder, face_index)
    return [by_frame[n][face_index] for n in numbers]

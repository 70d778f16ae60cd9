"""The rig channels: the one definition both halves of PVP Avatar read.

A *frame* is a vector of named float channels in the order given by
:func:`channel_layout`.  The Blender rig writes them, the runtime renders them,
channel files store them, and the fitting pipeline learns from them.  This module
imports neither torch nor bpy (only numpy, which Blender bundles) so the
extension can ship it unchanged.

Units are radians for every rotation and FLAME PCA units (standard deviations of
the FLAME expression basis) for expression coefficients.

Coordinate convention (FLAME camera space, the space DECA estimates in):
    +x points to the subject's left (the viewer's right),
    +y points up,
    +z points out of the face towards the camera.

Head rotation is stored as yaw, pitch, roll with ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``
(:data:`HEAD_ROTATION`):
    yaw   > 0 turns the face towards the subject's left (image right),
    pitch > 0 tilts the face down,
    roll  > 0 tilts the head counter-clockwise as the viewer sees it.
Roll is the outermost rotation because the renderer applies it last, as a 2D
rotation of the aligned crop: for the orthographic camera looking down -z,
``Rz(roll)`` is exactly an image-plane rotation, so the crop shows
``Ry(yaw) @ Rx(pitch)`` and the projected eye line of the posed head is at
``roll``.  The inverse takes the branch with ``|pitch| <= 90 deg`` (the
channel limits): ``pitch = atan2(s R[2,1], s R[2,2])``, ``yaw = atan2(-R[2,0],
s hypot(R[2,1], R[2,2]))``, ``roll = atan2(s R[1,0], s R[0,0])`` with ``s`` the
sign of ``R[2,2]``.  At a full profile (yaw = +-90 deg) a nod is itself an
image-plane rotation; it is read as roll.  The authors' model code derives
``yaw = atan2(R[2,0], R[2,2])`` from the untransposed matrix; for a pure yaw
that is ``-yaw`` here.  We use one convention everywhere, so a subject fit here
and rendered here agree by construction.

Files written before this convention composed ``Ry(yaw) @ Rx(pitch) @ Rz(roll)``
(:data:`LEGACY_HEAD_ROTATION`, roll innermost).  The two agree whenever roll is 0
or yaw and pitch are both 0; :func:`convert_head_rotation` re-expresses such
angles in the current convention (channel files carry a marker, see
``channel_files.py``).

Neck, jaw and eye poses are FLAME axis-angle vectors in the parent joint's frame.
The aligned crop the generator draws sees the head, not the torso, so the pose
the mappers receive is that of the composed rotation ``R_global @ R_neck``
(:func:`effective_head_angles`).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import types
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from .errors import ChannelError

log = logging.getLogger(__name__)

DEFAULT_NUM_EXPRESSIONS = 50
DEG = math.pi / 180.0


@dataclass(frozen=True)
class ChannelSpec:
    """One rig channel.

    ``soft_min``/``soft_max`` are the slider range an animator sees;
    ``hard_min``/``hard_max`` are the limits outside which a value is rejected
    as an error (a typo, a unit mix-up), not merely unusual.
    """

    name: str
    group: str
    unit: str
    default: float
    soft_min: float
    soft_max: float
    hard_min: float
    hard_max: float
    description: str


def _rotation(name, group, description, soft, hard):
    return ChannelSpec(name, group, "rad", 0.0, -soft, soft, -hard, hard, description)


HEAD_CHANNELS = (
    _rotation("head_yaw", "head", "turn left/right; > 0 faces the subject's left", 90 * DEG, 180 * DEG),
    _rotation("head_pitch", "head", "nod; > 0 looks down", 45 * DEG, 90 * DEG),
    _rotation("head_roll", "head", "tilt; > 0 counter-clockwise as seen by the camera", 45 * DEG, 180 * DEG),
)
NECK_CHANNELS = tuple(
    _rotation(f"neck_{axis}", "neck", f"FLAME neck axis-angle, {axis} component", 30 * DEG, 90 * DEG)
    for axis in "xyz"
)
JAW_CHANNELS = (
    ChannelSpec("jaw_x", "jaw", "rad", 0.0, -5 * DEG, 35 * DEG, -45 * DEG, 90 * DEG,
                "FLAME jaw axis-angle x: > 0 opens the mouth"),
    _rotation("jaw_y", "jaw", "FLAME jaw axis-angle y: sideways", 10 * DEG, 45 * DEG),
    _rotation("jaw_z", "jaw", "FLAME jaw axis-angle z: twist", 10 * DEG, 45 * DEG),
)
EYE_CHANNELS = tuple(
    _rotation(f"eye_{side}_{axis}", "eyes", f"FLAME {side} eye axis-angle, {axis} component",
              30 * DEG, 90 * DEG)
    for side in ("l", "r")
    for axis in "xyz"
)
EXPRESSION_SOFT_LIMIT = 3.0
EXPRESSION_HARD_LIMIT = 12.0


MAX_EXPRESSIONS = 400  # a generous bound: FLAME's model files hold 100 expression components
_EXPRESSION_NAME = re.compile(r"expr_(\d{2,3})")


def expression_name(index: int, num_expressions: int = DEFAULT_NUM_EXPRESSIONS) -> str:
    width = max(2, len(str(num_expressions - 1)))
    return f"expr_{index:0{width}d}"


def expression_channels(num_expressions: int) -> tuple[ChannelSpec, ...]:
    return tuple(
        ChannelSpec(expression_name(i, num_expressions), "expression", "flame_pca", 0.0,
                    -EXPRESSION_SOFT_LIMIT, EXPRESSION_SOFT_LIMIT,
                    -EXPRESSION_HARD_LIMIT, EXPRESSION_HARD_LIMIT,
                    f"FLAME expression coefficient {i} (PCA component, no semantic name)")
        for i in range(num_expressions)
    )


#: Appearance edits (GANSpace / InterFaceGAN directions a bundle carries) are channels too, named
#: ``edit_<name>``, after every rig channel; a subject without edits has exactly the rig channels.
EDIT_PREFIX = "edit_"
EDIT_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")  # the <name> part: lower-case, safe in any file format
MAX_EDITS = 64


@dataclass(frozen=True)
class EditChannel:
    """One edit direction as a channel: its name (without ``edit_``) and the strength range the
    bundle declares sane, which is both its slider range and the limit past which it is refused."""

    name: str
    low: float = -3.0
    high: float = 3.0

    def __post_init__(self):
        if not isinstance(self.name, str) or not EDIT_NAME.fullmatch(self.name):
            raise ChannelError(f"edit name {self.name!r} must be 1-32 characters: a lower-case letter, then "
                               "lower-case letters, digits or '_'")
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                 for v in (self.low, self.high))
        if not ok or not self.low < 0 < self.high:
            raise ChannelError(f"edit '{self.name}': strength range [{self.low}, {self.high}] must be finite "
                               "and hold 0 strictly inside")

    @property
    def channel(self) -> str:
        return EDIT_PREFIX + self.name

    def spec(self) -> ChannelSpec:
        return ChannelSpec(self.channel, "edit", "strength", 0.0, float(self.low), float(self.high),
                           float(self.low), float(self.high), f"appearance edit '{self.name}' (0: no edit)")


@dataclass(frozen=True)
class _LayoutTables:
    specs: tuple[ChannelSpec, ...]
    names: tuple[str, ...]
    positions: Mapping[str, int]  # name -> column, read-only
    hard_min: np.ndarray     # [C] float32, read-only
    hard_max: np.ndarray


@functools.lru_cache(maxsize=None)
def _layout_tables(num_expressions: int, edits: tuple[EditChannel, ...] = ()) -> _LayoutTables:
    """The per-layout tables, built once per expression count and edit list.  The Blender engine reads
    the rig (``layout.index`` per bone channel, ``validate_frames``) for every frame and prefetched
    frame; rebuilding ~70 specs on each access cost milliseconds per frame."""
    specs = (HEAD_CHANNELS + NECK_CHANNELS + JAW_CHANNELS + expression_channels(num_expressions) + EYE_CHANNELS
             + tuple(edit.spec() for edit in edits))
    names = tuple(spec.name for spec in specs)
    lows = np.array([spec.hard_min for spec in specs], dtype=np.float32)
    highs = np.array([spec.hard_max for spec in specs], dtype=np.float32)
    lows.flags.writeable = highs.flags.writeable = False  # shared by every caller
    positions = types.MappingProxyType({name: i for i, name in enumerate(names)})
    return _LayoutTables(specs, names, positions, lows, highs)


@dataclass(frozen=True)
class ChannelLayout:
    """The ordered channel list of one subject: the expression count varies, and a subject's
    appearance edits (if any) follow the rig channels as ``edit_<name>``."""

    num_expressions: int = DEFAULT_NUM_EXPRESSIONS
    edits: tuple[EditChannel, ...] = ()

    def __post_init__(self):
        if not isinstance(self.num_expressions, int) or not 1 <= self.num_expressions <= MAX_EXPRESSIONS:
            raise ChannelError(f"expression count must be an integer in 1..{MAX_EXPRESSIONS}, "
                               f"got {self.num_expressions!r}")
        edits = tuple(self.edits)
        if not all(isinstance(edit, EditChannel) for edit in edits):
            raise ChannelError("edits must be EditChannel entries")
        names = [edit.name for edit in edits]
        if len(set(names)) != len(names):
            raise ChannelError(f"edit names must be unique, got {names}")
        if len(edits) > MAX_EDITS:
            raise ChannelError(f"a subject holds at most {MAX_EDITS} edits, got {len(edits)}")
        object.__setattr__(self, "edits", edits)

    @property
    def _tables(self) -> _LayoutTables:
        return _layout_tables(self.num_expressions, self.edits)

    @property
    def specs(self) -> tuple[ChannelSpec, ...]:
        return self._tables.specs

    @property
    def names(self) -> tuple[str, ...]:
        return self._tables.names

    @property
    def size(self) -> int:
        return self.rig_size + len(self.edits)

    @property
    def rig_size(self) -> int:
        """The rig channels alone (what a training clip and its channel statistics hold)."""
        return len(HEAD_CHANNELS) + len(NECK_CHANNELS) + len(JAW_CHANNELS) + self.num_expressions + len(EYE_CHANNELS)

    @property
    def edit_names(self) -> tuple[str, ...]:
        """The edit channels' names (``edit_<name>``), in column order."""
        return tuple(edit.channel for edit in self.edits)

    def without_edits(self) -> "ChannelLayout":
        return ChannelLayout(self.num_expressions) if self.edits else self

    def index(self, name: str) -> int:
        try:
            return self._tables.positions[name]
        except (KeyError, TypeError):
            raise ChannelError(self._unknown(name)) from None

    def column_of(self, name: str, source: str = "channels", frame: int | None = None) -> int | None:
        """The column a named channel fills; None for an expression coefficient past this subject's.

        Clips come from subjects and trackers with other expression counts (50, 100, 300 ...),
        and FLAME's components are ordered by variance, so ``expr_N`` means the same component
        everywhere: it is matched by number (``expr_007`` is ``expr_07``), and numbers past
        this subject's count are dropped by the caller.  Anything else unknown is a typo, or an
        edit this subject does not carry (an error: its look would silently be lost).
        """
        columns = self._tables.positions
        if name in columns:
            return columns[name]
        match = _EXPRESSION_NAME.fullmatch(name)
        if match:
            number = int(match.group(1))
            if number < self.num_expressions:
                return columns[expression_name(number, self.num_expressions)]
            if number < MAX_EXPRESSIONS:
                return None
        where = source if frame is None else f"{source}: frame {frame}"
        raise ChannelError(f"{where}: {self._unknown(name)}")

    def _unknown(self, name: str) -> str:
        if isinstance(name, str) and name.startswith(EDIT_PREFIX):
            carried = ", ".join(self.edit_names) if self.edits else "none"
            return f"unknown edit channel {name!r} (this subject's edits: {carried})"
        edits = ", edit_*" if self.edits else ""
        return (f"unknown channel {name!r} (expected one of head_*, neck_*, jaw_*, "
                f"expr_00..{self.names[9 + self.num_expressions - 1]}, eye_*{edits})")

    def slice(self, group: str) -> slice:
        names = [spec.group for spec in self.specs]
        if group == "edit" and group not in names:
            return slice(self.rig_size, self.rig_size)
        first = names.index(group)
        return slice(first, first + names.count(group))

    def defaults(self, num_frames: int = 1) -> np.ndarray:
        row = np.array([spec.default for spec in self.specs], dtype=np.float32)
        return np.tile(row, (num_frames, 1))

    def to_dict(self) -> dict:
        data = {"num_expressions": self.num_expressions, "names": list(self.names)}
        if self.edits:  # absent without edits: old bundles' manifests stay as they were
            data["edits"] = [edit.name for edit in self.edits]
        return data


def channel_layout(num_expressions: int = DEFAULT_NUM_EXPRESSIONS,
                   edits: Sequence[EditChannel] = ()) -> ChannelLayout:
    return ChannelLayout(num_expressions, tuple(edits))


# --------------------------------------------------------------------------- validation

def validate_frames(frames: np.ndarray, layout: ChannelLayout, source: str = "channels",
                    first_frame: int = 0) -> np.ndarray:
    """Check a ``[frames, channels]`` array; return it as float32.

    Errors name the source, the frame number and the channel, because an
    animator needs to find the bad key, not a stack trace.
    """
    array = np.asarray(frames)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ChannelError(f"{source}: expected a [frames, channels] array, got shape {tuple(array.shape)}")
    if array.shape[1] != layout.size:
        edits = f", {len(layout.edits)} edits" if layout.edits else ""
        raise ChannelError(f"{source}: expected {layout.size} channels per frame "
                           f"({layout.num_expressions} expressions{edits}), got {array.shape[1]}")
    if not np.issubdtype(array.dtype, np.number):
        raise ChannelError(f"{source}: channel values must be numbers, got dtype {array.dtype}")
    array = array.astype(np.float32, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        frame, channel = np.argwhere(~finite)[0]
        raise ChannelError(f"{source}: frame {first_frame + int(frame)}, channel "
                           f"'{layout.names[channel]}' is {array[frame, channel]} (not a finite number)")
    tables = layout._tables
    outside = (array < tables.hard_min) | (array > tables.hard_max)
    if outside.any():
        frame, channel = np.argwhere(outside)[0]
        spec = layout.specs[channel]
        raise ChannelError(f"{source}: frame {first_frame + int(frame)}, channel '{spec.name}' = "
                           f"{float(array[frame, channel]):.4g} {spec.unit} is outside "
                           f"[{spec.hard_min:.4g}, {spec.hard_max:.4g}]")
    return array


def frames_from_records(records: Sequence[Mapping[str, float]], layout: ChannelLayout,
                        source: str = "channels") -> np.ndarray:
    """Build a frame array from per-frame ``{name: value}`` records.

    Missing channels take their defaults (a clip without eyes is normal);
    unknown names are errors because they are almost always typos.
    """
    array = layout.defaults(len(records))
    dropped = _DroppedExpressions(source, layout)
    for frame, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ChannelError(f"{source}: frame {frame} is not a mapping of channel names to values")
        for name, value in record.items():
            column = layout.column_of(name, source, frame)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ChannelError(f"{source}: frame {frame}, channel '{name}': {value!r} is not a number") from None
            if column is None:
                dropped.add(name, [value], frame)
            else:
                array[frame, column] = value
    dropped.report()
    return validate_frames(array, layout, source)


def per_frame_column(values: Iterable[float], what: str, source: str) -> np.ndarray:
    """A file's column as one float64 per frame; ``what`` names it in the error ("channel 'jaw_x'")."""
    try:
        column = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ChannelError(f"{source}: {what} holds values that are not numbers") from None
    if column.ndim != 1:
        raise ChannelError(f"{source}: {what} must be one value per frame, got shape {column.shape}")
    return column


def frames_from_columns(columns: Mapping[str, Iterable[float]], layout: ChannelLayout,
                        source: str = "channels") -> np.ndarray:
    """Build a frame array from ``{name: per-frame values}`` columns."""
    lengths = set()
    converted = {}
    dropped = _DroppedExpressions(source, layout)
    for name, values in columns.items():
        column_index = layout.column_of(name, source)
        column = per_frame_column(values, f"channel '{name}'", source)
        lengths.add(len(column))
        if column_index is None:
            dropped.add(name, column)
        else:
            converted[column_index] = column
    if not lengths:
        raise ChannelError(f"{source}: no channels found")
    if len(lengths) != 1:
        raise ChannelError(f"{source}: channels have different frame counts {sorted(lengths)}")
    array = layout.defaults(lengths.pop())
    for column_index, column in converted.items():
        array[:, column_index] = column
    dropped.report()
    return validate_frames(array, layout, source)


class _DroppedExpressions:
    """Expression channels past the subject's count: dropped, and said so when they move."""

    def __init__(self, source: str, layout: ChannelLayout):
        self.source, self.layout = source, layout
        self.names: dict[str, bool] = {}  # name -> holds a non-zero value

    def add(self, name: str, values, first_frame: int = 0) -> None:
        values = np.asarray(values, dtype=np.float64)
        broken = np.flatnonzero(~np.isfinite(values))
        if broken.size:  # unused, but a NaN still means the tracking broke there
            frame = int(broken[0])
            raise ChannelError(f"{self.source}: frame {first_frame + frame}, channel '{name}' is "
                               f"{values[frame]} (not a finite number)")
        self.names[name] = self.names.get(name, False) or bool(np.any(values != 0))

    def report(self) -> None:
        if not self.names:
            return
        moving = [name for name, nonzero in self.names.items() if nonzero]
        (log.warning if moving else log.info)(
            "%s: the subject has %d expression channels; dropped %d more (%s)%s", self.source,
            self.layout.num_expressions, len(self.names), _name_range(list(self.names)),
            f", non-zero in {_name_range(moving)}" if moving else "")


def _name_range(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"


# --------------------------------------------------------------------------- rotations

def _rot_x(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def _rot_y(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def _rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


#: How head yaw, pitch and roll compose (the marker channel files carry).
HEAD_ROTATION = "Rz(roll) Ry(yaw) Rx(pitch)"
#: The composition of files written before the marker existed: roll innermost.
LEGACY_HEAD_ROTATION = "Ry(yaw) Rx(pitch) Rz(roll)"


def head_rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``: roll last, as the renderer applies it (in the image)."""
    return _rot_z(roll) @ _rot_y(yaw) @ _rot_x(pitch)


def legacy_head_rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)``: what angles in files without a marker mean."""
    return _rot_y(yaw) @ _rot_x(pitch) @ _rot_z(roll)


_GIMBAL_EPS = 1e-12


def head_angles_from_matrix(rotation: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`head_rotation_matrix`, on the branch with ``|pitch| <= 90 deg``."""
    r = np.asarray(rotation, dtype=np.float64)
    cos_yaw_abs = math.hypot(r[2, 1], r[2, 2])  # |cos yaw| (R[2,1:] = cos yaw (sin pitch, cos pitch))
    if cos_yaw_abs < _GIMBAL_EPS:
        # Full profile: pitch and roll turn about the same (viewing) axis; read it all as roll.
        return math.atan2(-r[2, 0], 0.0), 0.0, math.atan2(-r[0, 1], r[1, 1])
    # cos pitch >= 0 makes the sign of R[2,2] the sign of cos yaw.
    sign = 1.0 if r[2, 2] >= 0 else -1.0
    pitch = math.atan2(sign * r[2, 1], sign * r[2, 2])
    yaw = math.atan2(-r[2, 0], sign * cos_yaw_abs)
    roll = math.atan2(sign * r[1, 0], sign * r[0, 0])
    return yaw, pitch, roll


_COMPOSITIONS = {HEAD_ROTATION: head_rotation_matrix, LEGACY_HEAD_ROTATION: legacy_head_rotation_matrix}


def head_rotation_convention(marker: object, source: str = "channels") -> str:
    """The convention a file's ``head_rotation`` marker names (spacing ignored); a clear error otherwise."""
    if isinstance(marker, str):
        compact = "".join(marker.split())
        for name in _COMPOSITIONS:
            if compact == "".join(name.split()):
                return name
    raise ChannelError(f"{source}: unknown head_rotation {marker!r} (expected {HEAD_ROTATION!r}, or "
                       f"{LEGACY_HEAD_ROTATION!r} for angles that compose roll innermost)")


def convert_head_rotation(frames: np.ndarray, layout: ChannelLayout, convention: str) -> tuple[np.ndarray, int]:
    """Frames whose head angles compose by ``convention``, re-expressed in :data:`HEAD_ROTATION`.

    Returns the converted frames and how many changed.  Only frames that combine roll with
    yaw or pitch change (the conventions agree on the others), so every other value stays
    bit-identical; each converted frame keeps its full head rotation.
    """
    frames = np.array(frames, dtype=np.float32)
    convention = head_rotation_convention(convention)
    if convention == HEAD_ROTATION:
        return frames, 0
    compose = _COMPOSITIONS[convention]
    head = layout.slice("head")
    angles = frames[:, head].astype(np.float64)
    differ = np.flatnonzero((angles[:, 2] != 0) & ((angles[:, 0] != 0) | (angles[:, 1] != 0)))
    for row in differ:
        frames[row, head] = head_angles_from_matrix(compose(*angles[row]))
    return frames, len(differ)


def axis_angle_to_matrix(axis_angle: Sequence[float]) -> np.ndarray:
    """Rodrigues' formula, the same map FLAME and DECA use."""
    v = np.asarray(axis_angle, dtype=np.float64).reshape(3)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * (kx @ kx)


def matrix_to_axis_angle(rotation: np.ndarray) -> np.ndarray:
    r = np.asarray(rotation, dtype=np.float64)
    cos_angle = max(-1.0, min(1.0, (np.trace(r) - 1) / 2))
    angle = math.acos(cos_angle)
    if angle < 1e-9:
        return np.zeros(3)
    if math.pi - angle < 1e-6:
        # Near 180 degrees the antisymmetric part vanishes; take the axis from R + I.
        column = np.argmax(np.diag(r))
        axis = (r[:, column] + np.eye(3)[:, column])
        axis /= np.linalg.norm(axis)
        return axis * angle
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]]) / (2 * math.sin(angle))
    return axis * angle


#: Blender armature axes -> FLAME camera axes (a proper rotation: det = +1).
BLENDER_TO_FLAME = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def flame_rotation_from_blender(rotation: np.ndarray) -> np.ndarray:
    """A rotation given in Blender armature axes, expressed in FLAME axes (works on [..., 3, 3])."""
    return BLENDER_TO_FLAME @ np.asarray(rotation, dtype=np.float64) @ BLENDER_TO_FLAME.T


def blender_rotation_from_flame(rotation: np.ndarray) -> np.ndarray:
    """Inverse of :func:`flame_rotation_from_blender`."""
    return BLENDER_TO_FLAME.T @ np.asarray(rotation, dtype=np.float64) @ BLENDER_TO_FLAME


def head_angles_from_axis_angle(global_pose: Sequence[float]) -> tuple[float, float, float]:
    """yaw, pitch, roll of a FLAME/DECA global axis-angle rotation."""
    return head_angles_from_matrix(axis_angle_to_matrix(global_pose))


def effective_head_angles(frames: np.ndarray, layout: ChannelLayout) -> np.ndarray:
    """``[frames, 3]`` yaw, pitch, roll of ``R_global @ R_neck`` for each frame."""
    frames = np.asarray(frames, dtype=np.float64)
    head = frames[:, layout.slice("head")]
    neck = frames[:, layout.slice("neck")]
    out = np.empty((len(frames), 3), dtype=np.float64)
    for i in range(len(frames)):
        if not neck[i].any():
            out[i] = head[i]
            continue
        composed = head_rotation_matrix(*head[i]) @ axis_angle_to_matrix(neck[i])
        out[i] = head_angles_from_matrix(composed)
    return out.astype(np.float32)


# --------------------------------------------------------------------------- statistics

@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation of a clip (stored in bundles)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, frames: np.ndarray) -> "ChannelStats":
        frames = np.asarray(frames, dtype=np.float64)
        return cls(frames.mean(axis=0).astype(np.float32), frames.std(axis=0).astype(np.float32))

    def to_dict(self) -> dict:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, data: Mapping, size: int) -> "ChannelStats":
        mean = np.asarray(data["mean"], dtype=np.float32)
        std = np.asarray(data["std"], dtype=np.float32)
        if mean.shape != (size,) or std.shape != (size,):
            raise ChannelError(f"channel statistics must hold {size} values each")
        return cls(mean, std)


def normalize_reenactment(frames: np.ndarray, layout: ChannelLayout, subject: ChannelStats,
                          driving: ChannelStats | None = None, min_std: float = 1e-4) -> np.ndarray:
    """Retarget a driving clip's jaw and expression onto a subject (PVP section 3.4).

    Jaw and expression are standardised with the driving clip's own statistics
    and rescaled with the subject's, so a performer who smiles broadly drives a
    subject who smiles subtly at the subject's own intensity.  Head pose is left
    alone: it is geometry, not style.
    """
    frames = np.asarray(frames, dtype=np.float32).copy()
    driving = driving or ChannelStats.of(frames)
    for group in ("jaw", "expression"):
        part = layout.slice(group)
        # A channel the driving clip never moves maps to the subject's mean, not to infinity.
        d_std = np.maximum(driving.std[part], min_std)
        standardized = (frames[:, part] - driving.mean[part]) / d_std
        frames[:, part] = standardized * subject.std[part] + subject.mean[part]
    return frames

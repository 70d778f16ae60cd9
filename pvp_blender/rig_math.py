"""Posed bones <-> rig channels.  No bpy: plain numpy, tested with plain pytest.

The head rig follows FLAME's joint tree:

=========  ============  ============  ===================================
bone       FLAME joint   FLAME parent  channels
=========  ============  ============  ===================================
``head``   global        (none)        head_yaw, head_pitch, head_roll
``neck``   neck          head          neck_x, neck_y, neck_z (axis-angle)
``jaw``    jaw           neck          jaw_x, jaw_y, jaw_z (axis-angle)
``eye.L``  left eye      neck          eye_l_x, eye_l_y, eye_l_z
``eye.R``  right eye     neck          eye_r_x, eye_r_y, eye_r_z
=========  ============  ============  ===================================

**Reading** (every rendered frame).  For each bone take its evaluated
armature-space pose matrix ``P`` (so F-curves, drivers, NLA and constraints
all count) and its rest matrix ``B``.  ``A = rot(P) @ rot(B).T`` is the
bone's accumulated rotation away from the rest pose, in armature axes.  The
FLAME local rotation of a joint is ``A_parent.T @ A_joint`` (FLAME parent, not
Blender parent, so re-parenting a bone cannot change the meaning of a channel),
turned into FLAME axes with ``contract.channels.flame_rotation_from_blender``
and then into yaw/pitch/roll (head) or axis-angle (the rest).  Scale in the
pose is ignored; translation does not exist in FLAME and is ignored too.

**Writing** (importing a clip) is the exact inverse, ending in each bone's own
rotation mode (any Euler order, quaternion or axis-angle).  The armature
object's transform is not part of the channels: it places the avatar in the
shot instead (``placement_math``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..pvp_runtime.contract.channels import (ChannelLayout, axis_angle_to_matrix, blender_rotation_from_flame,
                                             flame_rotation_from_blender, head_angles_from_matrix,
                                             head_rotation_matrix, matrix_to_axis_angle)


@dataclass(frozen=True)
class RigBone:
    name: str             # Blender bone name
    group: str            # channel group, and the channel prefix
    flame_parent: str | None
    prefix: str           # channel name prefix


RIG_BONES = (
    RigBone("head", "head", None, "head"),
    RigBone("neck", "neck", "head", "neck"),
    RigBone("jaw", "jaw", "neck", "jaw"),
    RigBone("eye.L", "eyes", "neck", "eye_l"),
    RigBone("eye.R", "eyes", "neck", "eye_r"),
)
BONES_BY_NAME = {bone.name: bone for bone in RIG_BONES}
# Head angles are the head bone's Euler angles when it uses this order (X pitch, Y yaw, Z roll):
# Blender's "XYZ" is R = Rz @ Ry @ Rx, the channels' Rz(roll) Ry(yaw) Rx(pitch).  Rigs built
# before that convention use "ZXY"; they are read through their matrices, so they still work.
HEAD_EULER_ORDER = "XYZ"
JOINT_EULER_ORDER = "XYZ"


def bone_channel_names(bone: RigBone) -> tuple[str, str, str]:
    if bone.group == "head":
        return ("head_yaw", "head_pitch", "head_roll")
    return tuple(f"{bone.prefix}_{axis}" for axis in "xyz")


def rotation_part(matrix) -> np.ndarray:
    """The nearest rotation to a matrix's upper-left 3x3 (drops scale and shear)."""
    m = np.asarray(matrix, dtype=np.float64)[..., :3, :3]
    u, _, vt = np.linalg.svd(m)
    # A mirrored pose (negative scale) would give a reflection: flip it back to a proper rotation.
    flip = np.where(np.linalg.det(u @ vt) < 0, -1.0, 1.0)
    u = u.copy()
    u[..., :, -1] *= flip[..., None]
    return u @ vt


def accumulated_rotation(pose_matrix, rest_matrix) -> np.ndarray:
    """A bone's rotation away from its rest pose, in armature axes."""
    return rotation_part(pose_matrix) @ rotation_part(rest_matrix).T


# --------------------------------------------------------------------------- reading

def channels_from_pose(accumulated: Mapping[str, np.ndarray], expressions: Sequence[float],
                       layout: ChannelLayout) -> np.ndarray:
    """One frame's channel vector from each rig bone's accumulated rotation and the expression values.

    A bone missing from ``accumulated`` counts as at rest (a rig without eye bones is fine).
    """
    frame = layout.defaults(1)[0].astype(np.float64)
    identity = np.eye(3)
    for bone in RIG_BONES:
        child = accumulated.get(bone.name, identity)
        parent = accumulated.get(bone.flame_parent, identity) if bone.flame_parent else identity
        local = flame_rotation_from_blender(parent.T @ child)
        if bone.group == "head":
            values = head_angles_from_matrix(local)
        else:
            values = matrix_to_axis_angle(local)
        for name, value in zip(bone_channel_names(bone), values):
            frame[layout.index(name)] = value
    expression = layout.slice("expression")
    values = np.asarray(expressions, dtype=np.float64)[: layout.num_expressions]
    frame[expression.start:expression.start + len(values)] = values
    return frame.astype(np.float32)


# --------------------------------------------------------------------------- writing

def flame_local_rotations(frames: np.ndarray, layout: ChannelLayout) -> dict[str, np.ndarray]:
    """``{bone: [F, 3, 3]}`` local rotations (relative to the FLAME parent), in FLAME axes."""
    frames = np.asarray(frames, dtype=np.float64)
    out = {}
    for bone in RIG_BONES:
        columns = [layout.index(name) for name in bone_channel_names(bone)]
        values = frames[:, columns]
        if bone.group == "head":
            out[bone.name] = np.stack([head_rotation_matrix(*row) for row in values])
        else:
            out[bone.name] = np.stack([axis_angle_to_matrix(row) for row in values])
    return out


def bone_basis_rotations(frames: np.ndarray, layout: ChannelLayout, rest: Mapping[str, np.ndarray],
                         blender_parents: Mapping[str, str | None]) -> dict[str, np.ndarray]:
    """``{bone: [F, 3, 3]}`` the rotation each pose bone's own channels must hold (its basis).

    ``rest`` holds each rig bone's rest matrix (armature space); ``blender_parents`` the
    Blender parent of each bone (``None`` for a root).  Assumes the bones inherit rotation
    and carry no rotation constraints, as the rig this add-on builds.
    """
    local = flame_local_rotations(frames, layout)
    count = len(frames)
    accumulated: dict[str, np.ndarray] = {}
    for bone in RIG_BONES:  # parents come first in RIG_BONES
        parent = accumulated[bone.flame_parent] if bone.flame_parent else np.broadcast_to(np.eye(3), (count, 3, 3))
        accumulated[bone.name] = parent @ blender_rotation_from_flame(local[bone.name])
    basis = {}
    for bone in RIG_BONES:
        if bone.name not in rest:
            continue
        b = rotation_part(rest[bone.name])
        parent_name = blender_parents.get(bone.name)
        parent = accumulated.get(parent_name) if parent_name else None
        relative = accumulated[bone.name] if parent is None else np.swapaxes(parent, -1, -2) @ accumulated[bone.name]
        basis[bone.name] = b.T @ relative @ b
    return basis


# --------------------------------------------------------------------------- rotation modes

_AXES = {"X": 0, "Y": 1, "Z": 2}


def _elementary(axis: int, angles: np.ndarray) -> np.ndarray:
    c, s = np.cos(angles), np.sin(angles)
    out = np.zeros(angles.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out[..., axis, axis] = 1
    out[..., i, i] = c
    out[..., j, j] = c
    out[..., i, j] = -s
    out[..., j, i] = s
    return out


def matrices_from_euler(angles: np.ndarray, order: str) -> np.ndarray:
    """Blender's Euler convention: order "XYZ" applies X first, so R = Rz @ Ry @ Rx."""
    angles = np.asarray(angles, dtype=np.float64)
    first, second, third = (_AXES[a] for a in order)
    return (_elementary(third, angles[..., third]) @ _elementary(second, angles[..., second])
            @ _elementary(first, angles[..., first]))


def euler_from_matrices(rotations: np.ndarray, order: str) -> np.ndarray:
    """Inverse of :func:`matrices_from_euler` (``[..., 3]`` angles indexed by axis X, Y, Z)."""
    r = np.asarray(rotations, dtype=np.float64)
    i, j, k = (_AXES[a] for a in order)
    even = (j - i) % 3 == 1  # XYZ, YZX, ZXY
    sign = 1.0 if even else -1.0
    out = np.zeros(r.shape[:-2] + (3,))
    out[..., j] = np.arcsin(np.clip(-sign * r[..., k, i], -1.0, 1.0))
    out[..., i] = np.arctan2(sign * r[..., k, j], r[..., k, k])
    out[..., k] = np.arctan2(sign * r[..., j, i], r[..., i, i])
    return out


def quaternions_from_matrices(rotations: np.ndarray) -> np.ndarray:
    """``[F, 4]`` (w, x, y, z), signs chosen so consecutive frames interpolate the short way."""
    r = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    out = np.zeros((len(r), 4))
    for n, m in enumerate(r):
        trace = np.trace(m)
        if trace > 0:
            s = math.sqrt(trace + 1.0) * 2
            q = (0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s)
        else:
            a = int(np.argmax(np.diag(m)))
            b, c = (a + 1) % 3, (a + 2) % 3
            s = math.sqrt(1.0 + m[a, a] - m[b, b] - m[c, c]) * 2
            q = [0.0] * 4
            q[0] = (m[c, b] - m[b, c]) / s
            q[1 + a] = 0.25 * s
            q[1 + b] = (m[b, a] + m[a, b]) / s
            q[1 + c] = (m[c, a] + m[a, c]) / s
        out[n] = q
        if n and np.dot(out[n], out[n - 1]) < 0:
            out[n] *= -1
    return out


def rotation_values(rotations: np.ndarray, mode: str) -> np.ndarray:
    """Rotations in a pose bone's ``rotation_mode``: ``[F, 3]`` Euler, ``[F, 4]`` quaternion or
    axis-angle (angle first, as Blender stores it)."""
    if mode == "QUATERNION":
        return quaternions_from_matrices(rotations)
    if mode == "AXIS_ANGLE":
        out = []
        for m in np.asarray(rotations).reshape(-1, 3, 3):
            v = matrix_to_axis_angle(m)
            angle = float(np.linalg.norm(v))
            out.append((angle, *(v / angle if angle > 1e-12 else (0.0, 1.0, 0.0))))
        return np.array(out)
    if len(mode) == 3 and set(mode) == set("XYZ"):
        # Unwrap so keys interpolate through the short way, not across +-pi.
        return np.unwrap(euler_from_matrices(rotations, mode), axis=0)
    raise ValueError(f"unknown rotation mode {mode!r}")

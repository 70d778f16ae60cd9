"""Bone rotations <-> rig channels, without Blender (the same code runs inside it)."""

import math

import numpy as np
import pytest

from blender_helpers import extension_module
from pvp_runtime.contract.channels import ChannelLayout, flame_rotation_from_blender

rig_math = extension_module("pvp_blender.rig_math")
layout = ChannelLayout(4)
ORDERS = ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")


def random_rotation(rng):
    return rig_math.rotation_part(rng.normal(size=(3, 3)))


def random_frames(rng, count):
    frames = layout.defaults(count).astype(np.float64)
    for spec_index, spec in enumerate(layout.specs):
        frames[:, spec_index] = rng.uniform(spec.soft_min, spec.soft_max, count) * 0.8
    return frames


@pytest.mark.parametrize("order", ORDERS)
def test_euler_round_trip_in_every_blender_order(order):
    rng = np.random.default_rng(1)
    angles = rng.uniform(-1.2, 1.2, (50, 3))
    matrices = rig_math.matrices_from_euler(angles, order)
    assert np.allclose(rig_math.euler_from_matrices(matrices, order), angles, atol=1e-9)


def test_blender_euler_convention_applies_the_first_axis_first():
    # Blender "XYZ": rotate about X, then Y, then Z (R = Rz Ry Rx).
    r = rig_math.matrices_from_euler(np.array([math.pi / 2, 0, math.pi / 2]), "XYZ")
    # +Y goes to +Z under the X quarter turn, and stays there under Z.
    assert np.allclose(r @ [0, 1, 0], [0, 0, 1])


def test_head_bone_euler_angles_are_pitch_yaw_roll():
    yaw, pitch, roll = 0.4, -0.2, 0.1
    from pvp_runtime.contract.channels import head_rotation_matrix
    angles = rig_math.euler_from_matrices(head_rotation_matrix(yaw, pitch, roll), rig_math.HEAD_EULER_ORDER)
    assert np.allclose(angles, [pitch, yaw, roll])


def test_quaternions_and_axis_angle_modes_round_trip():
    rng = np.random.default_rng(2)
    matrices = rig_math.matrices_from_euler(rng.uniform(-2, 2, (20, 3)), "XYZ")
    quats = rig_math.rotation_values(matrices, "QUATERNION")
    assert np.allclose(np.linalg.norm(quats, axis=1), 1)
    assert (np.sum(quats[1:] * quats[:-1], axis=1) >= 0).all()  # short-way signs
    w, x, y, z = quats.T
    rebuilt = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], 1)
    assert np.allclose(rebuilt, matrices, atol=1e-9)
    axis_angle = rig_math.rotation_values(matrices, "AXIS_ANGLE")
    from pvp_runtime.contract.channels import axis_angle_to_matrix
    assert np.allclose([axis_angle_to_matrix(a[0] * a[1:]) for a in axis_angle], matrices, atol=1e-9)


def _pose(basis, rest, parents):
    """Blender's forward kinematics for rotation-only poses: P = P_parent B_parent^-1 B L."""
    posed = {}
    for bone in rig_math.RIG_BONES:
        name = bone.name
        local = rest[name] @ basis[name]
        parent = parents[name]
        posed[name] = local if parent is None else posed[parent] @ rest[parent].T @ local
    return posed


def _rests(rng):
    up = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)       # bone along +Z, roll 0
    forward = np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1]], dtype=float)  # bone along -Y, X kept +X
    return {"head": up, "neck": up, "jaw": forward, "eye.L": forward, "eye.R": random_rotation(rng)}


@pytest.mark.parametrize("parents", [
    {"head": None, "neck": "head", "jaw": "neck", "eye.L": "neck", "eye.R": "neck"},
    # Re-parented rig: the channels keep their FLAME meaning.
    {"head": None, "neck": "head", "jaw": "head", "eye.L": "neck", "eye.R": "head"},
], ids=["flame-tree", "reparented"])
def test_channels_survive_bones_and_back(parents):
    rng = np.random.default_rng(3)
    rest = _rests(rng)
    frames = random_frames(rng, 12)
    basis = rig_math.bone_basis_rotations(frames, layout, rest, parents)
    for name, value in basis.items():  # each bone's own channels, through its Euler mode and back
        order = rig_math.HEAD_EULER_ORDER if name == "head" else rig_math.JOINT_EULER_ORDER
        basis[name] = rig_math.matrices_from_euler(rig_math.rotation_values(value, order), order)
    expression = layout.slice("expression")
    for f in range(len(frames)):
        posed = _pose({k: v[f] for k, v in basis.items()}, rest, parents)
        accumulated = {k: rig_math.accumulated_rotation(posed[k], rest[k]) for k in posed}
        channels = rig_math.channels_from_pose(accumulated, frames[f, expression], layout)
        assert np.allclose(channels, frames[f], atol=1e-5), f


def test_directions_match_the_channel_convention():
    """Blender: face looks along -Y, the subject's left is +X, up is +Z."""
    from pvp_runtime.contract.channels import BLENDER_TO_FLAME
    assert np.isclose(np.linalg.det(BLENDER_TO_FLAME), 1)
    assert np.allclose(BLENDER_TO_FLAME @ [0, -1, 0], [0, 0, 1])  # out of the face = FLAME +z

    def head_channels(rotation):
        return rig_math.channels_from_pose({"head": rotation}, [], layout)

    turn_left = rig_math.matrices_from_euler(np.array([0, 0, 0.3]), "XYZ")  # about +Z: -Y swings to +X
    assert np.allclose(turn_left @ [0, -1, 0], [math.sin(0.3), -math.cos(0.3), 0])
    assert np.isclose(head_channels(turn_left)[layout.index("head_yaw")], 0.3, atol=1e-6)
    look_down = rig_math.matrices_from_euler(np.array([0.2, 0, 0]), "XYZ")  # about +X: -Y swings to -Z
    assert (look_down @ [0, -1, 0])[2] < 0
    assert np.isclose(head_channels(look_down)[layout.index("head_pitch")], 0.2, atol=1e-6)
    open_jaw = rig_math.channels_from_pose({"jaw": look_down}, [], layout)
    assert np.isclose(open_jaw[layout.index("jaw_x")], 0.2, atol=1e-6)
    # Tilting the top of the head towards the viewer's right (subject's left) is clockwise as seen: roll < 0.
    tilt = rig_math.matrices_from_euler(np.array([0, 0.25, 0]), "XYZ")  # about +Y: +Z (top) swings to +X
    assert (tilt @ [0, 0, 1])[0] > 0
    assert np.isclose(head_channels(tilt)[layout.index("head_roll")], -0.25, atol=1e-6)


def test_expression_values_and_missing_bones():
    channels = rig_math.channels_from_pose({}, [0.5, -1.0], layout)
    expression = layout.slice("expression")
    assert np.allclose(channels[expression], [0.5, -1.0, 0, 0])
    assert np.allclose(np.delete(channels, range(expression.start, expression.stop)), 0)


def test_pose_scale_is_ignored():
    r = rig_math.matrices_from_euler(np.array([0.1, 0.2, 0.3]), "XYZ")
    assert np.allclose(rig_math.rotation_part(r * 2.5), r)
    assert np.allclose(flame_rotation_from_blender(np.eye(3)), np.eye(3))

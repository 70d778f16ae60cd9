"""Head roll is rendered as an image-plane rotation, so the channels compose it outermost.

The chain under test: a head bone's rotation (or a tracker's FLAME global pose) -> rig
channels -> the roll the renderer applies to the aligned crop (``MapperInputs.roll`` through
``roll_about``).  The reference is the projected eye line of the FLAME head that the same
rotation poses (FLAME skinning, and the Blender display mesh's math): the camera is
orthographic, looking down -z, so that line's angle on screen is what the render must show.
The aligned crop itself always shows level eyes (alignment removes roll), which is why the
rendered eye line is the crop's horizontal turned by ``roll_about``.
"""

import json
import logging
import math

import numpy as np
import pytest
import torch

from asset_builders import face_flame_arrays
from blender_helpers import extension_module
from pvp_runtime.avatar import roll_about
from pvp_runtime.contract.channel_files import read_channel_file, write_channel_file
from pvp_runtime.contract.channels import (BLENDER_TO_FLAME, HEAD_ROTATION, LEGACY_HEAD_ROTATION, ChannelLayout,
                                           axis_angle_to_matrix, head_rotation_matrix,
                                           legacy_head_rotation_matrix, matrix_to_axis_angle)
from pvp_runtime.contract.errors import ChannelError
from pvp_runtime.formats.flame import flame_pose_from_channels, read_flame_model
from pvp_runtime.formats.trackers import FlameParams, params_to_frames
from pvp_runtime.model.pvp import MapperInputs

rig_math = extension_module("pvp_blender.rig_math")
mesh_math = extension_module("pvp_blender.flame_mesh_math")
LAYOUT = ChannelLayout(10)
DEG = math.pi / 180
UP = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)  # the rig's head/neck rest: along +Z, roll 0
LEFT_EYE, RIGHT_EYE = [8, 9], [10, 11]  # face_flame_arrays' eye vertices (joints 3 and 4)
# (pitch, yaw, roll) of the head bone's Euler angles; the case first (yaw 45, roll 20).
HEAD_POSES = [(0.0, 45 * DEG, 20 * DEG), (10 * DEG, 45 * DEG, 20 * DEG), (-15 * DEG, -60 * DEG, -35 * DEG),
              (20 * DEG, 30 * DEG, 40 * DEG)]


@pytest.fixture(scope="module")
def flame(tmp_path_factory):
    path = tmp_path_factory.mktemp("flame") / "face.npz"
    np.savez(path, **{k: v for k, v in face_flame_arrays().items() if isinstance(v, np.ndarray)})
    return read_flame_model(path)


def screen_angle(vector_flame) -> float:
    """Angle on screen (counter-clockwise as seen) of a FLAME-space vector, orthographic camera down -z."""
    return math.atan2(vector_flame[1], vector_flame[0])


def flame_eye_line(model, pose) -> float:
    _, joints = model.pose(pose)
    return screen_angle(joints[3] - joints[4])  # right eye -> left eye: +x at rest


def display_mesh_eye_line(model, frame) -> float:
    """The same line on the Blender display mesh (armature space), seen by a front camera."""
    vertices = mesh_math.posed_vertices(model, frame, LAYOUT) @ BLENDER_TO_FLAME.T
    return screen_angle(vertices[LEFT_EYE].mean(axis=0) - vertices[RIGHT_EYE].mean(axis=0))


def rendered_eye_line(frame) -> float:
    """Where the renderer puts the eye line: the aligned crop's level eyes turned by ``roll_about``."""
    roll = MapperInputs.from_frames(frame[None], LAYOUT).roll
    size, sigma = 65, 2.0
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    dot = lambda x: torch.exp(-((xs - x) ** 2 + (ys - 32) ** 2) / (2 * sigma ** 2))
    crop = torch.zeros(1, 4, size, size, dtype=torch.float64)
    crop[0, 0], crop[0, 1] = dot(20.0), dot(44.0)  # the subject's right eye at image left, the left eye right
    rolled = roll_about(crop, roll.double(), (0.5, 0.5))[0]
    centre = lambda image: ((image * xs).sum() / image.sum(), (image * ys).sum() / image.sum())
    (x0, y0), (x1, y1) = centre(rolled[0]), centre(rolled[1])
    return math.atan2(-(y1 - y0).item(), (x1 - x0).item())  # image rows grow downwards


def head_bone_rotation(pitch, yaw, roll):
    """A head bone posed with Euler angles in the rig's head order: its rotation away from rest (armature axes)."""
    basis = rig_math.matrices_from_euler(np.array([pitch, yaw, roll]), rig_math.HEAD_EULER_ORDER)
    return UP @ basis @ UP.T


def rig_channels(head, neck_local=np.eye(3)):
    """Channels the rig reports; the bones below the head inherit its rotation (the rest at rest)."""
    neck = head @ neck_local
    accumulated = {"head": head, "neck": neck, "jaw": neck, "eye.L": neck, "eye.R": neck}
    return rig_math.channels_from_pose(accumulated, [], LAYOUT)


@pytest.mark.parametrize("pitch, yaw, roll", HEAD_POSES)
def test_bone_rotation_to_rendered_roll_matches_the_flame_eye_line(flame, pitch, yaw, roll):
    frame = rig_channels(head_bone_rotation(pitch, yaw, roll))
    # The head bone's Euler angles in the rig's order are the channels themselves.
    assert frame[LAYOUT.slice("head")] == pytest.approx([yaw, pitch, roll], abs=1e-6)
    assert not frame[LAYOUT.slice("neck")].any()
    mesh_line = flame_eye_line(flame, flame_pose_from_channels(frame, LAYOUT)[0])
    assert display_mesh_eye_line(flame, frame) == pytest.approx(mesh_line, abs=1e-6)
    assert mesh_line == pytest.approx(roll, abs=1e-5)  # roll is the on-screen tilt, whatever yaw and pitch
    assert rendered_eye_line(frame) == pytest.approx(mesh_line, abs=0.2 * DEG)


def test_a_neck_rotation_tilts_the_render_like_the_mesh(flame):
    neck_basis = rig_math.matrices_from_euler(np.array([0.1, -0.2, 0.25]), "XYZ")
    head = head_bone_rotation(0.1, 40 * DEG, 15 * DEG)
    frame = rig_channels(head, UP @ neck_basis @ UP.T)
    assert np.abs(frame[LAYOUT.slice("neck")]).max() > 0.1
    mesh_line = flame_eye_line(flame, flame_pose_from_channels(frame, LAYOUT)[0])
    assert rendered_eye_line(frame) == pytest.approx(mesh_line, abs=0.2 * DEG)


def test_importing_channels_poses_the_head_bone_back():
    frames = LAYOUT.defaults(1).astype(np.float64)
    frames[0, LAYOUT.slice("head")] = [45 * DEG, 10 * DEG, 20 * DEG]
    basis = rig_math.bone_basis_rotations(frames, LAYOUT, {"head": UP}, {"head": None})["head"]
    euler = rig_math.rotation_values(basis, rig_math.HEAD_EULER_ORDER)[0]
    assert euler == pytest.approx([10 * DEG, 45 * DEG, 20 * DEG], abs=1e-9)  # X pitch, Y yaw, Z roll


@pytest.mark.parametrize("pitch, yaw, roll", HEAD_POSES)
def test_tracker_global_pose_renders_its_own_eye_line(flame, pitch, yaw, roll):
    rotation = axis_angle_to_matrix([0.1, 0.0, 0.0]) @ head_rotation_matrix(yaw, pitch, roll)
    global_pose = matrix_to_axis_angle(rotation)
    params = FlameParams(global_pose=global_pose[None], jaw_pose=np.zeros((1, 3)), expression=np.zeros((1, 10)),
                         source="tracker")
    frame = params_to_frames(params, LAYOUT)[0]
    pose = np.zeros((5, 3))
    pose[0] = global_pose
    assert rendered_eye_line(frame) == pytest.approx(flame_eye_line(flame, pose), abs=0.2 * DEG)


# --------------------------------------------------------------------------- files written before the change

def _legacy_frames():
    frames = LAYOUT.defaults(4)
    head = LAYOUT.slice("head")
    frames[0, head] = [45 * DEG, 10 * DEG, 20 * DEG]   # roll with yaw and pitch: the conventions differ
    frames[1, head] = [0.0, 0.0, 30 * DEG]             # roll alone: the same either way
    frames[2, head] = [-60 * DEG, 0.0, 0.0]            # no roll: the same either way
    frames[3, head] = [-30 * DEG, -20 * DEG, -25 * DEG]
    frames[:, LAYOUT.index("jaw_x")] = 0.2
    return frames


def _write_legacy(path, frames):
    """A channel file as PVP Avatar wrote it before the head_rotation marker existed."""
    names = LAYOUT.names
    if path.suffix == ".csv":
        rows = [",".join(["frame", *names])] + [",".join([str(i), *(f"{v:.9g}" for v in row)])
                                                   for i, row in enumerate(frames)]
        path.write_text("\n".join(rows) + "\n")
    elif path.suffix == ".json":
        path.write_text(json.dumps({"fps": 25, "frames": [dict(zip(names, map(float, row))) for row in frames]}))
    else:
        np.savez(path, **{name: frames[:, i] for i, name in enumerate(names)}, fps=np.float32(25))


@pytest.mark.parametrize("suffix", [".csv", ".json", ".npz"])
def test_files_without_a_marker_are_converted_from_roll_innermost(tmp_path, flame, caplog, suffix):
    legacy = _legacy_frames()
    path = tmp_path / f"old{suffix}"
    _write_legacy(path, legacy)
    with caplog.at_level(logging.WARNING):
        frames = read_channel_file(path, LAYOUT).frames
    assert "converted 2 frame(s)" in caplog.text and path.name in caplog.text
    head = LAYOUT.slice("head")
    for old, new in zip(legacy, frames):
        # The same head pose: each frame keeps its full rotation.
        np.testing.assert_allclose(head_rotation_matrix(*new[head].astype(np.float64)),
                                   legacy_head_rotation_matrix(*old[head].astype(np.float64)), atol=1e-6)
        pose = np.zeros((5, 3))
        pose[0] = matrix_to_axis_angle(legacy_head_rotation_matrix(*old[head].astype(np.float64)))
        assert rendered_eye_line(new) == pytest.approx(flame_eye_line(flame, pose), abs=0.2 * DEG)
    assert np.array_equal(frames[1:3], legacy[1:3])  # frames the conventions agree on are untouched
    untouched = np.ones(LAYOUT.size, bool)
    untouched[head] = False
    assert np.array_equal(frames[:, untouched], legacy[:, untouched])
    assert not np.allclose(frames[0, head], legacy[0, head], atol=1e-3)


@pytest.mark.parametrize("suffix", [".csv", ".json", ".npz"])
def test_written_files_carry_the_marker_and_read_back_unchanged(tmp_path, caplog, suffix):
    frames = _legacy_frames()
    path = tmp_path / f"new{suffix}"
    write_channel_file(path, frames, LAYOUT, fps=24)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            assert str(data["head_rotation"]) == HEAD_ROTATION
    else:
        assert HEAD_ROTATION in path.read_text()
    with caplog.at_level(logging.WARNING):
        clip = read_channel_file(path, LAYOUT)
    assert "converted" not in caplog.text
    if suffix == ".csv":  # 7 significant digits, no fps
        np.testing.assert_allclose(clip.frames, frames, rtol=1e-6)
    else:
        assert np.array_equal(clip.frames, frames) and clip.fps == 24


def test_an_explicit_legacy_marker_converts_and_an_unknown_one_is_refused(tmp_path):
    frames = _legacy_frames()
    path = tmp_path / "tagged.csv"
    write_channel_file(path, frames, LAYOUT)
    text = path.read_text()
    path.write_text(text.replace(HEAD_ROTATION, LEGACY_HEAD_ROTATION.replace(" ", "")))
    converted = read_channel_file(path, LAYOUT).frames
    np.testing.assert_allclose(head_rotation_matrix(*converted[0, :3].astype(np.float64)),
                               legacy_head_rotation_matrix(*frames[0, :3].astype(np.float64)), atol=1e-6)
    path.write_text(text.replace(HEAD_ROTATION, "Rx(pitch) Ry(yaw) Rz(roll)"))
    with pytest.raises(ChannelError, match=r"tagged.csv: unknown head_rotation 'Rx\(pitch\) Ry\(yaw\) Rz\(roll\)'"):
        read_channel_file(path, LAYOUT)


def test_csv_line_numbers_count_the_marker_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(f"# head_rotation: {HEAD_ROTATION}\nhead_yaw,jaw_x\n0.1,0.2\n0.3\n")
    with pytest.raises(ChannelError, match="bad.csv: line 4 has 1 values"):
        read_channel_file(path, LAYOUT)

import math

import numpy as np
import pytest

from pvp_runtime.contract.channels import (
    ChannelLayout, ChannelStats, axis_angle_to_matrix, effective_head_angles, frames_from_columns,
    frames_from_records, head_angles_from_axis_angle, head_angles_from_matrix, head_rotation_matrix,
    matrix_to_axis_angle, normalize_reenactment, validate_frames)
from pvp_runtime.contract.errors import ChannelError
from pvp_runtime.contract.placement_columns import split_columns


def test_layout_order_and_size():
    layout = ChannelLayout(50)
    assert layout.names[:9] == ("head_yaw", "head_pitch", "head_roll", "neck_x", "neck_y", "neck_z",
                                "jaw_x", "jaw_y", "jaw_z")
    assert layout.names[9] == "expr_00" and layout.names[58] == "expr_49"
    assert layout.names[59:] == ("eye_l_x", "eye_l_y", "eye_l_z", "eye_r_x", "eye_r_y", "eye_r_z")
    assert layout.size == len(layout.names) == 65
    assert layout.slice("expression") == slice(9, 59)
    assert ChannelLayout(100).names[9] == "expr_00" and ChannelLayout(101).names[9] == "expr_000"
    assert all(s.unit in ("rad", "flame_pca") for s in layout.specs)
    assert all(s.hard_min <= s.soft_min <= s.default <= s.soft_max <= s.hard_max for s in layout.specs)


def test_layout_tables_are_built_once_and_cannot_be_changed_by_a_caller():
    # The Blender engine reads the layout for every frame: its tables are cached per expression count.
    assert ChannelLayout(50).names is ChannelLayout(50).names
    assert [ChannelLayout(50).index(name) for name in ChannelLayout(50).names] == list(range(65))
    with pytest.raises(ChannelError, match="unknown channel 'expr_50'"):
        ChannelLayout(50).index("expr_50")
    with pytest.raises(ChannelError, match="unknown channel"):
        ChannelLayout(50).index(["head_yaw"])
    tables = ChannelLayout(10)._tables
    with pytest.raises(ValueError):
        tables.hard_min[0] = 0.0


def test_layout_rejects_bad_expression_count():
    with pytest.raises(ChannelError):
        ChannelLayout(0)


def test_validate_wrong_count():
    layout = ChannelLayout(10)
    with pytest.raises(ChannelError, match="expected 25 channels per frame"):
        validate_frames(np.zeros((3, 24)), layout)


@pytest.mark.parametrize("value, words", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_validate_non_finite_names_frame_and_channel(value, words):
    layout = ChannelLayout(10)
    frames = layout.defaults(5)
    frames[3, layout.index("jaw_x")] = value
    with pytest.raises(ChannelError, match=rf"clip: frame 3, channel 'jaw_x' is {words}"):
        validate_frames(frames, layout, "clip")


def test_validate_out_of_range_names_frame_and_channel():
    layout = ChannelLayout(10)
    frames = layout.defaults(4)
    frames[2, layout.index("head_yaw")] = 90.0  # degrees where radians belong
    with pytest.raises(ChannelError, match=r"frame 12, channel 'head_yaw' = 90 rad is outside"):
        validate_frames(frames, layout, first_frame=10)
    frames[2, layout.index("head_yaw")] = 0
    frames[1, layout.index("expr_03")] = -20
    with pytest.raises(ChannelError, match="channel 'expr_03'"):
        validate_frames(frames, layout)


def test_records_and_columns():
    layout = ChannelLayout(10)
    frames = frames_from_records([{"head_yaw": 0.1}, {"jaw_x": 0.2, "expr_09": 1.5}], layout)
    assert frames.shape == (2, layout.size) and frames.dtype == np.float32
    assert frames[0, 0] == np.float32(0.1) and frames[1, layout.index("expr_09")] == 1.5
    with pytest.raises(ChannelError, match="frame 1: unknown channel 'jaw_open'"):
        frames_from_records([{}, {"jaw_open": 1}], layout)
    with pytest.raises(ChannelError, match="'head_yaw': 'left' is not a number"):
        frames_from_records([{"head_yaw": "left"}], layout)
    columns = frames_from_columns({"head_yaw": [0.0, 0.5], "expr_01": [1, 2]}, layout)
    assert columns[1, layout.index("expr_01")] == 2
    with pytest.raises(ChannelError, match="different frame counts"):
        frames_from_columns({"head_yaw": [0.0, 0.5], "expr_01": [1]}, layout)


def test_convention_signs():
    forward = np.array([0.0, 0.0, 1.0])
    up = np.array([0.0, 1.0, 0.0])
    assert (head_rotation_matrix(0.3, 0, 0) @ forward)[0] > 0   # yaw > 0: face turns to +x
    assert (head_rotation_matrix(0, 0.3, 0) @ forward)[1] < 0   # pitch > 0: face looks down
    assert (head_rotation_matrix(0, 0, 0.3) @ up)[0] < 0        # roll > 0: top goes to -x (counter-clockwise)


def test_roll_is_the_outermost_rotation(rng):
    # Roll is rendered as an image-plane rotation (about the camera's z), so it comes last.
    for yaw, pitch, roll in rng.uniform(-1.2, 1.2, size=(20, 3)):
        c, s = math.cos(roll), math.sin(roll)
        image_plane = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        assert np.allclose(head_rotation_matrix(yaw, pitch, roll), image_plane @ head_rotation_matrix(yaw, pitch, 0))


def test_head_angles_keep_pitch_within_90_degrees_and_survive_a_full_profile():
    back = head_angles_from_matrix(head_rotation_matrix(2.2, 0.4, -0.3))  # facing away: yaw past 90 degrees
    assert np.allclose(back, (2.2, 0.4, -0.3), atol=1e-12)
    profile = head_rotation_matrix(math.pi / 2, 0.3, 0.2)  # a nod at full profile turns the image plane too
    yaw, pitch, roll = head_angles_from_matrix(profile)
    assert yaw == pytest.approx(math.pi / 2) and pitch == 0
    assert np.allclose(head_rotation_matrix(yaw, pitch, roll), profile, atol=1e-12)


def test_euler_matrix_round_trip(rng):
    for _ in range(200):
        yaw, roll = rng.uniform(-3.0, 3.0, size=2)
        pitch = rng.uniform(-1.5, 1.5)
        back = head_angles_from_matrix(head_rotation_matrix(yaw, pitch, roll))
        assert np.allclose(back, (yaw, pitch, roll), atol=1e-9)


def test_axis_angle_round_trip(rng):
    for _ in range(200):
        v = rng.normal(size=3)
        v *= rng.uniform(0.0, 3.0) / np.linalg.norm(v)
        r = axis_angle_to_matrix(v)
        assert np.allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.allclose(axis_angle_to_matrix(matrix_to_axis_angle(r)), r, atol=1e-9)
    assert np.allclose(matrix_to_axis_angle(axis_angle_to_matrix([0, math.pi, 0])), [0, math.pi, 0], atol=1e-6)


def test_axis_angle_pure_yaw_matches_channel():
    yaw, pitch, roll = head_angles_from_axis_angle([0, 0.4, 0])
    assert yaw == pytest.approx(0.4) and pitch == pytest.approx(0) and roll == pytest.approx(0)
    # The reference model code's formula reads -yaw from the same matrix.
    r = axis_angle_to_matrix([0, 0.4, 0])
    assert math.atan2(r[2, 0], r[2, 2]) == pytest.approx(-0.4)


def test_effective_head_angles_compose_neck():
    layout = ChannelLayout(10)
    frames = layout.defaults(2)
    frames[0, layout.index("head_yaw")] = 0.3
    frames[1, layout.index("head_yaw")] = 0.1
    frames[1, layout.index("neck_y")] = 0.2  # neck yaw adds to the head's yaw
    angles = effective_head_angles(frames, layout)
    assert angles[0] == pytest.approx([0.3, 0, 0], abs=1e-6)
    assert angles[1] == pytest.approx([0.3, 0, 0], abs=1e-6)


def test_reenactment_normalisation():
    layout = ChannelLayout(10)
    rng = np.random.default_rng(3)
    driving = layout.defaults(200)
    driving[:, layout.slice("expression")] = rng.normal(1.0, 2.0, size=(200, 10))
    driving[:, layout.index("head_yaw")] = 0.5
    subject = ChannelStats(mean=np.full(layout.size, 0.2, np.float32), std=np.full(layout.size, 0.5, np.float32))
    out = normalize_reenactment(driving, layout, subject)
    expression = out[:, layout.slice("expression")]
    assert np.allclose(expression.mean(axis=0), 0.2, atol=1e-4)
    assert np.allclose(expression.std(axis=0), 0.5, atol=1e-3)
    assert np.all(out[:, layout.index("head_yaw")] == 0.5)  # pose is left alone
    assert np.allclose(out[:, layout.slice("jaw")], 0.2)     # constant channels land on the subject's mean


def test_expression_channels_match_by_number_and_extra_ones_are_dropped(caplog):
    layout = ChannelLayout(num_expressions=10)
    columns = {"head_yaw": [0.1, 0.2], "expr_003": [1.0, 2.0], "expr_10": [0.0, 0.0], "expr_49": [0.0, 0.5]}
    with caplog.at_level("INFO"):
        frames = frames_from_columns(columns, layout, "clip.csv")
    assert frames[:, layout.index("expr_03")].tolist() == [1.0, 2.0]
    assert frames[:, layout.index("head_yaw")].tolist() == pytest.approx([0.1, 0.2])
    assert "dropped 2 more (expr_10..expr_49), non-zero in expr_49" in caplog.text
    records = [{"expr_09": 1.0, "expr_60": 0.0}]
    assert frames_from_records(records, layout)[0, layout.index("expr_09")] == 1.0


@pytest.mark.parametrize("name", ["expr_400", "head_yawn", "expr_1", "expr"])
def test_unknown_channel_names_are_still_errors(name):
    with pytest.raises(ChannelError, match=f"clip.csv: unknown channel '{name}'"):
        frames_from_columns({name: [0.0]}, ChannelLayout(num_expressions=10), "clip.csv")


@pytest.mark.parametrize("values, problem", [
    (["0.1", "x"], "holds values that are not numbers"),
    ([[0.0, 1.0]], "must be one value per frame, got shape (1, 2)"),
])
def test_a_column_that_is_not_one_number_per_frame_is_named(values, problem):
    # Channel columns and placement columns are read by one rule; the message names which it is.
    with pytest.raises(ChannelError) as error:
        frames_from_columns({"jaw_x": values}, ChannelLayout(num_expressions=10), "clip.json")
    assert str(error.value) == f"clip.json: channel 'jaw_x' {problem}"
    with pytest.raises(ChannelError) as error:
        split_columns({"place_x": values, "jaw_x": [0.0]}, "clip.json")
    assert str(error.value) == f"clip.json: column 'place_x' {problem}"


def test_a_dropped_channel_with_nan_is_still_refused():
    with pytest.raises(ChannelError, match="clip.csv: frame 1, channel 'expr_20' is nan"):
        frames_from_columns({"expr_20": [0.0, float("nan")]}, ChannelLayout(num_expressions=10), "clip.csv")

import dataclasses
import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from pvp_runtime.contract.channels import LEGACY_HEAD_ROTATION, ChannelLayout, convert_head_rotation
from pvp_runtime.synthetic_head import (
    DEMO, LOOKS, NUM_EXPRESSIONS, VIEW_HALF_WIDTH, head_parts, look_from_spec, performance, random_look,
    render_frame, render_head)


def _frame(**values):
    layout = ChannelLayout(NUM_EXPRESSIONS)
    frame = layout.defaults(1)[0]
    for name, value in values.items():
        frame[layout.index(name)] = value
    return layout, frame


def test_performance_covers_the_required_ranges():
    layout, frames = performance(720)
    degrees = np.degrees(frames[:, :3])
    assert degrees[:, 0].min() <= -45 and degrees[:, 0].max() >= 45
    assert degrees[:, 1].min() <= -25 + 1e-3 and degrees[:, 1].max() >= 25 - 1e-3
    assert frames[:, layout.index("jaw_x")].max() > 0.3 and frames[:, layout.index("jaw_x")].min() == 0
    expressions = frames[:, layout.slice("expression")]
    assert np.all(expressions.max(axis=0) > 1.0)  # every expression channel is exercised


@pytest.mark.parametrize("look_name", ["demo", "ada", "bao", "cyd", "eve", "random:3"])
def test_channels_drive_the_picture_in_the_documented_direction(look_name):
    look = look_from_spec(look_name)
    layout, neutral = _frame()
    base, matte, landmarks = render_frame(neutral, layout, 64, look=look)
    assert base.shape == (64, 64, 3) and matte.shape == (64, 64) and landmarks.shape == (68, 2)
    assert matte.max() == 255 and matte[0, 0] == 0
    # yaw > 0 turns the face to the subject's left, which is image right: the nose tip moves right.
    _, _, turned = render_frame(_frame(head_yaw=math.radians(40))[1], layout, 64, look=look)
    assert turned[30, 0] > landmarks[30, 0] + 3
    # pitch > 0 looks down: the nose tip moves down the image.
    _, _, down = render_frame(_frame(head_pitch=math.radians(20))[1], layout, 64, look=look)
    assert down[30, 1] > landmarks[30, 1] + 2
    # jaw_x > 0 opens the mouth: the mouth region gets darker.
    opened, _, _ = render_frame(_frame(jaw_x=0.4)[1], layout, 64, look=look)
    mouth = (slice(int(landmarks[51, 1]), int(landmarks[57, 1]) + 4), slice(int(landmarks[48, 0]), int(landmarks[54, 0])))
    assert opened[mouth].mean() < base[mouth].mean() - 10
    for k in range(NUM_EXPRESSIONS):
        changed, _, _ = render_frame(_frame(**{f"expr_{k:02d}": 2.5})[1], layout, 64, look=look)
        assert np.abs(changed.astype(int) - base).max() > 20, f"expr_{k:02d} has no visible effect"


# --------------------------------------------------------------------------- looks and gaze

REPO = Path(__file__).resolve().parents[1]
# Rendered by the code before looks and gaze existed (commit 91e7256): performance(100) and
# render_frame of its frames 0, 40, 80 at 64 px and frame 40 at 128 px.
REFERENCE = REPO / "tests" / "data" / "synthetic_head_demo_reference.npz"


def test_default_look_and_performance_are_unchanged():
    reference = np.load(REFERENCE)
    layout, frames = performance(100)
    # Bit-identical here; the tolerances only absorb another CPU's last-bit sin/sqrt differences.
    np.testing.assert_allclose(frames, reference["performance"], rtol=0, atol=1e-6)
    # The reference was rendered when head angles composed roll innermost: the same poses, re-expressed.
    poses, _ = convert_head_rotation(frames, layout, LEGACY_HEAD_ROTATION)
    for key, frame, size in (("0", 0, 64), ("40", 40, 64), ("80", 80, 64), ("40_128", 40, 128)):
        rgb, matte, landmarks = render_frame(poses[frame], layout, size)
        for name, got in (("rgb", rgb), ("matte", matte)):
            diff = np.abs(got.astype(int) - reference[f"{name}_{key}"])
            assert diff.max() <= 1 and (diff > 0).mean() < 0.002, f"{name} of frame {key} changed"
        np.testing.assert_allclose(landmarks, reference[f"landmarks_{key}"], atol=1e-3)


def test_looks_are_different_people():
    layout, neutral = _frame()
    looks = [*LOOKS.values(), *(random_look(seed) for seed in range(3))]
    assert len(LOOKS) >= 4 and LOOKS["demo"] == DEMO
    pictures = {}
    for look in looks:
        parts, _ = head_parts(neutral, layout, look)
        linear, coverage = render_head(parts, 64)
        assert np.isfinite(linear).all() and np.isfinite(coverage).all(), look.name
        pictures[look.name] = render_frame(neutral, layout, 64, look=look)[0].astype(float)
    for a, b in itertools.combinations(pictures, 2):
        threshold = 8 if a in LOOKS and b in LOOKS else 4
        assert np.abs(pictures[a] - pictures[b]).mean() > threshold, f"{a} and {b} look alike"


def test_random_look_is_deterministic_per_seed():
    assert random_look(11) == random_look(11)
    assert random_look(11) != random_look(12)
    assert look_from_spec("random:11") == random_look(11) and look_from_spec("ada") is LOOKS["ada"]
    with pytest.raises(ValueError, match="unknown look 'zed'"):
        look_from_spec("zed")


def test_landmarks_follow_the_look():
    layout, neutral = _frame()
    size = 128
    pixels_per_unit = size / (2 * VIEW_HALF_WIDTH)
    for look in (DEMO, LOOKS["ada"], LOOKS["bao"], random_look(5)):
        _, _, points = render_frame(neutral, layout, size, look=look)
        eye_gap = points[42:48].mean(axis=0)[0] - points[36:42].mean(axis=0)[0]
        assert eye_gap == pytest.approx(2 * look.eye_spacing * pixels_per_unit, rel=1e-4), look.name
    wide, narrow = (render_frame(neutral, layout, size, look=LOOKS[name])[2] for name in ("bao", "ada"))
    jaw_width = lambda points: abs(points[12, 0] - points[4, 0])  # noqa: E731
    assert jaw_width(wide) > jaw_width(narrow) + 5
    long_nose = dataclasses.replace(DEMO, nose_length=0.24)
    _, _, longer = render_frame(neutral, layout, size, look=long_nose)
    _, _, demo = render_frame(neutral, layout, size)
    assert longer[33, 1] > demo[33, 1] + 2  # the nose's base (iBUG 33) hangs lower


def _eye_boxes(landmarks):
    """Pixel boxes around each eye's landmarks, grown by half the eye's width on every side."""
    boxes = []
    for eye in (landmarks[36:42], landmarks[42:48]):
        low, high = eye.min(axis=0), eye.max(axis=0)
        margin = 0.5 * (high[0] - low[0])
        boxes.append((int(low[1] - margin), int(high[1] + margin) + 1,
                      int(low[0] - margin), int(high[0] + margin) + 1))
    return boxes


def _iris_centre(picture, box):
    """Centre of the (bright green, see below) iris pixels in a box."""
    top, bottom, left, right = box
    r, g, b = np.moveaxis(picture[top:bottom, left:right].astype(int), 2, 0)
    green = (g > r + 60) & (g > b + 60)
    rows, cols = np.nonzero(green)
    assert len(rows) > 3, "no iris in the eye box"
    return np.array([cols.mean() + left, rows.mean() + top])


@pytest.mark.parametrize("look_name", ["demo", "cyd"])
def test_gaze_moves_the_irises_and_nothing_else(look_name):
    look = dataclasses.replace(LOOKS[look_name], iris_colour=(0.0, 0.6, 0.0))  # an iris easy to find
    layout, rest = _frame()
    size = 128
    still, _, landmarks = render_frame(rest, layout, size, look=look)
    right_box, left_box = _eye_boxes(landmarks)  # the subject's right eye is on the image's left
    inside = np.zeros((size, size), bool)
    for top, bottom, left, right in (right_box, left_box):
        inside[top:bottom, left:right] = True
    gazes = {"its left": dict(eye_l_y=0.35, eye_r_y=0.35), "down": dict(eye_l_x=0.2, eye_r_x=0.2),
             "up": dict(eye_l_x=-0.2, eye_r_x=-0.2), "left eye only": dict(eye_l_y=-0.3)}
    moved = {}
    for name, values in gazes.items():
        picture, _, _ = render_frame(_frame(**values)[1], layout, size, look=look)
        changed = np.abs(picture.astype(int) - still).max(axis=2) > 0
        assert changed.sum() > 10, f"gaze {name} is invisible"
        assert not (changed & ~inside).any(), f"gaze {name} changed pixels outside the eyes"
        moved[name] = picture
    top, bottom, left, right = right_box
    assert not (np.abs(moved["left eye only"].astype(int) - still)[top:bottom, left:right] > 0).any()
    # eye_y > 0 looks to the subject's left (image right), eye_x > 0 looks down, as head yaw and pitch.
    for box in (right_box, left_box):
        rest_centre = _iris_centre(still, box)
        assert _iris_centre(moved["its left"], box)[0] > rest_centre[0] + 1
        assert _iris_centre(moved["down"], box)[1] > rest_centre[1] + 0.5
        assert _iris_centre(moved["up"], box)[1] < rest_centre[1] - 0.5


def test_performance_gaze_and_wider_layouts():
    num_frames = 250
    layout, frames = performance(num_frames)
    assert not frames[:, layout.slice("eyes")].any()
    wide_layout, wide = performance(num_frames, gaze=True, num_expressions=50)
    assert wide_layout.num_expressions == 50 and wide.shape == (num_frames, wide_layout.size)
    expressions = wide[:, wide_layout.slice("expression")]
    np.testing.assert_array_equal(expressions[:, :NUM_EXPRESSIONS], frames[:, layout.slice("expression")])
    assert not expressions[:, NUM_EXPRESSIONS:].any()  # the head shows only the first ten
    for group in ("head", "neck", "jaw"):
        np.testing.assert_array_equal(wide[:, wide_layout.slice(group)], frames[:, layout.slice(group)])
    eye = lambda name: wide[:, wide_layout.index(name)]  # noqa: E731
    np.testing.assert_array_equal(eye("eye_l_x"), eye("eye_r_x"))
    np.testing.assert_array_equal(eye("eye_l_y"), eye("eye_r_y"))
    assert not eye("eye_l_z").any() and not eye("eye_r_z").any()
    assert np.abs(eye("eye_l_y")).max() <= 0.35 + 1e-6 and np.abs(eye("eye_l_x")).max() <= 0.2 + 1e-6
    assert np.ptp(eye("eye_l_y")) > 0.3 and np.ptp(eye("eye_l_x")) > 0.15  # it does look around
    jumps = np.abs(np.diff(eye("eye_l_y")))
    assert (jumps > 0.1).any() and (jumps == 0).mean() > 0.5  # saccades between fixations
    # The head reads its expressions by number, whatever the layout's width (expr_07 or expr_007).
    for count in (50, 120):
        other_layout, other = performance(num_frames, num_expressions=count)
        for index in (60, 200):
            np.testing.assert_array_equal(render_frame(other[index], other_layout, 48)[0],
                                          render_frame(frames[index], layout, 48)[0])


def _capture_script():
    path = REPO / "scripts" / "make_synthetic_capture.py"
    spec = importlib.util.spec_from_file_location("make_synthetic_capture", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_capture_script_writes_pass_through_captures(tmp_path, capsys):
    from pvp_runtime.contract.channel_files import read_channel_file

    script = _capture_script()
    output = tmp_path / "capture"
    assert script.main([str(output), "--frames", "3", "--size", "32", "--look", "random:3", "--gaze",
                        "--expressions", "50", "--no-landmarks", "--no-mattes"]) == 0
    assert sorted(p.name for p in output.iterdir()) == ["channels.csv", "frames"]
    assert len(list((output / "frames").glob("*.png"))) == 3
    header = next(line for line in (output / "channels.csv").read_text().splitlines()
                  if not line.startswith("#")).split(",")  # after the head_rotation marker
    assert "expr_49" in header and "eye_l_y" in header
    clip = read_channel_file(output / "channels.csv", ChannelLayout(50))
    assert len(clip.frames) == 3
    full = tmp_path / "full"
    assert script.main([str(full), "--frames", "2", "--size", "32"]) == 0
    assert sorted(p.name for p in full.iterdir()) == ["channels.csv", "frames", "landmarks.npy", "mattes"]
    with pytest.raises(SystemExit) as stop:
        script.main([str(tmp_path / "bad"), "--look", "zed"])
    assert stop.value.code == 2 and "unknown look 'zed'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_capture_script_leaves_nothing_when_a_frame_fails(tmp_path, monkeypatch):
    script = _capture_script()
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return render_frame(*args, **kwargs)

    monkeypatch.setattr(script, "render_frame", failing)
    with pytest.raises(RuntimeError):
        script.write_capture(tmp_path / "capture", 3, 16, 7)
    assert list(tmp_path.iterdir()) == []


def test_preview_sheet_has_a_row_per_look_and_a_column_per_pose(tmp_path):
    import cv2

    script = _capture_script()
    path = script.preview_looks(tmp_path / "looks.png", [DEMO, LOOKS["bao"]], size=32)
    sheet = cv2.imread(str(path))
    assert sheet.shape == (2 * 32, len(script.PREVIEW_POSES) * 32, 3)

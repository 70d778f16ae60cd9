import math

import numpy as np

from pvp_runtime.contract.channels import ChannelLayout
from pvp_runtime.synthetic_head import NUM_EXPRESSIONS, performance, render_frame


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


def test_channels_drive_the_picture_in_the_documented_direction():
    layout, neutral = _frame()
    base, matte, landmarks = render_frame(neutral, layout, 64)
    assert base.shape == (64, 64, 3) and matte.shape == (64, 64) and landmarks.shape == (68, 2)
    assert matte.max() == 255 and matte[0, 0] == 0
    # yaw > 0 turns the face to the subject's left, which is image right: the nose tip moves right.
    _, _, turned = render_frame(_frame(head_yaw=math.radians(40))[1], layout, 64)
    assert turned[30, 0] > landmarks[30, 0] + 3
    # pitch > 0 looks down: the nose tip moves down the image.
    _, _, down = render_frame(_frame(head_pitch=math.radians(20))[1], layout, 64)
    assert down[30, 1] > landmarks[30, 1] + 2
    # jaw_x > 0 opens the mouth: the mouth region gets darker.
    opened, _, _ = render_frame(_frame(jaw_x=0.4)[1], layout, 64)
    mouth = (slice(int(landmarks[51, 1]), int(landmarks[57, 1]) + 4), slice(int(landmarks[48, 0]), int(landmarks[54, 0])))
    assert opened[mouth].mean() < base[mouth].mean() - 10
    for k in range(NUM_EXPRESSIONS):
        changed, _, _ = render_frame(_frame(**{f"expr_{k:02d}": 2.5})[1], layout, 64)
        assert np.abs(changed.astype(int) - base).max() > 20, f"expr_{k:02d} has no visible effect"

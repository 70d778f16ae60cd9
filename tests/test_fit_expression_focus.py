"""Loss weights on what head pose does not explain (fit/expression_focus.py) and weighted pixel losses."""

import numpy as np
import pytest
import torch

from pvp_runtime.contract.channels import ChannelLayout
from pvp_runtime.contract.errors import PVPError
from pvp_runtime.fit.config import FitConfig
from pvp_runtime.fit.expression_focus import ExpressionFocus, pose_neighbours
from pvp_runtime.fit.pixel_loss import PIXEL_LOSSES, pixel_loss
from pvp_runtime.fit.prepared import PreparedClip

SIZE = 32
FRAMES = 60
BLINK_FRAMES = (20, 21, 22)


def _turning_clip_with_a_blink():
    """A bar that slides with head yaw (pose explains it) and, in three frames, a bright
    patch that no pose explains (an expression)."""
    layout = ChannelLayout(4)
    channels = np.repeat(layout.defaults(1), FRAMES, axis=0)
    yaw = np.linspace(-0.6, 0.6, FRAMES).astype(np.float32)
    channels[:, layout.names.index("head_yaw")] = yaw
    frames = np.full((FRAMES, SIZE, SIZE, 3), 40, np.uint8)
    for index, angle in enumerate(yaw):
        left = int(round((angle + 0.6) / 1.2 * (SIZE - 8)))
        frames[index, 10:24, left:left + 8] = 200
    for index in BLINK_FRAMES:
        frames[index, 2:6, 20:28] = 255
    prepared = PreparedClip(frames=frames, transforms=np.zeros((FRAMES, 2, 3)), landmarks=None, mattes=None)
    return prepared, channels, layout


def test_pose_neighbours_are_the_nearest_other_training_frames_in_head_pose():
    _, channels, layout = _turning_clip_with_a_blink()
    train = np.arange(0, FRAMES, 2)
    neighbours = pose_neighbours(channels, layout, train, 2)
    assert neighbours.shape == (len(train), 2)
    assert not np.any(neighbours == train[:, None])
    assert np.all(np.isin(neighbours, train))
    # Yaw rises with the frame index: a middle frame's nearest others are the adjacent training frames.
    assert sorted(neighbours[5]) == [8, 12]
    # Asking for more neighbours than there are other frames gives all of them.
    assert pose_neighbours(channels, layout, train[:3], 8).shape == (3, 2)


def test_focus_weights_single_out_the_expression_and_are_bounded():
    prepared, channels, layout = _turning_clip_with_a_blink()
    train = np.arange(FRAMES)
    focus = ExpressionFocus(prepared, channels, layout, train, strength=8.0, neighbours=6, seed=0, device="cpu")
    weights = focus.weights(np.array(BLINK_FRAMES[1:2] + (40,)))
    assert weights.shape == (2, 1, SIZE, SIZE)
    assert weights.min().item() >= 1.0 and weights.max().item() <= 9.0 + 1e-5
    blink, quiet = weights[0, 0], weights[1, 0]
    # The unexplained patch is weighted near the top; the pose-explained bar and background are not.
    assert blink[3:5, 22:26].mean() > 6.0
    assert blink[14:20].mean() < 2.0
    assert quiet.mean() < 1.5


@pytest.mark.parametrize("name", PIXEL_LOSSES)
def test_weights_are_a_weighted_mean(name):
    loss = pixel_loss(name)
    generator = torch.Generator().manual_seed(0)
    images, targets = (torch.rand(2, 3, 32, 32, generator=generator) for _ in range(2))
    uniform = torch.full((2, 1, 32, 32), 5.0)
    assert loss(images, targets, None, uniform).item() == pytest.approx(loss(images, targets, None).item(), rel=1e-5)
    # A weight on one region moves the loss toward that region's error alone.
    region = torch.zeros(2, 1, 32, 32)
    region[..., :8, :8] = 1.0
    only_region = loss(images * region, targets * region, None).item()
    weighted = loss(images, targets, None, 1e-6 + 1e3 * region).item()
    assert abs(weighted - loss(images, targets, None).item()) > 0
    if name == "mse":
        assert weighted == pytest.approx(only_region * 32 * 32 / 64, rel=1e-2)


def test_negative_focus_is_a_config_error():
    with pytest.raises(PVPError, match="scratch.focus"):
        FitConfig.from_dict({"scratch": {"focus": -1.0}})
    with pytest.raises(PVPError, match="scratch.focus_neighbours"):
        FitConfig.from_dict({"scratch": {"focus_neighbours": 0}})

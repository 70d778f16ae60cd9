import math

import numpy as np
import pytest
import torch

from pvp_runtime.avatar import Avatar, roll_about
from pvp_runtime.contract.errors import ChannelError, PVPError
from pvp_runtime.example_clips import head_turn_clip


@pytest.fixture(scope="module")
def avatar(tiny_bundle_path):
    return Avatar.load(tiny_bundle_path, device="cpu")


def test_render_shapes_and_conventions(avatar):
    frames = head_turn_clip(avatar.layout, 6, expression_channels=2)
    out = avatar.render(frames, batch_size=4)
    assert out.linear.shape == (6, 32, 32, 4) and out.linear.dtype == np.float32
    assert out.srgb8.shape == (6, 32, 32, 4) and out.srgb8.dtype == np.uint8
    assert np.all(out.linear[..., 3] == 1.0) and np.all(out.srgb8[..., 3] == 255)
    assert out.linear[..., :3].min() >= 0 and out.linear[..., :3].max() <= 1
    # The two forms agree: sRGB-encoding the linear output gives the 8-bit output.
    lin = torch.from_numpy(out.linear[..., :3])
    encoded = torch.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)
    assert np.abs((encoded.numpy() * 255).round() - out.srgb8[..., :3]).max() <= 1
    # Channels drive the picture.
    assert np.abs(out.linear[0] - out.linear[3]).max() > 1e-3


def test_render_is_deterministic_and_batch_independent(avatar):
    frames = head_turn_clip(avatar.layout, 5)
    a = avatar.render(frames, batch_size=5)
    b = avatar.render(frames, batch_size=5)
    assert np.array_equal(a.linear, b.linear) and np.array_equal(a.srgb8, b.srgb8)
    single = avatar.render(frames, batch_size=1)
    assert np.abs(single.linear - a.linear).max() < 1e-5


def test_render_accepts_records(avatar):
    out = avatar.render([{"head_yaw": 0.2}, {"jaw_x": 0.3, "expr_00": 1.0}], outputs=("srgb8",))
    assert out.linear is None and out.srgb8.shape[0] == 2


def test_render_rejects_bad_channels(avatar):
    frames = avatar.layout.defaults(3)
    frames[1, 5] = np.nan
    with pytest.raises(ChannelError, match="frame 1, channel 'neck_z'"):
        avatar.render(frames)
    with pytest.raises(ChannelError, match="expected 25 channels"):
        avatar.render(np.zeros((2, 65)))
    with pytest.raises(ChannelError, match="unknown channel 'head_yw'"):
        avatar.render([{"head_yw": 0.1}])


def test_unknown_device_is_a_clear_error(tiny_bundle_path):
    with pytest.raises(PVPError, match="unknown device 'gpu0'"):
        Avatar.load(tiny_bundle_path, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(PVPError, match="sees no CUDA GPU"):
            Avatar.load(tiny_bundle_path, device="cuda")


def test_roll_rotates_counter_clockwise_about_the_centre():
    image = torch.zeros(1, 4, 33, 33)
    image[:, :, 16, 28] = 1.0  # a dot right of the centre
    rotated = roll_about(image, torch.tensor([math.pi / 2]), (0.5, 0.5))
    y, x = np.unravel_index(rotated[0, 3].argmax().item(), (33, 33))
    assert (y, x) == (4, 16)  # a quarter turn counter-clockwise moves it above the centre


def test_roll_channel_rotates_render_and_clears_corners(avatar):
    frames = avatar.layout.defaults(2)
    frames[1, avatar.layout.index("head_roll")] = math.radians(30)
    out = avatar.render(frames)
    assert out.linear[1, 0, 0, 3] == 0 and out.srgb8[1, 0, 0, 3] == 0
    assert np.all(out.linear[0, ..., 3] == 1)
    centre = slice(12, 20)
    assert np.all(out.linear[1, centre, centre, 3] > 0.99)
    # Premultiplied: colour never exceeds alpha.
    assert np.all(out.linear[1, ..., :3] <= out.linear[1, ..., 3:] + 1e-6)


def test_random_avatar_constructor(tiny_generator_config):
    avatar = Avatar.random(tiny_generator_config, num_pivots=2, num_expressions=5)
    assert avatar.render(avatar.layout.defaults(1)).srgb8.shape == (1, 32, 32, 4)

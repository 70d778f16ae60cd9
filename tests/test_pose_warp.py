import numpy as np
import pytest
import torch

from pvp_runtime.avatar import Avatar
from pvp_runtime.bundle import SubjectBundle, load_bundle, random_bundle, save_bundle
from pvp_runtime.contract.channels import ChannelLayout
from pvp_runtime.contract.errors import PVPError
from pvp_runtime.fit.config import FitConfig
from pvp_runtime.model.pose_warp import FLOW_GAIN, PoseWarp
from pvp_runtime.model.pvp import MapperConfig, PVPModel
from pvp_runtime.model.stylegan2 import Generator, tiny_config

LAYOUT = ChannelLayout(5)


def _frames(yaws):
    frames = LAYOUT.defaults(len(yaws)).astype(np.float32)
    frames[:, LAYOUT.index("head_yaw")] = yaws
    return frames


def _warped_model(generator, grid=4, resolution=8, seed=0, expression_grid=0):
    config = MapperConfig(num_pivots=2, num_expressions=5, pose_warp_grid=grid, pose_warp_resolution=resolution,
                          expression_warp_grid=expression_grid)
    model = PVPModel(config, generator.num_ws, generator.config.w_dim)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.pivots.copy_(torch.randn(model.pivots.shape, generator=gen))
    return model


def test_an_untrained_warp_is_the_identity():
    torch.manual_seed(0)
    generator = Generator(tiny_config(32, 16)).eval()
    model = _warped_model(generator, expression_grid=4)
    frames = _frames([0.5, -0.4])
    frames[:, LAYOUT.index("expr_01")] = [1.0, -2.0]
    inputs = model.inputs(frames, LAYOUT)
    ws, _ = model(inputs)
    assert torch.equal(generator.synthesis(ws, warp=model.warp(inputs)), generator.synthesis(ws))


def test_a_uniform_flow_moves_the_features_at_its_resolution_only():
    warp = PoseWarp(grid=3, resolution=8)
    with torch.no_grad():
        warp.mlp[-1].bias.view(2, 9)[0] = (2 / 8) / FLOW_GAIN  # one pixel right at 8 px, in [-1, 1] units
    bound = warp.bind(torch.zeros(1, 2))
    features, image = torch.randn(1, 4, 8, 8), torch.randn(1, 3, 8, 8)
    moved_features, moved_image = bound(8, features, image)
    # Each output pixel samples its right-hand neighbour; the last column repeats the border.
    torch.testing.assert_close(moved_features[..., :-1], features[..., 1:])
    torch.testing.assert_close(moved_image[..., :-1], image[..., 1:])
    untouched = bound(16, features, image)
    assert untouched[0] is features and untouched[1] is image


def test_the_warp_follows_the_pose_and_survives_a_bundle_round_trip(tmp_path):
    source = random_bundle(tiny_config(32, 16), num_pivots=2, num_expressions=5, seed=1)
    model = _warped_model(source.generator, expression_grid=3)
    with torch.no_grad():
        torch.nn.init.normal_(model.pose_warp.mlp[-1].weight, std=1.0)
        torch.nn.init.normal_(model.pose_warp.expression_fields, std=1.0)
    bundle = SubjectBundle(name="warped", generator=source.generator, model=model.eval(),
                           channel_stats=source.channel_stats, provenance=source.provenance)
    avatar = Avatar.load(save_bundle(bundle, tmp_path / "warped.pvp"), device="cpu")
    assert avatar.model.config.pose_warp_grid == 4 and avatar.model.pose_warp is not None
    frames = _frames([0.6, -0.6])
    warped = avatar.render(frames).srgb8
    # The runtime renders through the warp: the same subject without it renders differently,
    # and the warp's own effect differs between the two yaws.
    with torch.no_grad():
        avatar.model.pose_warp.mlp[-1].weight.zero_()
    plain = avatar.render(frames).srgb8
    assert np.abs(warped.astype(int) - plain.astype(int)).max() > 10
    loaded = load_bundle(tmp_path / "warped.pvp").model
    torch.testing.assert_close(loaded.pose_warp.expression_fields, model.pose_warp.expression_fields)
    left, right = torch.tensor([[0.0, 0.6]]), torch.tensor([[0.0, -0.6]])
    torch.testing.assert_close(loaded.pose_warp.flow(left), model.pose_warp.flow(left))
    assert not torch.allclose(model.pose_warp.flow(left), model.pose_warp.flow(right))


def test_bad_pose_warp_settings_are_named():
    with pytest.raises(ValueError, match="pose warp grid"):
        MapperConfig(num_pivots=2, pose_warp_grid=1, pose_warp_resolution=8)
    with pytest.raises(ValueError, match="pose warp resolution"):
        MapperConfig(num_pivots=2, pose_warp_grid=4, pose_warp_resolution=12)
    with pytest.raises(PVPError, match="scratch.pose_warp_grid"):
        FitConfig.from_dict({"scratch": {"pose_warp_grid": 200}})
    with pytest.raises(PVPError, match="scratch.pose_warp_grid.*joint"):
        FitConfig.from_dict({"scratch": {"pose_warp_grid": 8, "mode": "pivots"}})


def test_expression_flows_add_up_per_channel_and_move_with_the_head():
    warp = PoseWarp(grid=2, resolution=8, expression_inputs=3, expression_grid=4)
    with torch.no_grad():
        torch.nn.init.normal_(warp.expression_fields)
    a, b = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, -2.0, 0.5]])
    # Linear in the channels, as blendshapes: a channel at rest moves nothing.
    torch.testing.assert_close(warp.expression_flow(a + b), warp.expression_flow(a) + warp.expression_flow(b))
    assert torch.equal(warp.expression_flow(torch.zeros(1, 3)), torch.zeros(1, 2, 4, 4))
    still = warp.sampling_grid(torch.zeros(1, 2))
    # With the head still, the offsets are the fields themselves, upsampled.
    fields = torch.nn.functional.interpolate(warp.expression_flow(a), size=(8, 8), mode="bilinear",
                                             align_corners=True)
    torch.testing.assert_close(warp.sampling_grid(torch.zeros(1, 2), a) - still, fields.permute(0, 2, 3, 1))
    # A head moved one pixel right finds each expression offset one pixel along on the still head.
    with torch.no_grad():
        warp.mlp[-1].bias.view(2, 4)[0] = (2 / 8) / FLOW_GAIN
    moved = warp.sampling_grid(torch.zeros(1, 2), a) - warp.sampling_grid(torch.zeros(1, 2))
    torch.testing.assert_close(moved[:, :, :-1], fields.permute(0, 2, 3, 1)[:, :, 1:])


def test_expression_flows_need_a_pose_warp():
    with pytest.raises(PVPError, match="scratch.expression_warp_grid"):
        FitConfig.from_dict({"scratch": {"expression_warp_grid": 8}})
    with pytest.raises(ValueError, match="pose warp grid"):
        MapperConfig(num_pivots=2, pose_warp_grid=4, pose_warp_resolution=8, expression_warp_grid=1)

import numpy as np
import pytest
import torch

from pvp_runtime.contract.channels import ChannelLayout
from pvp_runtime.model.mappers import ExpressionMapper, PoseMapper, dilated_hull_weights
from pvp_runtime.model.pvp import MapperConfig, MapperInputs, PVPModel


@pytest.mark.parametrize("beta", [0.02, 0.1])
def test_dilated_hull_weights_respect_the_constraints(beta):
    torch.manual_seed(0)
    raw = torch.randn(500, 30) * 3 - 1  # sums far from 1, many large negatives
    weights = dilated_hull_weights(raw, beta)
    assert torch.allclose(weights.sum(dim=-1), torch.ones(500), atol=1e-5)
    assert (weights >= -beta - 1e-6).all()
    assert (weights < -beta / 2).any(), "the dilation should be usable, not collapsed to the simplex"


def test_untrained_pose_mapper_returns_centroid_blend():
    mapper = PoseMapper(num_pivots=7)
    weights, residual = mapper(torch.randn(5, 2))
    assert torch.allclose(weights, torch.full((5, 7), 1 / 7), atol=1e-7)
    assert torch.equal(residual, torch.zeros(5, 7))


def test_trained_pose_mapper_stays_in_dilated_hull():
    mapper = PoseMapper(num_pivots=6, beta=0.02)
    with torch.no_grad():
        for p in mapper.parameters():
            p.normal_(std=3.0)
    weights, _ = mapper(torch.randn(64, 2) * 2)
    assert torch.allclose(weights.sum(-1), torch.ones(64), atol=1e-5)
    assert (weights >= -0.02 - 1e-6).all()


def test_expression_mapper_shapes_and_zero_start():
    mapper = ExpressionMapper(num_expressions=50, w_dim=32, num_layers=8)
    delta = mapper(torch.randn(3, 53))
    assert delta.shape == (3, 8, 32) and torch.equal(delta, torch.zeros_like(delta))
    assert len(mapper.layers) == 8
    assert mapper.layers[0][0].in_features == 53 and mapper.layers[0][0].out_features == 128


def test_pvp_model_blends_pivots_and_offsets_first_layers():
    layout = ChannelLayout(10)
    model = PVPModel(MapperConfig(num_pivots=3, num_expressions=10), num_ws=10, w_dim=16)
    with torch.no_grad():
        model.pivots.copy_(torch.randn(3, 10, 16))
    frames = layout.defaults(4)
    frames[:, layout.index("head_yaw")] = np.linspace(-1, 1, 4)
    ws, terms = model(MapperInputs.from_frames(frames, layout))
    assert ws.shape == (4, 10, 16)
    assert torch.allclose(ws, model.pivots.mean(0).expand(4, -1, -1), atol=1e-6)  # untrained: centroid
    with torch.no_grad():
        model.expression_mapper.layers[0][2].bias.fill_(0.5)
    ws2, terms = model(MapperInputs.from_frames(frames, layout))
    diff = (ws2 - ws).abs().amax(dim=(0, 2))
    assert diff[0] > 0.4 and torch.all(diff[1:] == 0)
    assert terms["delta"].shape == (4, 8, 16)


def test_expression_layers_capped_by_num_ws():
    model = PVPModel(MapperConfig(num_pivots=2, num_expressions=4), num_ws=6, w_dim=8)
    assert model.expression_layers == 6


def test_mapper_inputs_order():
    layout = ChannelLayout(10)
    frames = layout.defaults(1)
    frames[0, layout.index("head_yaw")] = 0.3
    frames[0, layout.index("head_pitch")] = -0.2
    frames[0, layout.index("head_roll")] = 0.1
    frames[0, layout.index("jaw_x")] = 0.25
    frames[0, layout.index("expr_09")] = 1.5
    inputs = MapperInputs.from_frames(frames, layout)
    assert inputs.pitch_yaw[0].tolist() == pytest.approx([-0.2, 0.3])
    assert inputs.roll[0].item() == pytest.approx(0.1)
    assert inputs.jaw_expression[0, 0].item() == pytest.approx(0.25)
    assert inputs.jaw_expression[0, -1].item() == pytest.approx(1.5)


def test_linear_expression_mapper_moves_each_layer_along_one_direction_per_input():
    """Without a hidden layer the pre-Tanh offsets add up across inputs, so a channel cannot mean
    one thing alone and another next to a second channel (what lets an MLP memorise moments)."""
    torch.manual_seed(0)
    linear, mlp = ExpressionMapper(10, 16, num_layers=2, linear=True), ExpressionMapper(10, 16, num_layers=2)
    assert len(linear.layers[0]) == 2 and len(mlp.layers[0]) == 4  # Linear, Tanh | Linear, LeakyReLU, Linear, Tanh
    for module in (linear, mlp):
        for layer in module.layers:
            torch.nn.init.normal_(layer[-2].weight, std=0.1)
    a, b = torch.zeros(1, 13), torch.zeros(1, 13)
    a[0, 4], b[0, 7] = 1.5, -2.0
    pre_tanh = lambda module, x: torch.atanh(module(x).double())
    for module, additive in ((linear, True), (mlp, False)):
        both = pre_tanh(module, a + b) - pre_tanh(module, torch.zeros(1, 13))
        apart = pre_tanh(module, a) + pre_tanh(module, b) - 2 * pre_tanh(module, torch.zeros(1, 13))
        assert torch.allclose(both, apart, atol=1e-4) == additive


def test_linear_expression_mapper_survives_a_bundle_round_trip(tmp_path, tiny_generator_config):
    from pvp_runtime.bundle import SubjectBundle, load_bundle, random_bundle, save_bundle

    source = random_bundle(tiny_generator_config, num_pivots=2, num_expressions=10, seed=3)
    config = MapperConfig(num_pivots=2, num_expressions=10, expression_linear=True)
    model = PVPModel(config, tiny_generator_config.num_ws, tiny_generator_config.w_dim)
    with torch.no_grad():
        model.pivots.copy_(source.model.pivots)
        for layer in model.expression_mapper.layers:
            torch.nn.init.normal_(layer[-2].weight, std=0.1)
    bundle = SubjectBundle(name="linear", generator=source.generator, model=model.eval(),
                           channel_stats=source.channel_stats, provenance=source.provenance)
    loaded = load_bundle(save_bundle(bundle, tmp_path / "linear.pvp"))
    assert loaded.model.config.expression_linear
    layout = ChannelLayout(10)
    frames = layout.defaults(2)
    frames[:, layout.slice("expression")] = np.random.default_rng(0).normal(size=(2, 10))
    inputs = MapperInputs.from_frames(frames, layout)
    assert torch.equal(loaded.model(inputs)[0], model(inputs)[0])

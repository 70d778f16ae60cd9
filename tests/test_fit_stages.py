"""Each optimisation stage on a tiny synthetic subject whose true latents are known.

Frames are rendered by a random 32 px subject (``fit.synthetic``), so the
projector, pivotal tuning and the mappers each have a ground truth to move
towards.  Step counts are tiny; learning rates are raised where the paper's
are tuned for 50k steps.  LPIPS uses the AlexNet trunk (cheapest at 32 px).
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pvp_runtime.contract.errors import PVPError
from pvp_runtime.fit.config import FitConfig
from pvp_runtime.fit.encoders import FitNetworks
from pvp_runtime.fit.evaluate import render_channels
from pvp_runtime.fit.losses import (expression_matching_loss, identity_loss, latent_regularizer,
                                    masked_consistency_loss, perturb_expression, pose_consistency_loss)
from pvp_runtime.fit.lpips import LPIPS
from pvp_runtime.fit.mapper_training import MapperStage
from pvp_runtime.fit.prepared import PreparedClip
from pvp_runtime.fit.projector import ProjectionStage, noise_layers, noise_regularizer
from pvp_runtime.fit.pti import PTIStage, locality_regularizer
from pvp_runtime.fit.frame_roll import FrameRoll
from pvp_runtime.fit.scratch_prior import ScratchPriorStage, cosine_rampdown, initial_codes
from pvp_runtime.fit.synthetic import synthetic_clip
from pvp_runtime.model.channel_estimate import ChannelEstimate
from pvp_runtime.model.pvp import MapperConfig, MapperInputs, PVPModel
from pvp_runtime.model.stylegan2 import tiny_config


@pytest.fixture(scope="module")
def clip():
    return synthetic_clip(tiny_config(32, 32), num_frames=24, num_expressions=6, seed=2)


@pytest.fixture(scope="module")
def prepared(clip):
    return PreparedClip(frames=clip.crops, transforms=np.zeros((24, 2, 3)), landmarks=clip.landmarks, mattes=None)


@pytest.fixture(scope="module")
def lpips():
    return LPIPS("alex")


def _true_ws(clip, frames):
    with torch.no_grad():
        return clip.subject.model(MapperInputs.from_frames(clip.channels[frames], clip.layout))[0]


def _perturbed(generator, scale=0.25, seed=0):
    perturbed = copy.deepcopy(generator)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in perturbed.synthesis.parameters():
            if p.ndim >= 2:
                p.add_(torch.randn(p.shape, generator=gen) * scale * p.std())
    return perturbed.requires_grad_(False)


def test_projection_finds_a_closer_w(clip, prepared, lpips):
    config = FitConfig().projector
    config.steps, config.w_avg_samples, config.batch_size, config.lr = 10, 500, 2, 0.05
    generator = copy.deepcopy(clip.subject.generator)
    frames = np.array([0, 9, 17])
    stage = ProjectionStage(generator, prepared, frames, lpips, config, seed=0, device="cpu")
    assert stage.total_steps == 20  # two batches (2 + 1 pivots) of 10 steps
    noise_before = [layer.noise_const.clone() for layer in stage.layers]
    start = lpips(generator.synthesis(stage.w_avg[None, None].repeat(3, generator.num_ws, 1)),
                  prepared.images(frames, "cpu"))
    losses = [stage.step(i) for i in range(stage.total_steps)]
    ws = stage.pivots_ws()
    assert ws.shape == (3, generator.num_ws, 32) and torch.equal(ws[:, 0], ws[:, -1])  # W space: one w per pivot
    end = lpips(generator.synthesis(ws), prepared.images(frames, "cpu"))
    assert (end < start).all(), (start, end)
    assert all(np.isfinite(list(l.values())).all() for l in losses)
    # The generator's own constant noise is untouched (the projector's noise maps are discarded).
    assert all(torch.equal(a, layer.noise_const) for a, layer in zip(noise_before, stage.layers))


def test_noise_regularizer_penalises_correlated_noise():
    gen = torch.Generator().manual_seed(0)
    white = torch.randn(2, 1, 32, 32, generator=gen)
    smooth = F.avg_pool2d(F.pad(white, (1, 1, 1, 1), mode="circular"), 3, stride=1)
    smooth = smooth / smooth.std()
    assert (noise_regularizer([smooth]) > 10 * noise_regularizer([white])).all()


def test_pivotal_tuning_lowers_pivot_error(clip, prepared, lpips):
    frames = np.array([0, 7, 15])
    ws = _true_ws(clip, frames)
    generator = _perturbed(clip.subject.generator)
    original = copy.deepcopy(generator)
    targets = prepared.images(frames, "cpu")
    with torch.no_grad():
        before = F.mse_loss(generator.synthesis(ws), targets).item(), lpips(generator.synthesis(ws), targets).mean()
    config = FitConfig().pti
    config.max_epochs, config.lr, config.lpips_threshold = 5, 3e-3, 0.0
    stage = PTIStage(generator, original, ws, prepared, frames, lpips, config, seed=0, device="cpu")
    losses = [stage.step(i) for i in range(stage.total_steps)]
    assert "locality" in losses[0] and len(stage.epoch_lpips) == 5
    with torch.no_grad():
        after = F.mse_loss(generator.synthesis(ws), targets).item(), lpips(generator.synthesis(ws), targets).mean()
    assert after[0] < 0.7 * before[0] and after[1] < before[1], (before, after)
    # The original generator (the regulariser's reference) never moves.
    assert not any(p.requires_grad for p in original.parameters())
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(),
                                                 _perturbed(clip.subject.generator).state_dict().values()))


def test_pti_stops_at_the_lpips_threshold(clip, prepared, lpips):
    frames = np.array([3, 11])
    config = FitConfig().pti
    config.max_epochs, config.lpips_threshold, config.locality_weight = 50, 10.0, 0.0
    stage = PTIStage(copy.deepcopy(clip.subject.generator), None, _true_ws(clip, frames), prepared, frames, lpips,
                     config, seed=0, device="cpu")
    stage.step(0)
    assert not stage.converged
    stage.step(1)  # end of the first epoch: its mean LPIPS is under the (huge) threshold
    assert stage.converged and len(stage.epoch_lpips) == 1


def test_locality_regulariser(clip, lpips):
    original = copy.deepcopy(clip.subject.generator)
    generator = copy.deepcopy(original).requires_grad_(True)
    config = FitConfig().pti
    pivot = _true_ws(clip, np.array([0]))
    z = torch.randn(1, 32, generator=torch.Generator().manual_seed(1))
    assert locality_regularizer(generator, original, pivot, z, config, lpips).item() == pytest.approx(0, abs=1e-6)
    with torch.no_grad():
        generator.synthesis.b32.torgb.bias.add_(0.5)
    changed = locality_regularizer(generator, original, pivot, z, config, lpips)
    assert changed.item() > 0.1 * 0.5 ** 2 * 0.99  # at least the 0.1-weighted L2 of a +0.5 shift
    changed.backward()
    assert generator.synthesis.b32.torgb.bias.grad.abs().sum() > 0
    assert all(p.grad is None for p in original.parameters())


def _scratch_stage(clip, prepared, lpips, mode, frame_roll=None, pose_warp_grid=0, **settings):
    from pvp_runtime.model.stylegan2 import Generator

    torch.manual_seed(0)
    generator = Generator(tiny_config(32, 16))
    config = FitConfig().scratch
    config.steps, config.batch_size, config.mode = 18, 3, mode
    for name, value in settings.items():
        setattr(config, name, value)
    frames = np.array([0, 8, 16])
    model = PVPModel(MapperConfig(num_pivots=3, num_expressions=clip.layout.num_expressions, hidden=16,
                                  pose_warp_grid=pose_warp_grid, pose_warp_resolution=8 if pose_warp_grid else 0),
                     generator.num_ws, 16)
    with torch.no_grad():
        model.pivots.copy_(initial_codes(generator, 3, seed=0, device="cpu"))
    stage = ScratchPriorStage(generator, model, frame_roll or FrameRoll(False), prepared, clip.channels,
                              np.arange(18), frames, clip.layout, lpips, config, seed=0, device="cpu")
    return stage, generator, model


def test_scratch_prior_in_pivots_mode_fits_the_pivots(clip, prepared, lpips):
    stage, generator, model = _scratch_stage(clip, prepared, lpips, "pivots")
    mappers = copy.deepcopy(model.expression_mapper.state_dict())
    first = stage.step(0)
    for i in range(1, stage.total_steps):
        last = stage.step(i)
    assert last["pivot_pixel"] < 0.5 * first["pivot_pixel"] and last["lpips"] < first["lpips"], (first, last)
    assert stage.pivots_ws().shape == (3, generator.num_ws, 16)
    assert not torch.equal(stage.pivots_ws()[0], stage.pivots_ws()[1])
    # The mappers are stage 2's in this mode.
    assert all(torch.equal(v, model.expression_mapper.state_dict()[k]) for k, v in mappers.items())


def test_joint_scratch_prior_trains_generator_codes_and_mappers_on_every_frame(clip, prepared, lpips):
    stage, generator, model = _scratch_stage(clip, prepared, lpips, "joint")
    pose, expression = (copy.deepcopy(m.state_dict()) for m in (model.pose_mapper, model.expression_mapper))
    pivots = model.pivots.detach().clone()
    records = [stage.step(i) for i in range(stage.total_steps)]
    # Both terms are optimised: the frames through the mappers, the pivots through their codes.
    assert np.mean([r["pixel"] for r in records[-4:]]) < 0.6 * np.mean([r["pixel"] for r in records[:4]]), records
    assert records[-1]["pivot_pixel"] < records[0]["pivot_pixel"]
    for before, module in ((pose, model.pose_mapper), (expression, model.expression_mapper)):
        assert any(not torch.equal(v, module.state_dict()[k]) for k, v in before.items()), "a mapper did not train"
    assert not torch.equal(pivots, model.pivots.detach())
    stage.finish()
    assert not any(p.requires_grad for p in (*generator.parameters(), *model.parameters()))



def test_joint_scratch_prior_without_a_pivot_term_renders_no_pivot_batch(clip, prepared, lpips, monkeypatch):
    stage, generator, model = _scratch_stage(clip, prepared, lpips, "joint", pivot_weight=0.0,
                                             pixel_loss="laplacian_l1")
    monkeypatch.setattr(stage, "_pivot_batch", lambda index: pytest.fail("pivot batch rendered"))
    records = [stage.step(i) for i in range(stage.total_steps)]
    assert "pivot_pixel" not in records[0]
    assert np.mean([r["pixel"] for r in records[-4:]]) < 0.8 * np.mean([r["pixel"] for r in records[:4]]), records

def test_learning_rates_ramp_down_to_zero_at_the_last_step():
    assert cosine_rampdown(0, 100, 0.3) == 1.0 and cosine_rampdown(69, 100, 0.3) == 1.0
    assert 0.0 < cosine_rampdown(85, 100, 0.3) < 1.0
    assert cosine_rampdown(100, 100, 0.3) == pytest.approx(0.0)
    assert cosine_rampdown(50, 100, 0.0) == 1.0


# --------------------------------------------------------------------------- stage 2

class TinyIdentity(nn.Module):
    """A stand-in for ArcFace IR-SE50: any differentiable image -> embedding net honours the interface."""

    name = "tiny-identity"

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                 nn.Linear(32, 16))
        self.requires_grad_(False)

    def forward(self, images):
        return self.net(images)


class TinyEstimator(nn.Module):
    """A stand-in for DECA's encoder: image -> global pose, jaw, expression (no neck, like DECA)."""

    name = "tiny-estimator"

    def __init__(self, num_expressions):
        super().__init__()
        torch.manual_seed(6)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                 nn.Linear(32, 6 + num_expressions + 4))
        self.requires_grad_(False)

    def forward(self, images):
        out = self.net(images)
        return ChannelEstimate(global_pose=out[:, :3], jaw=out[:, 3:6], expression=out[:, 6:])


def test_loss_functions():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1
    encoder = TinyIdentity()
    assert identity_loss(encoder, x, x).item() == pytest.approx(0, abs=1e-6)
    assert identity_loss(encoder, x, x.flip(0)).item() > 0
    jaw_expr = torch.zeros(2, 3 + 4)
    perturbed = perturb_expression(jaw_expr, 0.5, gen)
    assert torch.equal(perturbed[:, :3], jaw_expr[:, :3]) and perturbed[:, 3:].abs().sum() > 0
    exact = ChannelEstimate(global_pose=torch.zeros(2, 3), jaw=perturbed[:, :3], expression=perturbed[:, 3:])
    assert expression_matching_loss(exact, perturbed).item() == 0
    assert expression_matching_loss(exact, jaw_expr).item() > 0
    with pytest.raises(ValueError, match="expression coefficients"):
        expression_matching_loss(ChannelEstimate(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 2)), jaw_expr)
    moved = ChannelEstimate(global_pose=torch.ones(2, 3), jaw=exact.jaw, expression=exact.expression,
                            neck=torch.ones(2, 3))
    still = ChannelEstimate(global_pose=torch.zeros(2, 3), jaw=exact.jaw, expression=exact.expression,
                            neck=torch.zeros(2, 3))
    assert pose_consistency_loss(moved, still).item() == pytest.approx(2.0)
    assert pose_consistency_loss(still, still).item() == 0
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    a = torch.zeros(1, 3, 16, 16)
    inside = a.clone()
    inside[..., 5:11, 5:11] = 1  # a change inside the eye/mouth mask costs nothing
    assert masked_consistency_loss(inside, a, mask).item() == 0
    outside = a.clone()
    outside[..., 0, 0] = 1
    assert masked_consistency_loss(outside, a, mask).item() > 0
    assert latent_regularizer(torch.ones(1, 2, 4), torch.zeros(1, 3)).item() == 1.0


def _mapper_stage(clip, prepared, lpips, networks=FitNetworks(), **overrides):
    config = FitConfig().with_overrides({"mapper.loss_resolution": None, "mapper.lr": 5e-3, "mapper.batch_size": 4,
                                         **overrides})
    generator = copy.deepcopy(clip.subject.generator)
    with torch.no_grad():  # a trained generator's noise strengths are not zero (a random one's are)
        for layer in noise_layers(generator):
            layer.noise_strength.fill_(0.05)
    torch.manual_seed(0)
    model = PVPModel(MapperConfig(num_pivots=6, num_expressions=6), generator.num_ws, 32)
    with torch.no_grad():
        model.pivots.copy_(clip.subject.model.pivots)
    stage = MapperStage(generator, model, FrameRoll(False), prepared, clip.channels, np.arange(18), clip.layout, lpips,
                        networks,
                        config.mapper, config.mask, tune_generator=False, seed=0, device="cpu")
    return stage, generator, model


def test_mapper_training_lowers_held_out_error(clip, prepared, lpips):
    stage, generator, model = _mapper_stage(clip, prepared, lpips, **{"mapper.steps": 30})
    assert stage.active_losses() == ["mse", "lpips", "regularizer", "consistency"]
    held = np.arange(18, 24)
    truth = (prepared.images(held, "cpu") + 1) / 2

    def held_out_mse():
        return F.mse_loss(render_channels(generator, model, clip.channels[held], clip.layout, "cpu"), truth).item()

    untrained = held_out_mse()
    weights_before = [p.clone() for p in generator.synthesis.parameters()]
    for i in range(stage.total_steps):
        losses = stage.step(i)
    stage.finish()
    trained = held_out_mse()
    assert trained < 0.7 * untrained, (untrained, trained)
    assert losses["consistency"] >= 0
    # The generator's weights are frozen; only its constant noise maps were trained.
    assert all(torch.equal(a, b) for a, b in zip(weights_before, generator.synthesis.parameters()))
    assert not torch.equal(generator.synthesis.b8.conv1.noise_const,
                           clip.subject.generator.synthesis.b8.conv1.noise_const)
    assert not any(layer.noise_const.requires_grad for layer in noise_layers(generator))


@pytest.mark.parametrize("weight, network", [("identity", "identity"), ("expression", "estimator"),
                                             ("pose", "estimator")])
def test_network_losses_train_the_mappers_on_their_own(clip, prepared, lpips, weight, network):
    """With every other weight at zero, each network-based loss alone moves the mappers."""
    networks = FitNetworks(identity=TinyIdentity()) if network == "identity" else \
        FitNetworks(estimator=TinyEstimator(6))
    zero = {f"mapper.{k}_weight": 0.0 for k in ("mse", "lpips", "regularizer", "identity", "expression", "pose",
                                                 "consistency")}
    # Break the symmetry of the zero-initialised last layers so gradients reach every layer.
    overrides = {**zero, f"mapper.{weight}_weight": 1.0, "mapper.train_noise": False}
    stage, _, model = _mapper_stage(clip, prepared, lpips, networks, **overrides)
    with torch.no_grad():
        for mlp in [model.pose_mapper.mlp, *model.expression_mapper.layers]:
            mlp[2].weight.normal_(0, 0.05)
    before = [p.clone() for p in model.parameters()]
    losses = stage.step(0)
    assert weight in losses and losses[weight] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert set(stage.active_losses()) >= {weight}


def test_real_deca_file_drives_the_expression_and_pose_losses(clip, prepared, lpips, tmp_path):
    """DECA's encoder loaded from deca_model.tar (full size) in a mapper step: both losses move the mappers."""
    from pvp_runtime.fit.assets import load_networks

    from asset_builders import deca_checkpoint, one_torch_thread

    networks = load_networks(None, str(deca_checkpoint(tmp_path / "deca_model.tar")), None, None, "cpu")
    zero = {f"mapper.{k}_weight": 0.0 for k in ("mse", "lpips", "regularizer", "identity", "consistency")}
    stage, _, model = _mapper_stage(clip, prepared, lpips, networks, **zero, **{"mapper.expression_weight": 1.0,
                                    "mapper.pose_weight": 1.0, "mapper.train_noise": False, "mapper.batch_size": 2})
    assert stage.active_losses() == ["mse", "regularizer", "expression", "pose"]
    with torch.no_grad():  # break the symmetry of the zero-initialised last layers (see above)
        for mlp in [model.pose_mapper.mlp, *model.expression_mapper.layers]:
            mlp[2].weight.normal_(0, 0.05)
    before = [p.clone() for p in model.parameters()]
    with one_torch_thread():
        losses = stage.step(0)
    assert losses["expression"] > 0 and losses["pose"] > 0 and np.isfinite(losses["total"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_expressive_sampling_draws_the_moments_an_expression_shows_more_often(clip, prepared, lpips):
    from pvp_runtime.fit.scratch_prior import expressive_frame_weights

    layout = clip.layout
    channels = np.repeat(layout.defaults(1), 40, axis=0)
    expression = layout.slice("expression").start
    channels[30:34, expression + 1] = 2.5  # one short smile
    channels[:, layout.names.index("head_yaw")] = np.linspace(-0.5, 0.5, 40)  # pose does not count
    model = PVPModel(MapperConfig(num_pivots=3, num_expressions=layout.num_expressions, hidden=16), 4, 16)
    weights = expressive_frame_weights(model, channels, layout)
    assert weights.mean().item() == pytest.approx(2.0)
    assert weights[30:34].min() > 5 * weights[:30].max()
    assert torch.allclose(weights[:30], torch.ones(30))
    # The stage draws by those weights (all frames equal here: only the config differs).
    stage, _, _ = _scratch_stage(clip, prepared, lpips, "joint", frame_sampling="expressive")
    assert stage.frame_weights is not None and len(stage.frame_weights) == len(stage.train_frames)
    assert _scratch_stage(clip, prepared, lpips, "joint")[0].frame_weights is None


def test_unknown_frame_sampling_is_a_config_error():
    with pytest.raises(PVPError, match="scratch.frame_sampling"):
        FitConfig.from_dict({"scratch": {"frame_sampling": "sometimes"}})



def test_scratch_momentum_settings_reach_the_optimiser_and_survive_a_resume(clip, prepared, lpips):
    stage, _, _ = _scratch_stage(clip, prepared, lpips, "joint", beta1=0.5, mapper_beta1=0.9)
    betas = [tuple(group["betas"]) for group in stage.optimizer.param_groups]
    assert betas[2] == (0.9, 0.99) and all(b == (0.5, 0.99) for i, b in enumerate(betas) if i != 2)
    stage.step(0)
    tensors, meta = stage.state()
    resumed, _, _ = _scratch_stage(clip, prepared, lpips, "joint", beta1=0.5, mapper_beta1=0.9)
    resumed.load_state(tensors, meta)
    assert [tuple(group["betas"]) for group in resumed.optimizer.param_groups] == betas
    with pytest.raises(PVPError, match="scratch.mapper_beta1"):
        FitConfig.from_dict({"scratch": {"mapper_beta1": 1.0}})



def test_coarse_steps_train_at_half_resolution_and_leave_the_last_block_alone(clip, prepared, lpips, caplog):
    stage, generator, _ = _scratch_stage(clip, prepared, lpips, "joint", coarse_fraction=0.5)
    assert stage.coarse_steps == 9 and stage.coarse_resolution == 16
    last = copy.deepcopy(generator.synthesis.b32.state_dict())
    earlier = generator.synthesis.b16.conv1.weight.detach().clone()
    for index in range(9):
        assert np.isfinite(stage.step(index)["total"])
    assert all(torch.equal(value, generator.synthesis.b32.state_dict()[key]) for key, value in last.items())
    assert not torch.equal(earlier, generator.synthesis.b16.conv1.weight)
    with caplog.at_level("INFO"):
        stage.step(9)
    assert "coarse steps done" in caplog.text
    assert not torch.equal(last["conv1.weight"], generator.synthesis.b32.conv1.weight)
    assert _scratch_stage(clip, prepared, lpips, "joint")[0].coarse_steps == 0
    with pytest.raises(PVPError, match="scratch.coarse_fraction"):
        FitConfig.from_dict({"scratch": {"coarse_fraction": 1.0}})


def test_joint_scratch_prior_trains_the_pose_warp_with_the_mappers(clip, prepared, lpips):
    stage, _, model = _scratch_stage(clip, prepared, lpips, "joint", pose_warp_grid=4, pivot_weight=0.5)
    mapper_group = stage.optimizer.param_groups[2]["params"]
    assert all(any(p is q for q in mapper_group) for p in model.pose_warp.parameters())
    before = model.pose_warp.mlp[-1].weight.detach().clone()
    for index in range(3):
        assert np.isfinite(stage.step(index)["total"])
    assert not torch.equal(before, model.pose_warp.mlp[-1].weight)


def test_pose_curriculum_starts_near_the_usual_pose_and_widens_to_every_frame(clip, prepared, lpips):
    from pvp_runtime.fit.scratch_prior import curriculum_weights

    distances = torch.tensor([0.0, 1.0, 2.0, 3.0])
    first = curriculum_weights(distances, 0, 100, 0.5)
    later = curriculum_weights(distances, 40, 100, 0.5)
    assert torch.all(first[1:] < first[:-1]) and first[3] < 1e-3 * first[0]
    assert torch.all(later >= first) and later[3] > 0.4
    assert curriculum_weights(distances, 50, 100, 0.5) is None
    stage, _, _ = _scratch_stage(clip, prepared, lpips, "joint", pose_curriculum=0.5)
    assert stage.pose_distances is not None and len(stage.pose_distances) == len(stage.train_frames)
    assert np.isfinite(stage.step(0)["total"])
    assert _scratch_stage(clip, prepared, lpips, "joint")[0].pose_distances is None
    with pytest.raises(PVPError, match="scratch.pose_curriculum"):
        FitConfig.from_dict({"scratch": {"pose_curriculum": 1.0}})

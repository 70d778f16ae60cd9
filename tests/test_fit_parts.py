"""Checkpoints, the user's networks, the encoder path, metrics and the evaluation sheet."""


import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from pvp_runtime.contract.errors import PVPError
from pvp_runtime.fit.checkpoint import (CheckpointError, load_checkpoint, load_module, load_optimizer,
                                        module_tensors, optimizer_tensors, save_checkpoint)
from pvp_runtime.fit.evaluate import Evaluation, error_image, evaluation_sheet
from pvp_runtime.fit.lpips import LPIPS
from pvp_runtime.fit.metrics import frame_metrics, psnr, ssim
from pvp_runtime.fit.prepared import PreparedClip
from pvp_runtime.fit.projector import EncoderInversion
from pvp_runtime.fit.rng import step_generator
from pvp_runtime.fit.finite import FitDiverged
from pvp_runtime.fit.stage import InterruptGuard, LossHistory, TrainingStage, run_stage
from pvp_runtime.model.stylegan2 import Generator, tiny_config


def test_checkpoint_round_trip_restores_an_optimiser_exactly(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 4)).square().sum().backward()
        opt.step()
    tensors, meta = optimizer_tensors(opt, "opt")
    tensors.update(module_tensors(net, "net"))
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, tensors, {"stage": "x", "opt": meta})
    loaded, state = load_checkpoint(path)
    assert state["stage"] == "x" and not list(tmp_path.glob(".*partial"))
    twin = torch.nn.Linear(4, 3)
    twin_opt = torch.optim.Adam(twin.parameters(), lr=1e-2)
    load_module(twin, loaded, "net", "c")
    load_optimizer(twin_opt, loaded, state["opt"], "opt")
    x = torch.randn(5, 4)
    for model, optimizer in ((net, opt), (twin, twin_opt)):
        optimizer.zero_grad()
        model(x).square().sum().backward()
        optimizer.step()
    assert torch.equal(net.weight, twin.weight) and torch.equal(net.bias, twin.bias)


def test_an_optimiser_state_from_another_version_is_one_line_not_a_traceback():
    """A checkpoint written before a fit trained one more part (e.g. the matte head) has fewer
    parameter groups than the resumed fit's optimiser."""
    old_net, new_net, head = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3), torch.nn.Linear(3, 1)
    old_opt = torch.optim.Adam(old_net.parameters(), lr=1e-2)
    old_net(torch.randn(2, 4)).sum().backward()
    old_opt.step()
    tensors, meta = optimizer_tensors(old_opt, "opt")
    new_opt = torch.optim.Adam([{"params": new_net.parameters()}, {"params": head.parameters()}], lr=1e-2)
    with pytest.raises(CheckpointError, match="optimiser 'opt' does not match.*--overwrite") as error:
        load_optimizer(new_opt, tensors, meta, "opt")
    assert "\n" not in str(error.value)


def test_checkpoint_errors(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": torch.zeros(2)}, {"k": 1})
    good = path.read_bytes()
    path.write_bytes(good[:40])
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        load_checkpoint(path)
    from safetensors.torch import save_file
    save_file({"a": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a pvp fit checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="lacks tensor 'net.weight'"):
        load_module(torch.nn.Linear(2, 2), {"net.bias": torch.zeros(2)}, "net", "c")
    with pytest.raises(CheckpointError, match="has shape"):
        load_module(torch.nn.Linear(2, 2), {"net.bias": torch.zeros(3), "net.weight": torch.zeros(2, 2)}, "net", "c")


class GoesNaN(TrainingStage):
    """A stage whose loss (or, with ``poison_parameter``, only its parameter) turns NaN at step ``bad``."""

    name = "goes_nan"
    total_steps = 10

    def __init__(self, bad: int, poison_parameter: bool = False):
        self.bad, self.poison_parameter = bad, poison_parameter
        self.weight = torch.ones(3)

    def step(self, index: int) -> dict[str, float]:
        if index + 1 == self.bad:
            if self.poison_parameter:
                self.weight[1] = float("inf")
            else:
                return {"mse": 0.5, "lpips": float("nan")}
        return {"mse": 0.5, "lpips": 0.25}

    def state(self):
        return {"weight": self.weight.clone()}, {}


def _run_saving_checkpoints(stage: TrainingStage, path) -> list[int]:
    saved = []

    def save(step: int) -> None:
        tensors, _ = stage.state()
        save_checkpoint(path, tensors, {"step": step}, f"in stage {stage.name} at step {step}")
        saved.append(step)
    with InterruptGuard() as guard:
        run_stage(stage, 0, LossHistory(stage.total_steps), save, guard, every_steps=3, every_seconds=1e9)
    return saved


def test_a_stage_stops_at_its_first_non_finite_loss_and_keeps_the_last_finite_checkpoint(tmp_path):
    path = tmp_path / "c.safetensors"
    with pytest.raises(FitDiverged) as info:
        _run_saving_checkpoints(GoesNaN(bad=8), path)
    message = str(info.value)
    assert "stage goes_nan at step 8" in message and "loss 'lpips' is nan" in message and "\n" not in message
    assert load_checkpoint(path)[1] == {"step": 6}  # steps 1-7 were fine; 6 was the last checkpoint
    assert isinstance(info.value, PVPError)  # the CLI prints it on one line and exits non-zero


def test_a_non_finite_parameter_is_never_checkpointed(tmp_path):
    path = tmp_path / "c.safetensors"
    with pytest.raises(FitDiverged, match=r"stage goes_nan at step 9: tensor 'weight' holds NaN or infinite"):
        _run_saving_checkpoints(GoesNaN(bad=9, poison_parameter=True), path)  # its losses stay finite
    tensors, meta = load_checkpoint(path)
    assert meta == {"step": 6} and torch.equal(tensors["weight"], torch.ones(3))
    assert not list(tmp_path.glob(".*partial*"))


def test_step_generators_are_reproducible_and_distinct():
    a = torch.randn(4, generator=step_generator(1, "mapper", 7))
    assert torch.equal(a, torch.randn(4, generator=step_generator(1, "mapper", 7)))
    assert not torch.equal(a, torch.randn(4, generator=step_generator(1, "mapper", 8)))
    assert not torch.equal(a, torch.randn(4, generator=step_generator(1, "pti", 7)))
    assert not torch.equal(a, torch.randn(4, generator=step_generator(2, "mapper", 7)))


def test_loss_history_is_bounded():
    history = LossHistory(1000, points=10)
    for step in range(1, 1001):
        history.add(step, {"loss": float(step)})
    history.flush(1000)
    assert len(history.records) == 10 and history.records[0] == {"step": 100, "loss": 50.5}


# --------------------------------------------------------------------------- the user's networks

def test_real_arcface_and_e4e_files_plug_into_the_fit(tmp_path):
    """Small files in the released layouts, read by the loaders, drive the fit's interfaces."""
    from pvp_runtime.fit.assets import load_networks, load_prior
    from pvp_runtime.fit.encoders import IdentityEncoder, LatentEncoder
    from pvp_runtime.fit.losses import identity_loss
    from pvp_runtime.model.e4e import Encoder4Editing
    from pvp_runtime.model.irse import ArcFaceBackbone, IRSEConfig

    from asset_builders import rosinality_state_dict

    tiny = IRSEConfig(units=(1, 1, 1, 1), depths=(16, 32, 48, 64))
    torch.manual_seed(0)
    arcface = tmp_path / "model_ir_se50.pth"
    torch.save(ArcFaceBackbone(tiny, input_size=112).eval().state_dict(), arcface)
    decoder = Generator(tiny_config(32, width=64)).eval()
    encoder = Encoder4Editing(decoder.num_ws, tiny, input_size=64).eval()
    e4e = tmp_path / "e4e_ffhq_encode.pt"
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in rosinality_state_dict(decoder).items()})
    torch.save({"state_dict": state, "latent_avg": decoder.mapping.w_avg.repeat(decoder.num_ws, 1),
                "opts": {"stylegan_size": 32, "start_from_latent_avg": True}}, e4e)

    prior = load_prior(None, str(e4e), "cpu")  # no --generator: the e4e decoder is the prior
    assert prior.config == decoder.config
    networks = load_networks(str(arcface), None, str(e4e), prior, "cpu")
    assert isinstance(networks.identity, IdentityEncoder) and isinstance(networks.latent_encoder, LatentEncoder)
    assert networks.describe() == {"identity": "ArcFace IR-SE (model_ir_se50.pth)", "channel_estimator": None,
                                   "latent_encoder": "e4e (e4e_ffhq_encode.pt)"}
    frames = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    clip = PreparedClip(frames=frames, transforms=np.zeros((3, 2, 3)), landmarks=None, mattes=None)
    ws = EncoderInversion(networks.latent_encoder, prior)(clip, np.array([2, 0]), "cpu")
    assert ws.shape == (2, prior.num_ws, 64) and not torch.equal(ws[0], ws[1])
    render = prior.synthesis(ws[:1]).requires_grad_(True)
    loss = identity_loss(networks.identity, render, clip.images([2], "cpu"))
    loss.backward()
    assert 0 < loss.item() <= 2 and render.grad.abs().sum() > 0
    with pytest.raises(PVPError, match="model_ir_se50.pth: not a DECA checkpoint"):
        load_networks(None, str(arcface), None, prior, "cpu")
    with pytest.raises(PVPError, match="--arcface .*missing.pth: file not found"):
        load_networks(str(tmp_path / "missing.pth"), None, None, prior, "cpu")
    with pytest.raises(PVPError, match="W\\+"):
        load_networks(None, None, str(e4e), Generator(tiny_config(32, 16)), "cpu")


def test_encoder_inversion_uses_the_encoder_and_checks_its_shape():
    torch.manual_seed(0)
    generator = Generator(tiny_config(16, 8))
    frames = np.random.default_rng(0).integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)
    clip = PreparedClip(frames=frames, transforms=np.zeros((5, 2, 3)), landmarks=None, mattes=None)

    class MeanColourEncoder(torch.nn.Module):
        """A stand-in e4e: W+ from the image's mean colour (deterministic, input-dependent)."""
        name = "mean-colour"

        def forward(self, images):
            return images.mean(dim=(2, 3))[:, None, :1].repeat(1, generator.num_ws, generator.config.w_dim)

    ws = EncoderInversion(MeanColourEncoder(), generator)(clip, np.array([4, 1, 2]), "cpu", batch_size=2)
    expected = torch.from_numpy(frames[[4, 1, 2]]).float().div(127.5).sub(1).mean(dim=(1, 2))[:, 0]
    assert ws.shape == (3, generator.num_ws, 8) and torch.allclose(ws[:, 0, 0], expected, atol=1e-5)

    class WrongEncoder(MeanColourEncoder):
        name = "wrong"

        def forward(self, images):
            return torch.zeros(len(images), 18, 512)

    with pytest.raises(PVPError, match=r"wrong returned W\+ of shape \[2, 18, 512\]"):
        EncoderInversion(WrongEncoder(), generator)(clip, np.array([0, 1]), "cpu")


# --------------------------------------------------------------------------- metrics

def test_psnr_and_ssim_against_references():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (2, 40, 40, 3))
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    ta, tb = (torch.from_numpy(x).permute(0, 3, 1, 2).float() for x in (a, b))
    mse = ((ta.double() - tb.double()) ** 2).mean(dim=(1, 2, 3))
    assert torch.allclose(psnr(ta, tb).double(), 10 * torch.log10(1 / mse), atol=1e-4)
    assert torch.isinf(psnr(ta, ta)).all()
    reference = [structural_similarity(a[i].astype(np.float32), b[i].astype(np.float32), channel_axis=2,
                                       data_range=1.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False) for i in range(2)]
    assert np.allclose(ssim(ta, tb).numpy(), reference, atol=1e-5)
    assert torch.allclose(ssim(ta, ta), torch.ones(2))


def test_masked_metrics_ignore_the_background():
    lpips = LPIPS("alex")
    truth = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    render = truth.clone()
    render[..., :, :8] = 0  # wrong only in the background
    matte = torch.ones(1, 1, 32, 32)
    matte[..., :, :8] = 0
    masked = frame_metrics(render, truth, lpips, matte)
    full = frame_metrics(render, truth, lpips)
    assert torch.isinf(masked["psnr"]).all() and masked["ssim"].item() == pytest.approx(1.0, abs=1e-6)
    assert masked["lpips"].item() == pytest.approx(0, abs=1e-6)
    assert full["psnr"].item() < 30 and full["lpips"].item() > 0


def test_evaluation_sheet_layout():
    truth = np.zeros((5, 16, 16, 3), np.uint8)
    renders = np.full((5, 16, 16, 3), 10, np.uint8)
    evaluation = Evaluation(frames=np.arange(5), per_frame={}, masked=False, lpips={}, renders=renders,
                            truth=truth, baseline_sources={})
    sheet = evaluation_sheet(evaluation, rows=3)
    assert sheet.shape == (3 * 16, 3 * 16, 4)
    assert (sheet[:16, :16, :3] == 0).all() and (sheet[:16, 16:32, :3] == 10).all()
    assert not np.array_equal(sheet[:16, 32:, :3], error_image(truth[0], truth[0]))  # an error of 10 shows
    assert (error_image(truth[0], truth[0]) == error_image(truth[1], truth[1])).all()


def test_real_deca_file_plugs_into_the_fit(tmp_path):
    """deca_model.tar (full-size E_flame) through `pvp fit`'s loader: named, differentiable, its losses backpropagate."""
    from pvp_runtime.fit.assets import load_networks
    from pvp_runtime.fit.encoders import ChannelEstimator
    from pvp_runtime.fit.losses import expression_matching_loss, perturb_expression, pose_consistency_loss

    from asset_builders import deca_checkpoint, one_torch_thread

    deca = deca_checkpoint(tmp_path / "deca_model.tar")
    prior = Generator(tiny_config(32, 16)).eval()
    with one_torch_thread():
        networks = load_networks(None, str(deca), None, prior, "cpu")
        assert isinstance(networks.estimator, ChannelEstimator)
        assert networks.describe() == {"identity": None, "latent_encoder": None,
                                       "channel_estimator": "DECA coarse encoder ResNet-50 (deca_model.tar)"}
        with torch.no_grad():
            render = prior(torch.randn(2, 16, generator=torch.Generator().manual_seed(0)))
        render.requires_grad_(True)
        jaw_expression = perturb_expression(torch.zeros(2, 3 + 6), 0.5, torch.Generator().manual_seed(1))
        estimate = networks.estimator(render)
        assert estimate.expression.shape == (2, 50) and estimate.jaw.shape == estimate.global_pose.shape == (2, 3)
        with torch.no_grad():
            reference = networks.estimator(render.flip(0))
        loss = expression_matching_loss(estimate, jaw_expression) + pose_consistency_loss(estimate, reference)
        loss.backward()
    assert loss.item() > 0 and render.grad.abs().sum() > 0

"""ArcFace IR-SE50 and e4e: real key layouts, loaders, and what `pvp fit` calls."""

import pytest
import torch

from pvp_runtime.contract.errors import AssetError
from pvp_runtime.loaders.arcface import ArcFaceEncoder, load_arcface, load_identity_encoder
from pvp_runtime.loaders.e4e import load_e4e, load_latent_encoder
from pvp_runtime.model.e4e import Encoder4Editing
from pvp_runtime.model.irse import ArcFaceBackbone, IRSEConfig
from pvp_runtime.model.stylegan2 import Generator, tiny_config

from asset_builders import one_torch_thread, rosinality_state_dict

TINY = IRSEConfig(units=(1, 2, 1, 1), depths=(16, 32, 48, 64))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


def randomized(module):
    """Non-trivial BatchNorm statistics and PReLU slopes, so a swapped tensor changes the output."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand_like(tensor) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                tensor.copy_(0.1 * torch.randn_like(tensor))
            elif tensor.ndim == 1 and tensor.is_floating_point():
                tensor.copy_(1 + 0.1 * torch.randn_like(tensor))
    return module.eval()


def test_ir_se50_has_the_released_key_layout():
    model = ArcFaceBackbone().eval()
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    # Facts of InsightFace_Pytorch's Backbone(50, 0.6, 'ir_se') (model_ir_se50.pth).
    assert shapes["input_layer.0.weight"] == (64, 3, 3, 3) and shapes["input_layer.2.weight"] == (64,)
    assert "body.0.shortcut_layer.0.weight" not in shapes  # 64 -> 64: identity shortcut
    assert shapes["body.3.shortcut_layer.0.weight"] == (128, 64, 1, 1)
    assert shapes["body.7.shortcut_layer.1.running_var"] == (256,)
    assert shapes["body.21.shortcut_layer.0.weight"] == (512, 256, 1, 1)
    assert shapes["body.23.res_layer.5.fc1.weight"] == (32, 512, 1, 1)
    assert shapes["body.23.res_layer.3.weight"] == (512, 512, 3, 3)
    assert shapes["output_layer.3.weight"] == (512, 512 * 7 * 7) and shapes["output_layer.4.running_var"] == (512,)
    assert "body.24.res_layer.1.weight" not in shapes
    assert sum(p.numel() for p in model.parameters()) == 43_797_696
    with torch.no_grad():
        embedding = model(torch.randn(1, 3, 112, 112))
    assert embedding.shape == (1, 512) and torch.allclose(embedding.norm(dim=1), torch.ones(1))


@pytest.mark.parametrize("legacy", [False, True])
def test_arcface_file_loads_into_an_identity_encoder(tmp_path, legacy):
    source = randomized(ArcFaceBackbone(TINY, input_size=112))
    path = tmp_path / "model_ir_se50.pth"
    torch.save(source.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    encoder = load_identity_encoder(path)
    assert encoder.network.config == TINY and encoder.network.input_size == 112
    images = torch.rand(2, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        # e4e / PTI: crop [35:223, 32:220] of a 256 image, average-pool to 112, embed.
        expected = source(torch.nn.functional.adaptive_avg_pool2d(images[:, :, 35:223, 32:220], (112, 112)))
        embeddings = encoder(images)
    assert torch.allclose(embeddings, expected, atol=1e-6)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(2), atol=1e-5)
    assert encoder.train().network.training is False  # BatchNorm statistics stay frozen
    same = encoder.similarity(images, images)
    assert torch.allclose(same, torch.ones(2), atol=1e-5)


def test_fit_entry_point_is_differentiable_and_named(tmp_path):
    path = tmp_path / "model_ir_se50.pth"
    torch.save(randomized(ArcFaceBackbone(TINY)).state_dict(), path)
    encoder = load_identity_encoder(path, "cpu")
    assert encoder.name.startswith("ArcFace IR-SE") and "model_ir_se50.pth" in encoder.name
    images = (torch.rand(1, 3, 128, 128) * 2 - 1).requires_grad_(True)
    (1 - encoder(images).sum(dim=1)).sum().backward()  # the identity loss backpropagates to the pixels
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in encoder.parameters())


def test_arcface_wrong_kind_shapes_and_truncation(tmp_path):
    state = randomized(ArcFaceBackbone(TINY)).state_dict()
    path = tmp_path / "arc.pth"
    bad = dict(state)
    bad["output_layer.3.weight"] = bad["output_layer.3.weight"][:, :100]
    torch.save(bad, path)
    with pytest.raises(AssetError, match="output_layer.3.weight"):
        load_arcface(path)
    bad = dict(state)
    bad["body.1.res_layer.2.weight"] = torch.ones(7)
    torch.save(bad, path)
    with pytest.raises(AssetError, match=r"'body.1.res_layer.2.weight' .* shape \[7\], expected \[32\]"):
        load_arcface(path)
    bad = {k: v for k, v in state.items() if k != "body.2.res_layer.4.running_mean"}
    torch.save(bad, path)
    with pytest.raises(AssetError, match="lacks tensor 'body.2.res_layer.4.running_mean'"):
        load_arcface(path)
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(AssetError, match="not an ArcFace"):
        load_arcface(path)
    torch.save(state, path)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(AssetError, match="truncated|corrupt"):
        load_arcface(cut)
    with pytest.raises(ValueError):
        ArcFaceEncoder(load_arcface(path), crop=(0.5, 0.2, 0, 1))


# --------------------------------------------------------------------------- e4e

def tiny_e4e_checkpoint(path, num_ws_override=None):
    decoder = Generator(tiny_config(64, width=64)).eval()  # 10 W+ layers: coarse, middle and fine levels
    with torch.no_grad():
        decoder.mapping.w_avg.normal_()
    encoder = randomized(Encoder4Editing(decoder.num_ws, TINY, input_size=64))
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in rosinality_state_dict(decoder).items()})
    latent_avg = decoder.mapping.w_avg.repeat(decoder.num_ws, 1)  # e4e stores it per W+ layer
    torch.save({"state_dict": state, "latent_avg": latent_avg,
                "opts": {"stylegan_size": num_ws_override or 64, "encoder_type": "Encoder4Editing",
                         "start_from_latent_avg": True}}, path)
    return encoder, decoder


def test_e4e_checkpoint_gives_an_inverter_and_its_generator(tmp_path):
    path = tmp_path / "e4e_ffhq_encode.pt"
    encoder, decoder = tiny_e4e_checkpoint(path)
    e4e = load_e4e(path)
    assert e4e.provenance["kind"] == "e4e" and e4e.generator.config.resolution == 64
    assert torch.equal(e4e.generator.mapping.w_avg, decoder.mapping.w_avg)
    assert e4e.inverter.network.input_size == 64 and e4e.inverter.network.config == TINY
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = encoder(images) + decoder.mapping.w_avg
        codes = e4e.inverter(images)
        assert torch.allclose(codes, expected, atol=1e-6)
        assert codes.shape == (2, 10, 64)
        # Later W+ layers differ from layer 0: every pyramid level contributes.
        assert not torch.allclose(codes[:, 8], codes[:, 0])
        # Other input sizes are resized to the encoder's.
        assert e4e.inverter(torch.rand(1, 3, 96, 96) * 2 - 1).shape == (1, 10, 64)
        assert e4e.generator.synthesis(codes).shape == (2, 3, 64, 64)


def test_latent_encoder_entry_point_checks_the_prior(tmp_path, caplog):
    path = tmp_path / "e4e.pt"
    _, decoder = tiny_e4e_checkpoint(path)
    with caplog.at_level("WARNING"):
        inverter = load_latent_encoder(path, decoder, "cpu")
    assert "not the prior generator" not in caplog.text and inverter.name.startswith("e4e 64px")
    other = Generator(tiny_config(64, width=64))
    with caplog.at_level("WARNING"):
        load_latent_encoder(path, other, "cpu")
    assert "not the prior generator" in caplog.text
    with pytest.raises(AssetError, match=r"W\+ \[10, 64\] .* the prior takes \[8, 32\]"):
        load_latent_encoder(path, Generator(tiny_config(32, width=32)), "cpu")


def test_e4e_errors(tmp_path):
    path = tmp_path / "e4e.pt"
    tiny_e4e_checkpoint(path, num_ws_override=1024)
    with pytest.raises(AssetError, match="stylegan_size 1024, but the encoder predicts 10"):
        load_e4e(path)
    torch.save({"state_dict": {"decoder.style.1.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(AssetError, match="no e4e encoder tensors"):
        load_e4e(path)
    arcface = tmp_path / "model_ir_se50.pth"
    torch.save(ArcFaceBackbone(TINY).state_dict(), arcface)
    with pytest.raises(AssetError, match="not an e4e checkpoint"):
        load_e4e(arcface)

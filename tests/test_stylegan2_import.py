"""StyleGAN2 checkpoints in their real layouts -> our Generator, and the prior file `pvp fit` takes."""

import json

import pytest
import torch
from safetensors.torch import save_file

from pvp_runtime.cli.main import main
from pvp_runtime.contract.errors import AssetError
from pvp_runtime.formats.safe_pickle import PersistentObject
from pvp_runtime.loaders.generator_file import (
    load_any_generator, load_generator_file, read_generator_metadata, save_generator_file)
from pvp_runtime.loaders.stylegan2_nvlabs import load_nvlabs_generator
from pvp_runtime.loaders.stylegan2_rosinality import load_rosinality_generator
from pvp_runtime.loaders.torch_files import read_torch_file
from pvp_runtime.model.stylegan2 import Generator, GeneratorConfig, tiny_config

from asset_builders import (EasyDict, one_torch_thread, nvlabs_init_kwargs, nvlabs_network, nvlabs_pickle, rosinality_state_dict,
                            stand_in_modules, _reconstruct_persistent_obj)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


def random_generator(config: GeneratorConfig, seed: int = 0) -> Generator:
    """Random weights everywhere, biases and noise strengths included, so a swapped tensor shows."""
    torch.manual_seed(seed)
    generator = Generator(config).eval()
    with torch.no_grad():
        for name, tensor in generator.state_dict().items():
            if name.endswith(("bias", "noise_strength", "w_avg")):
                tensor.copy_(0.3 * torch.randn_like(tensor) + (1.0 if "affine" in name else 0.0))
    return generator


@pytest.fixture(scope="module")
def source():
    # Channel widths vary with resolution (32, 32, 32, 16), as in config-f at 512+.
    return random_generator(GeneratorConfig(resolution=32, z_dim=16, w_dim=16, channel_base=512, channel_max=32,
                                            conv_clamp=256.0))


def assert_same_generator(loaded: Generator, source: Generator):
    assert loaded.config == source.config
    expected = source.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    ws = torch.randn(2, source.num_ws, source.config.w_dim)
    with torch.no_grad():
        assert torch.equal(loaded.synthesis(ws), source.synthesis(ws))


# --------------------------------------------------------------------------- NVlabs

def test_nvlabs_pickle_maps_every_tensor(tmp_path, source):
    path = tmp_path / "network-snapshot.pkl"
    nvlabs_pickle(path, source)
    generator, notes = load_nvlabs_generator(path)
    assert_same_generator(generator, source)
    assert generator.config.conv_clamp == 256.0 and notes["num_fp16_res"] == 4


def test_nvlabs_embedded_source_is_never_executed(tmp_path, source):
    marker = tmp_path / "pwned"
    module_src = f"open({str(marker)!r}, 'w').write('the pickle ran its code')\n"
    path = tmp_path / "ffhq.pkl"
    nvlabs_pickle(path, source, module_src=module_src)
    data = read_torch_file(path)
    assert isinstance(data["G_ema"], PersistentObject) and data["G_ema"].module_src == module_src
    load_nvlabs_generator(path)
    assert not marker.exists()


def test_pti_torch_save_of_a_persistent_generator(tmp_path, source):
    # PTI writes its tuned generator with torch.save(G): the zip container around a persistent object.
    path = tmp_path / "model_pti.pt"
    network = nvlabs_network(source, nvlabs_init_kwargs(source))
    with stand_in_modules(torch_utils__persistence={"_reconstruct_persistent_obj": _reconstruct_persistent_obj},
                          dnnlib__util={"EasyDict": EasyDict}):
        torch.save(network, path)
    generator, provenance = load_any_generator(path)
    assert provenance["kind"] == "nvlabs"
    assert_same_generator(generator, source)


@pytest.mark.parametrize("change, message", [
    (dict(c_dim=10), "conditional"),
    (dict(synthesis_kwargs=EasyDict(architecture="resnet")), "architecture 'resnet'"),
    (dict(synthesis_kwargs=EasyDict(channel_max=64, channel_base=512)), "has shape"),
    (dict(img_resolution=64), "lacks tensor"),
])
def test_nvlabs_unsupported_or_inconsistent_networks(tmp_path, source, change, message):
    kwargs = nvlabs_init_kwargs(source)
    if "synthesis_kwargs" in change:
        kwargs["synthesis_kwargs"] = EasyDict({**kwargs["synthesis_kwargs"], **change.pop("synthesis_kwargs")})
    kwargs.update(change)
    path = tmp_path / "odd.pkl"
    nvlabs_pickle(path, source, init_kwargs=kwargs)
    with pytest.raises(AssetError, match=message) as error:
        load_nvlabs_generator(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_nvlabs_wrong_kind_filter_and_truncation(tmp_path, source):
    path = tmp_path / "no_gema.pkl"
    nvlabs_pickle(path, source, drop=("G_ema",))
    with pytest.raises(AssetError, match="no StyleGAN2-ADA network 'G_ema'"):
        load_nvlabs_generator(path)
    path = tmp_path / "filter.pkl"
    nvlabs_pickle(path, source, filter_value=torch.full((4, 4), 1 / 16))
    with pytest.raises(AssetError, match="resample filter"):
        load_nvlabs_generator(path)
    good = tmp_path / "good.pkl"
    nvlabs_pickle(good, source)
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(good.read_bytes()[:-1000])
    with pytest.raises(AssetError, match="truncated|corrupt"):
        load_nvlabs_generator(cut)
    rosinality = tmp_path / "r.pt"
    torch.save({"g_ema": rosinality_state_dict(source)}, rosinality)
    with pytest.raises(AssetError, match="no StyleGAN2-ADA network"):
        load_nvlabs_generator(rosinality)


# --------------------------------------------------------------------------- rosinality / e4e

def test_rosinality_checkpoint_maps_every_tensor(tmp_path, source):
    path = tmp_path / "550000.pt"
    torch.save({"g_ema": rosinality_state_dict(source), "latent_avg": source.mapping.w_avg.clone()}, path)
    generator, notes = load_rosinality_generator(path)
    assert notes["kind"] == "rosinality"
    # rosinality has no conv_clamp; everything else must survive exactly.
    assert generator.config == GeneratorConfig(**{**source.config.to_dict(), "conv_clamp": None})
    expected = source.state_dict()
    for name, tensor in generator.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_rosinality_layout_facts(tmp_path):
    # Spot checks written from rosinality's model.py, independent of the key table:
    # convs.0 is the 8x8 upsampling conv, noises.noise_1 its noise, to_rgbs.0 the 8x8 ToRGB.
    config = tiny_config(16, width=8)
    state = rosinality_state_dict(random_generator(config))
    state["convs.0.conv.weight"] = torch.full_like(state["convs.0.conv.weight"], 2.0)
    state["noises.noise_1"] = torch.full_like(state["noises.noise_1"], 3.0)
    state["to_rgbs.0.bias"] = torch.full_like(state["to_rgbs.0.bias"], 4.0)
    state["style.1.weight"] = torch.full_like(state["style.1.weight"], 5.0)
    path = tmp_path / "r.pt"
    torch.save({"g_ema": state, "latent_avg": torch.ones(8)}, path)
    g, _ = load_rosinality_generator(path)
    assert (g.synthesis.b8.conv0.weight == 2).all() and (g.synthesis.b8.conv0.noise_const == 3).all()
    assert (g.synthesis.b8.torgb.bias == 4).all() and (g.mapping.fc0.weight == 5).all()
    assert (g.mapping.w_avg == 1).all()


def test_rosinality_without_latent_avg_or_noise(tmp_path, source):
    state = {k: v for k, v in rosinality_state_dict(source).items() if not k.startswith("noises.")}
    path = tmp_path / "train.pt"
    torch.save({"g_ema": state, "g": state, "args": {"size": 32}}, path)
    generator, notes = load_rosinality_generator(path)
    assert "w_avg" in notes and "noise" in notes
    reference = random_generator(source.config)
    reference.estimate_w_avg(samples=10000, seed=0)
    assert torch.allclose(generator.mapping.w_avg, reference.mapping.w_avg, atol=1e-5)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update({"convs.1.conv.weight": s["convs.1.conv.weight"][:, :, :4]}), "has shape"),
    (lambda s: s.update({"extra.weight": torch.zeros(1)}), "unexpected tensor 'extra.weight'"),
    (lambda s: s.pop("to_rgbs.0.conv.modulation.bias"), "lacks tensor 'to_rgbs.0.conv.modulation.bias'"),
    (lambda s: s.update({"convs.0.conv.blur.kernel": torch.ones(4, 4)}), "resample filter"),
    (lambda s: s.update({"input.input": s["input.input"].repeat(2, 1, 1, 1)}), "leading dimension of 1"),
])
def test_rosinality_wrong_shapes(tmp_path, source, edit, message):
    state = rosinality_state_dict(source)
    edit(state)
    path = tmp_path / "bad.pt"
    torch.save({"g_ema": state, "latent_avg": torch.zeros(16)}, path)
    with pytest.raises(AssetError, match=message):
        load_rosinality_generator(path)


def test_e4e_decoder_and_kind_detection(tmp_path, source):
    state = {f"decoder.{k}": v for k, v in rosinality_state_dict(source).items()}
    state["encoder.input_layer.0.weight"] = torch.zeros(4, 3, 3, 3)
    path = tmp_path / "e4e_ffhq_encode.pt"
    torch.save({"state_dict": state, "latent_avg": source.mapping.w_avg.clone(), "opts": {"stylegan_size": 32}}, path)
    generator, provenance = load_any_generator(path)
    assert provenance["kind"] == "e4e" and len(provenance["source_sha256"]) == 64
    assert torch.equal(generator.mapping.w_avg, source.mapping.w_avg)
    other = tmp_path / "other.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, other)
    with pytest.raises(AssetError, match="not a StyleGAN2 checkpoint"):
        load_any_generator(other)


# --------------------------------------------------------------------------- our prior file and the CLI

def test_generator_file_round_trip_and_errors(tmp_path, source):
    path = tmp_path / "prior.safetensors"
    save_generator_file(source, path, {"source": "unit test"})
    assert_same_generator(load_generator_file(path), source)
    assert read_generator_metadata(path)["provenance"]["source"] == "unit test"
    generator, provenance = load_any_generator(path)
    assert provenance["kind"] == "pvp"

    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(AssetError, match="truncated"):
        load_generator_file(cut)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(AssetError, match="not a PVP generator file"):
        load_generator_file(foreign)
    newer = tmp_path / "newer.safetensors"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(newer), metadata={"format": "pvp-stylegan2-generator", "format_version": "99",
                                           "config": json.dumps(source.config.to_dict())})
    with pytest.raises(AssetError, match="newer"):
        load_generator_file(newer)


def test_import_generator_command(tmp_path, source, capsys):
    pkl = tmp_path / "ffhq.pkl"
    nvlabs_pickle(pkl, source)
    out = tmp_path / "prior.safetensors"
    assert main(["import-generator", str(pkl), "-o", str(out)]) == 0
    assert "32x32" in capsys.readouterr().out
    assert_same_generator(load_generator_file(out), source)
    before = out.read_bytes()
    assert main(["import-generator", str(pkl), "-o", str(out)]) == 2  # never overwrite silently
    assert "already exists" in capsys.readouterr().err
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pkl.read_bytes()[:5000])
    assert main(["import-generator", str(bad), "-o", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pvp: error:") and str(bad) in err and "\n" not in err
    assert out.read_bytes() == before  # a failed import leaves the good file alone
    assert not list(tmp_path.glob("*.partial"))

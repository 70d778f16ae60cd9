import pytest
import torch

from pvp_runtime.model.stylegan2 import (
    CONFIG_F_1024, CONFIG_F_256, Generator, GeneratorConfig, SynthesisLayer, ToRGB, synthesis_macs, tiny_config,
    upsample_2x)


def _lowpass_filter():
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = torch.outer(taps, taps)
    return kernel / kernel.sum()


@pytest.mark.parametrize("resolution, num_ws", [(8, 4), (64, 10), (256, 14), (512, 16), (1024, 18)])
def test_num_ws(resolution, num_ws):
    assert GeneratorConfig(resolution=resolution).num_ws == num_ws


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_tiny_generator_consumes_every_w(resolution):
    config = tiny_config(resolution, width=16)
    gen = Generator(config).eval()
    ws = torch.randn(2, config.num_ws, config.w_dim)
    img = gen.synthesis(ws)
    assert img.shape == (2, 3, resolution, resolution)
    # Every W+ layer must matter: perturbing any one changes the image.
    for layer in range(config.num_ws):
        changed = ws.clone()
        changed[:, layer] += 1.0
        assert not torch.equal(gen.synthesis(changed), img), f"W+ layer {layer} is ignored"
    with pytest.raises(ValueError, match="expected W"):
        gen.synthesis(ws[:, :-1])


@pytest.mark.parametrize("bad", [0, 100, 4, 4096, "256"])
def test_config_rejects_bad_resolution(bad):
    with pytest.raises(ValueError):
        GeneratorConfig(resolution=bad)


def test_channel_widths_follow_config_f():
    assert [CONFIG_F_1024.channels(r) for r in CONFIG_F_1024.block_resolutions] == \
        [512, 512, 512, 512, 512, 256, 128, 64, 32]


def test_official_parameter_names_and_counts():
    gen = Generator(CONFIG_F_256)
    names = dict(gen.named_parameters())
    for key in ("mapping.fc0.weight", "mapping.fc7.bias", "synthesis.b4.const", "synthesis.b4.conv1.affine.weight",
                "synthesis.b8.conv0.weight", "synthesis.b256.torgb.bias", "synthesis.b64.conv1.noise_strength"):
        assert key in names
    assert "mapping.w_avg" in gen.state_dict() and "synthesis.b32.conv0.noise_const" in gen.state_dict()
    synthesis = sum(p.numel() for p in gen.synthesis.parameters())
    assert synthesis == pytest.approx(27.9e6, rel=0.01)  # NVlabs config-f at 256: 27.9 M
    assert synthesis_macs(CONFIG_F_256) == pytest.approx(45.1e9, rel=0.02)
    assert synthesis_macs(CONFIG_F_1024) == pytest.approx(74.3e9, rel=0.02)


def test_same_w_gives_bit_identical_images(tiny_generator_config):
    torch.manual_seed(0)
    gen = Generator(tiny_generator_config).eval()
    ws = torch.randn(3, tiny_generator_config.num_ws, tiny_generator_config.w_dim)
    with torch.inference_mode():
        first = gen.synthesis(ws, noise_mode="const")
        second = gen.synthesis(ws.clone(), noise_mode="const")
        random_noise = gen.synthesis(ws, noise_mode="random")
    assert torch.equal(first, second)
    assert torch.isfinite(random_noise).all()


def test_constant_noise_is_used():
    config = tiny_config(16, 8)
    gen = Generator(config).eval()
    ws = torch.randn(1, config.num_ws, config.w_dim)
    with torch.no_grad():
        gen.synthesis.b16.conv1.noise_strength.fill_(1.0)
        before = gen.synthesis(ws, noise_mode="const")
        gen.synthesis.b16.conv1.noise_const.mul_(-1)
        after = gen.synthesis(ws, noise_mode="const")
        none = gen.synthesis(ws, noise_mode="none")
    assert not torch.equal(before, after) and not torch.equal(before, none)


def _reference_modulated_conv(x, layer, w):
    """Per-sample convolution written the textbook way: scale the kernel, demodulate, zero-stuff, convolve."""
    out = []
    for i in range(x.shape[0]):
        style = layer.affine(w[i:i + 1])[0]
        weight = layer.weight * style[None, :, None, None]
        weight = weight / (weight.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        xi = x[i:i + 1]
        if layer.up:
            # Transposed conv == zero insertion + full-padded conv with the flipped kernel.
            n, c, h, wd = xi.shape
            stuffed = xi.new_zeros(n, c, 2 * h - 1, 2 * wd - 1)
            stuffed[:, :, ::2, ::2] = xi
            y = torch.nn.functional.conv2d(torch.nn.functional.pad(stuffed, (2, 2, 2, 2)), weight.flip([2, 3]))
            kernel = _lowpass_filter() * 4
            y = torch.nn.functional.conv2d(torch.nn.functional.pad(y, (1, 1, 1, 1)),
                                           kernel[None, None].repeat(y.shape[1], 1, 1, 1), groups=y.shape[1])
        else:
            y = torch.nn.functional.conv2d(xi, weight, padding=1)
        out.append(y)
    return torch.cat(out)


@pytest.mark.parametrize("batch", [1, 3])  # one frame folds style and demodulation into the weights
@pytest.mark.parametrize("up", [False, True])
def test_modulated_conv_matches_textbook_form(up, batch):
    torch.manual_seed(0)
    layer = SynthesisLayer(6, 5, w_dim=7, resolution=16, up=up)
    x = torch.randn(batch, 6, 8 if up else 16, 8 if up else 16)
    w = torch.randn(batch, 7)
    with torch.no_grad():
        ours = layer(x, w, noise_mode="none")
        reference = _reference_modulated_conv(x, layer, w) + layer.bias[None, :, None, None]
        reference = torch.nn.functional.leaky_relu(reference, 0.2) * 2 ** 0.5
    assert torch.allclose(ours, reference, atol=1e-5)


def test_upsample_matches_zero_insertion_and_filter():
    x = torch.randn(2, 3, 7, 5)
    stuffed = x.new_zeros(2, 3, 14, 10)
    stuffed[:, :, ::2, ::2] = x
    kernel = (_lowpass_filter() * 4)[None, None].repeat(3, 1, 1, 1)
    reference = torch.nn.functional.conv2d(torch.nn.functional.pad(stuffed, (2, 1, 2, 1)), kernel, groups=3)
    assert torch.allclose(upsample_2x(x), reference, atol=1e-6)


def test_mapping_truncation_and_w_avg():
    config = tiny_config(16, 8)
    gen = Generator(config)
    gen.estimate_w_avg(samples=500)
    z = torch.randn(4, config.z_dim)
    with torch.no_grad():
        full = gen.mapping(z)
        psi0 = gen.mapping(z, truncation_psi=0.0)
        cut = gen.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    assert full.shape == (4, config.num_ws, config.w_dim)
    assert torch.allclose(psi0, gen.mapping.w_avg.expand_as(psi0))
    assert torch.allclose(cut[:, 2:], full[:, 2:]) and not torch.allclose(cut[:, :2], full[:, :2])


def test_to_rgb_matches_textbook_form():
    torch.manual_seed(0)
    layer = ToRGB(6, w_dim=7, img_channels=3, conv_clamp=0.5)
    x, w = torch.randn(2, 6, 5, 5), torch.randn(2, 7)
    styles = layer.affine(w) * layer.weight_gain
    reference = torch.cat([torch.nn.functional.conv2d(x[i:i + 1] * styles[i][None, :, None, None], layer.weight)
                           for i in range(2)]) + layer.bias[None, :, None, None]
    assert torch.allclose(layer(x, w), reference.clamp(-0.5, 0.5), atol=1e-6)


@pytest.mark.parametrize("batch", [1, 3])
def test_tuning_path_gives_the_inference_result_and_gradients(batch):
    # Training keeps every step out of place (autograd needs them); inference fuses in place.
    torch.manual_seed(0)
    layer = SynthesisLayer(6, 5, w_dim=7, resolution=8, conv_clamp=0.3)
    with torch.no_grad():
        layer.noise_strength.fill_(0.5)
    x, w = torch.randn(batch, 6, 8, 8, requires_grad=True), torch.randn(batch, 7)
    tuned = layer(x, w)
    tuned.square().sum().backward()
    with torch.inference_mode():
        inferred = layer(x.detach(), w)
    assert torch.allclose(tuned, inferred, atol=1e-6) and tuned.abs().max() <= 0.3
    assert x.grad is not None and layer.weight.grad.abs().sum() > 0 and layer.noise_strength.grad != 0


def test_synthesis_can_stop_at_a_coarser_block():
    config = tiny_config(32, width=16)
    gen = Generator(config).eval()
    ws = torch.randn(2, config.num_ws, config.w_dim)
    full = gen.synthesis(ws)
    torch.testing.assert_close(gen.synthesis(ws, max_resolution=32), full)
    coarse, features = gen.synthesis(ws, max_resolution=16, return_features=True)
    assert coarse.shape == (2, 3, 16, 16) and features.shape[-1] == 16
    # The full image is the coarse skip sum, upsampled, plus the last block's ToRGB: stopping
    # early must not change what the earlier blocks compute.
    changed = ws.clone()
    changed[:, -1] += 1.0  # the last block's ToRGB latent
    torch.testing.assert_close(gen.synthesis(changed, max_resolution=16), coarse)
    with pytest.raises(ValueError, match="max_resolution"):
        gen.synthesis(ws, max_resolution=24)

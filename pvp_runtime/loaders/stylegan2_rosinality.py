"""rosinality ``stylegan2-pytorch`` checkpoints (``.pt``: ``g_ema`` + ``latent_avg``) -> our Generator.

Same network as NVlabs', named and laid out differently.  Per block of
resolution ``R = 2**(k+3)`` (``k = 0, 1, ...``) and the 4x4 block:

=================================  ==============================  =========================
rosinality ``g_ema``                ours (NVlabs names)             layout change
=================================  ==============================  =========================
``style.{i+1}.weight/bias``         ``mapping.fc{i}.weight/bias``   (index 0 is PixelNorm)
``input.input``                     ``synthesis.b4.const``          [1,C,4,4] -> [C,4,4]
``conv1.*`` / ``to_rgb1.*``         ``b4.conv1.*`` / ``b4.torgb.*``
``convs.{2k}.*``                    ``b{R}.conv0.*``                (2x upsampling conv)
``convs.{2k+1}.*``                  ``b{R}.conv1.*``
``to_rgbs.{k}.*``                   ``b{R}.torgb.*``
``*.conv.weight``                   ``*.weight``                    [1,O,I,k,k] -> [O,I,k,k]
``*.conv.modulation.weight/bias``   ``*.affine.weight/bias``
``*.noise.weight``                  ``*.noise_strength``            [1] -> []
``*.activate.bias``                 ``*.bias``                      (FusedLeakyReLU's bias)
``to_rgb*.bias``                    ``*.torgb.bias``                [1,3,1,1] -> [3]
``noises.noise_{j}``                conv ``j``'s ``noise_const``    [1,1,R,R] -> [R,R]
``latent_avg``                      ``mapping.w_avg``
=================================  ==============================  =========================

Both store weights at unit variance and scale them at run time by
``1/sqrt(fan_in)`` (the mapping by ``lr_mul/sqrt(fan_in)``, bias by
``lr_mul``), so tensors copy unchanged.  rosinality scales a conv weight before
demodulating and NVlabs after; that moves only the 1e-8 epsilon (relative
effect ~1e-8).  ``lr_mlp`` is not stored in checkpoints: rosinality's default
0.01 is assumed.  Without ``latent_avg`` (rosinality's own training
checkpoints), ``w_avg`` is estimated from 10k mapped samples.  Blur and
upsample kernels are fixed buffers and are checked, not copied.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

from ..contract.errors import AssetError
from ..model.stylegan2 import Generator, GeneratorConfig
from .generator_state import build_generator, check_lowpass
from .torch_files import read_torch_file

log = logging.getLogger(__name__)
KIND = "rosinality StyleGAN2 checkpoint"
ROSINALITY_LR_MLP = 0.01


def load_rosinality_generator(path: str | os.PathLike) -> tuple[Generator, dict]:
    path = Path(path)
    data = read_torch_file(path, KIND)
    if not isinstance(data, dict) or not isinstance(data.get("g_ema"), dict):
        keys = ", ".join(sorted(map(str, data))) if isinstance(data, dict) else type(data).__name__
        raise AssetError(f"{path}: expected a {KIND} with a 'g_ema' state dict, found {keys}")
    return generator_from_rosinality(data["g_ema"], data.get("latent_avg"), str(path))


def _infer_channels(widths: dict[int, int], source: str) -> tuple[int, int]:
    """channel_base and channel_max with ``min(base // res, max) == widths[res]`` for every res."""
    channel_max = max(widths.values())
    below = sorted(res for res, width in widths.items() if width < channel_max)
    if below:
        channel_base = widths[below[0]] * below[0]
    else:
        channel_base = channel_max * max(widths)
    if any(min(channel_base // res, channel_max) != width for res, width in widths.items()):
        raise AssetError(f"{source}: channel widths {widths} per resolution do not follow "
                         f"min(base / resolution, max); not a standard StyleGAN2")
    return channel_base, channel_max


def generator_from_rosinality(g_ema: dict, latent_avg, source: str, what: str = "rosinality g_ema") -> tuple[Generator, dict]:
    def get(name):
        if name not in g_ema:
            raise AssetError(f"{source}: {what} lacks tensor '{name}'")
        tensor = g_ema[name]
        if not isinstance(tensor, torch.Tensor):
            raise AssetError(f"{source}: '{name}' in the {what} is not a tensor")
        return tensor

    styles = sorted(int(m.group(1)) for key in g_ema if (m := re.fullmatch(r"style\.(\d+)\.weight", key)))
    num_rgbs = sum(1 for key in g_ema if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", key))
    if not styles or styles != list(range(1, len(styles) + 1)):
        raise AssetError(f"{source}: not a rosinality StyleGAN2 generator (no mapping layers style.1 .. style.N)")
    resolution = 2 ** (num_rgbs + 2)
    w_dim = get("style.1.weight").shape[1]
    widths = {4: get("conv1.conv.weight").shape[1]}
    for k in range(num_rgbs):
        widths[2 ** (k + 3)] = get(f"convs.{2 * k}.conv.weight").shape[1]
    channel_base, channel_max = _infer_channels(widths, source)
    try:
        config = GeneratorConfig(resolution=resolution, z_dim=w_dim, w_dim=w_dim, channel_base=channel_base,
                                 channel_max=channel_max, mapping_layers=len(styles),
                                 mapping_lr_multiplier=ROSINALITY_LR_MLP)
    except ValueError as exc:
        raise AssetError(f"{source}: {exc}") from None

    state: dict[str, torch.Tensor] = {}
    consumed: set[str] = set()

    def take(name):
        consumed.add(name)
        return get(name)

    for i in styles:
        state[f"mapping.fc{i - 1}.weight"] = take(f"style.{i}.weight")
        state[f"mapping.fc{i - 1}.bias"] = take(f"style.{i}.bias")
    state["synthesis.b4.const"] = _squeeze(take("input.input"), 4, "input.input", source)

    def conv(ours: str, theirs: str, noise_index: int):
        state[f"{ours}.weight"] = _squeeze(take(f"{theirs}.conv.weight"), 5, f"{theirs}.conv.weight", source)
        state[f"{ours}.affine.weight"] = take(f"{theirs}.conv.modulation.weight")
        state[f"{ours}.affine.bias"] = take(f"{theirs}.conv.modulation.bias")
        state[f"{ours}.noise_strength"] = take(f"{theirs}.noise.weight").reshape(())
        state[f"{ours}.bias"] = take(f"{theirs}.activate.bias")
        noise_name = f"noises.noise_{noise_index}"
        if noise_name in g_ema:
            state[f"{ours}.noise_const"] = take(noise_name).reshape(take(noise_name).shape[-2:])

    def torgb(ours: str, theirs: str):
        state[f"{ours}.weight"] = _squeeze(take(f"{theirs}.conv.weight"), 5, f"{theirs}.conv.weight", source)
        state[f"{ours}.affine.weight"] = take(f"{theirs}.conv.modulation.weight")
        state[f"{ours}.affine.bias"] = take(f"{theirs}.conv.modulation.bias")
        state[f"{ours}.bias"] = take(f"{theirs}.bias").reshape(-1)

    conv("synthesis.b4.conv1", "conv1", 0)
    torgb("synthesis.b4.torgb", "to_rgb1")
    for k in range(num_rgbs):
        res = 2 ** (k + 3)
        conv(f"synthesis.b{res}.conv0", f"convs.{2 * k}", 2 * k + 1)
        conv(f"synthesis.b{res}.conv1", f"convs.{2 * k + 1}", 2 * k + 2)
        torgb(f"synthesis.b{res}.torgb", f"to_rgbs.{k}")
        # rosinality's fixed kernels carry the upsampling gain (factor**2 = 4).
        for kernel in (f"convs.{2 * k}.conv.blur.kernel", f"to_rgbs.{k}.upsample.kernel"):
            if kernel in g_ema:
                check_lowpass(kernel, take(kernel), source, gain=4.0)

    leftovers = sorted(set(g_ema) - consumed)
    if leftovers:
        raise AssetError(f"{source}: unexpected tensor '{leftovers[0]}' in the {what} "
                         f"(not a {resolution}x{resolution} rosinality StyleGAN2?)")

    notes = {"kind": "rosinality", "lr_mlp_assumed": ROSINALITY_LR_MLP}
    template = Generator(config)
    missing_noise = [name for name in template.state_dict() if name.endswith("noise_const") and name not in state]
    if missing_noise:
        # Older checkpoints have no noise buffers; fresh draws are what rosinality itself would use.
        log.warning("%s: no stored noise buffers; drawing constant noise from seed 0", source)
        generator = torch.Generator().manual_seed(0)
        for name in missing_noise:
            state[name] = torch.randn(template.state_dict()[name].shape, generator=generator)
        notes["noise"] = "drawn from seed 0 (not in the checkpoint)"
    state["mapping.w_avg"] = _w_avg(latent_avg, w_dim, source)
    model = build_generator(config, state, source, what)
    if latent_avg is None:
        log.warning("%s: no latent_avg; estimating w_avg from 10000 samples", source)
        model.estimate_w_avg(samples=10000, seed=0)
        notes["w_avg"] = "estimated from 10000 samples (no latent_avg in the checkpoint)"
    return model, notes


def _w_avg(latent_avg, w_dim: int, source: str) -> torch.Tensor:
    if latent_avg is None:
        return torch.zeros(w_dim)
    if not isinstance(latent_avg, torch.Tensor) or (
            latent_avg.numel() != w_dim and not (latent_avg.ndim == 2 and latent_avg.shape[1] == w_dim)):
        raise AssetError(f"{source}: latent_avg must hold {w_dim} values, got "
                         f"{list(getattr(latent_avg, 'shape', [])) or type(latent_avg).__name__}")
    # e4e stores latent_avg as W+ [num_ws, w_dim] with identical rows; any row is W's mean.
    return latent_avg.reshape(-1, w_dim)[0].to(torch.float32)


def _squeeze(tensor: torch.Tensor, ndim: int, name: str, source: str) -> torch.Tensor:
    if tensor.ndim != ndim or tensor.shape[0] != 1:
        raise AssetError(f"{source}: tensor '{name}' has shape {list(tensor.shape)}, expected a leading "
                         f"dimension of 1 and {ndim} dimensions")
    return tensor[0]


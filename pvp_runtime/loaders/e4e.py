"""e4e checkpoints (``e4e_ffhq_encode.pt``) -> an image-to-W+ inverter plus its StyleGAN2 generator.

The checkpoint is ``{'state_dict': {encoder.*, decoder.*}, 'latent_avg', 'opts'}``:
``encoder.*`` is ``Encoder4Editing(50, 'ir_se')`` (see :mod:`pvp_runtime.model.e4e`),
``decoder.*`` a rosinality generator (loaded by the rosinality importer) and
``latent_avg`` the mean W, repeated per W+ layer, that e4e's outputs start from.

:class:`E4EInverter` maps images in [-1, 1] (any size; resized to the
encoder's 256x256 as e4e's ``transforms.Resize`` does) to W+ codes for the
decoder: this is the pivot inversion of PVP stage 1 when the user passes an
e4e checkpoint.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..contract.errors import AssetError
from ..model.e4e import Encoder4Editing
from ..model.stylegan2 import Generator
from .frozen_network import FrozenNetwork, check_images
from .generator_file import generator_from_e4e_checkpoint
from .irse_state import infer_irse_config, load_strict, tensor_dict
from .torch_files import read_torch_file

log = logging.getLogger(__name__)
KIND = "e4e checkpoint"


class E4EInverter(FrozenNetwork):
    """Images [N, 3, H, W] in [-1, 1] -> W+ [N, num_ws, w_dim] for the checkpoint's generator."""

    def __init__(self, encoder: Encoder4Editing, latent_avg: torch.Tensor | None, name: str = "e4e"):
        super().__init__(encoder, name)
        offset = torch.zeros(encoder.num_ws, encoder.config.depths[-1]) if latent_avg is None else latent_avg
        self.register_buffer("latent_avg", offset.reshape(-1, offset.shape[-1]).expand(encoder.num_ws, -1).clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        size = self.network.input_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return self.network(images) + self.latent_avg


@dataclass
class E4E:
    inverter: E4EInverter
    generator: Generator
    provenance: dict


def encoder_from_state(state: dict, latent_avg, opts: dict, source: str) -> E4EInverter:
    config = infer_irse_config(state, source, "e4e encoder")
    num_ws = sum(1 for key in state if key.startswith("styles.") and key.endswith(".linear.weight"))
    if num_ws == 0:
        raise AssetError(f"{source}: the e4e encoder has no style predictors (styles.*); a pSp or ArcFace network?")
    coarse_convs = sum(1 for key in state if key.startswith("styles.0.convs.") and key.endswith(".weight"))
    input_size = 16 * 2 ** coarse_convs
    size = opts.get("stylegan_size") if isinstance(opts, dict) else None
    if size is not None and 2 * int(size).bit_length() - 4 != num_ws:
        raise AssetError(f"{source}: opts say stylegan_size {size}, but the encoder predicts {num_ws} W+ layers")
    encoder = Encoder4Editing(num_ws, config, input_size=input_size)
    load_strict(encoder, state, source, "e4e encoder")
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.shape[-1] != config.depths[-1] or \
                latent_avg.numel() not in (config.depths[-1], num_ws * config.depths[-1]):
            raise AssetError(f"{source}: latent_avg has shape {list(getattr(latent_avg, 'shape', []))}, expected "
                             f"[{config.depths[-1]}] or [{num_ws}, {config.depths[-1]}]")
        latent_avg = latent_avg.to(torch.float32)
    if isinstance(opts, dict) and opts.get("start_from_latent_avg") is False:
        latent_avg = None
    return E4EInverter(encoder, latent_avg)


def load_e4e(path: str | os.PathLike) -> E4E:
    path = Path(path)
    data = read_torch_file(path, KIND)
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        raise AssetError(f"{path}: not an {KIND} (expected a dict with 'state_dict', 'latent_avg' and 'opts')")
    opts = data.get("opts") or {}
    encoder_state = tensor_dict(data, str(path), "e4e encoder", prefix="encoder.")
    inverter = encoder_from_state(encoder_state, data.get("latent_avg"), opts, str(path))
    generator, provenance = generator_from_e4e_checkpoint(data, str(path))
    if generator.num_ws != inverter.network.num_ws or generator.config.w_dim != inverter.network.config.depths[-1]:
        raise AssetError(f"{path}: the encoder predicts W+ [{inverter.network.num_ws}, "
                         f"{inverter.network.config.depths[-1]}] but the decoder takes [{generator.num_ws}, "
                         f"{generator.config.w_dim}]")
    return E4E(inverter, generator, {**provenance, "source": path.name})



def load_latent_encoder(path: str | os.PathLike, generator: Generator, device="cpu") -> E4EInverter:
    """The entry point `pvp fit --e4e` calls: an inverter into ``generator``'s W+.

    e4e is trained against one generator (its decoder).  A prior of another
    shape is refused; one with other weights only warns, since codes for a
    different generator are a poor start but not an error.
    """
    e4e = load_e4e(path)
    ours, theirs = generator.config, e4e.generator.config
    if (ours.num_ws, ours.w_dim) != (theirs.num_ws, theirs.w_dim):
        raise AssetError(f"{path}: this e4e encodes W+ [{theirs.num_ws}, {theirs.w_dim}] for a "
                         f"{theirs.resolution}px generator; the prior takes [{ours.num_ws}, {ours.w_dim}]")
    reference = e4e.generator.state_dict()
    drift = float("inf")
    if all(tuple(value.shape) == tuple(reference[name].shape) for name, value in generator.state_dict().items()):
        drift = max((value.detach().cpu().float() - reference[name]).abs().max().item()
                    for name, value in generator.state_dict().items())
    if drift > 1e-4:
        log.warning("%s: the e4e decoder is not the prior generator (max weight difference %.3g); its codes "
                    "are only a starting point", path, drift)
    e4e.inverter.name = f"e4e {theirs.resolution}px ({Path(path).name})"
    return e4e.inverter.to(device)

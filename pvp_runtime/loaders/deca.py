"""DECA's coarse encoder (``deca_model.tar``) -> a channel estimator for the fitting losses.

The released checkpoint is a ``torch.save`` of a dict of state dicts:
``E_flame`` (the coarse encoder, used here), ``E_detail`` and ``D_detail``
(the detail encoder and decoder, not needed), plus ``opt`` / ``global_step``
in training checkpoints; ``E_flame``'s state dict saved on its own is read
too.  ``E_flame`` is a ResNet-50 trunk without its classifier (``encoder.*``,
torchvision names, see :mod:`pvp_runtime.model.resnet`) followed by an MLP
``layers.0`` (2048 -> 1024), ReLU, ``layers.2`` (1024 -> 236).  The 236-d
code is, in order,

    shape 100 | tex 50 | exp 50 | pose 6 (global 3, jaw 3) | cam 3 | light 27 (9 x 3)

the two poses as axis-angles (the released model's ``jaw_type``).  DECA
feeds the encoder a 224x224 RGB face crop in [0, 1], with no mean/std
normalisation; the crop is a square of 1.25 x 1.1 x the mean of the 68-landmark
bounding box's width and height, centred on that box (from a face detector's
box instead: 1.25 x its mean side, centred 0.12 of that side below its centre).

:class:`DecaEstimator` does that to generator-space images (``[B, 3, H, W]``
in [-1, 1], the aligned FFHQ-style crop): to [0, 1], the DECA box as a fixed
fraction of the aligned crop (zero-padded where it leaves the image, as a
warp with zero fill would), resized to 224 (bilinear, antialiased: DECA's
own warp is not, but a 1024 px render's gradient would then reach only the
pixels the sparse bilinear taps touch), the
encoder, and the global pose, jaw and expression out of the code.  The box is
fixed because alignment puts the face at a fixed place: the 68 landmarks of
an FFHQ-aligned face span about x 0.19-0.81, y 0.36-0.90 of the crop (eyes at
y 0.47, 0.25 apart), which DECA's rule turns into a square of side 0.78
centred at (0.5, 0.64).  (PVP's code re-detects landmarks on every render
for this box; a per-frame box would need the renders' landmarks, which the
losses do not have.)  Everything is differentiable with respect to the images.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..contract.errors import AssetError
from ..model.channel_estimate import ChannelEstimate
from ..model.resnet import RESNET50_BLOCKS, ResNetTrunk
from .frozen_network import FrozenNetwork, check_crop, check_images, face_box
from .irse_state import load_strict, tensor_dict
from .torch_files import read_torch_file

KIND = "DECA checkpoint (deca_model.tar)"
INPUT_SIZE = 224
HIDDEN = 1024
# DECA's cfg.model.param_list order and sizes: the code is split in this order.
CODE_LAYOUT = (("shape", 100), ("tex", 50), ("exp", 50), ("pose", 6), ("cam", 3), ("light", 27))
CODE_SIZE = sum(size for _, size in CODE_LAYOUT)  # 236
# DECA's face box on an FFHQ-aligned crop, as fractions (top, bottom, left, right); see the module docstring.
FFHQ_DECA_CROP = (0.64 - 0.39, 0.64 + 0.39, 0.5 - 0.39, 0.5 + 0.39)


class DecaCoarseEncoder(nn.Module):
    """DECA's ``E_flame``: 224x224 RGB in [0, 1] -> the 236-d FLAME/camera/light code."""

    def __init__(self, code_size: int = CODE_SIZE):
        super().__init__()
        self.encoder = ResNetTrunk(RESNET50_BLOCKS)
        self.layers = nn.Sequential(nn.Linear(self.encoder.out_channels, HIDDEN), nn.ReLU(),
                                    nn.Linear(HIDDEN, code_size))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(self.encoder(images))


def decompose_code(code: torch.Tensor) -> dict[str, torch.Tensor]:
    """The 236-d code split by :data:`CODE_LAYOUT`; ``light`` as ``[B, 9, 3]``."""
    if code.ndim != 2 or code.shape[1] != CODE_SIZE:
        raise ValueError(f"expected a DECA code [B, {CODE_SIZE}], got {tuple(code.shape)}")
    parts = dict(zip((name for name, _ in CODE_LAYOUT), code.split([size for _, size in CODE_LAYOUT], dim=1)))
    parts["light"] = parts["light"].reshape(len(code), 9, 3)
    return parts


class DecaEstimator(FrozenNetwork):
    """Generator-space images [B, 3, H, W] in [-1, 1] -> :class:`ChannelEstimate` (global pose, jaw, expression)."""

    def __init__(self, encoder: DecaCoarseEncoder, crop: tuple[float, float, float, float] = FFHQ_DECA_CROP,
                 name: str = "DECA coarse encoder"):
        super().__init__(encoder, name)
        self.crop = check_crop(crop)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """DECA's input: the face box of the aligned crop, RGB in [0, 1], 224x224 (zeros outside the image)."""
        check_images(images)
        box = face_box((images + 1) / 2, self.crop)
        if box.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            box = F.interpolate(box, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                                antialias=True)
        return box

    def code(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """DECA's whole code of generator-space images, split by :data:`CODE_LAYOUT`."""
        return decompose_code(self.network(self.preprocess(images)))

    def forward(self, images: torch.Tensor) -> ChannelEstimate:
        code = self.code(images)
        return ChannelEstimate(global_pose=code["pose"][:, :3], jaw=code["pose"][:, 3:], expression=code["exp"])


def encoder_from_state(state: dict, source: str) -> DecaCoarseEncoder:
    """Fill :class:`DecaCoarseEncoder` from ``E_flame``, checking every tensor's name, shape and values."""
    return load_strict(DecaCoarseEncoder(), state, source, "DECA coarse encoder (E_flame)")


def load_deca_encoder(path: str | os.PathLike) -> DecaCoarseEncoder:
    path = Path(path)
    data = read_torch_file(path, KIND)
    if isinstance(data, dict) and "encoder.conv1.weight" in data and "E_flame" not in data:
        data = {"E_flame": data}  # E_flame's state dict saved on its own
    if not isinstance(data, dict) or not isinstance(data.get("E_flame"), dict):
        found = f"keys {sorted(str(key) for key in data)[:4]}" if isinstance(data, dict) else f"a {type(data).__name__}"
        raise AssetError(f"{path}: not a {KIND}: expected a dict with an 'E_flame' state dict, found {found}")
    return encoder_from_state(tensor_dict(data["E_flame"], str(path), "DECA coarse encoder"), str(path))


def load_channel_estimator(path: str | os.PathLike, device="cpu",
                           crop: tuple[float, float, float, float] = FFHQ_DECA_CROP) -> DecaEstimator:
    """The entry point `pvp fit --deca` calls: a frozen, differentiable DECA estimator on ``device``."""
    encoder = load_deca_encoder(path)
    return DecaEstimator(encoder, crop, name=f"DECA coarse encoder ResNet-50 ({Path(path).name})").to(device)

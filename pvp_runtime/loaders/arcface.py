"""ArcFace IR-SE50 (``model_ir_se50.pth``) -> an identity encoder for the fitting losses.

The file is the state dict of InsightFace_Pytorch's ``Backbone(50, 0.6, 'ir_se')``
(112x112 input), the network e4e, PTI and PVP use for their identity loss.
Depth, widths, squeeze-excitation and input size are read from the tensors.

:class:`ArcFaceEncoder` wraps it the way those codebases call it: images in
[-1, 1] straight from the generator, a fixed crop of the aligned face,
average-pooled to 112x112, then the unit-length 512-d embedding.  The crop is
given as fractions of the image: e4e/PTI's ``[35:223, 32:220]`` of 256 is the
default; PVP's ``[13:441, 44:472]`` of 512 is :data:`PVP_CROP`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ..contract.errors import AssetError
from ..model.irse import ArcFaceBackbone
from .frozen_network import FrozenNetwork, check_crop, check_images, face_box
from .irse_state import infer_irse_config, load_strict, tensor_dict
from .torch_files import read_torch_file

KIND = "ArcFace IR-SE checkpoint (model_ir_se50.pth)"
E4E_CROP = (35 / 256, 223 / 256, 32 / 256, 220 / 256)  # top, bottom, left, right
PVP_CROP = (13 / 512, 441 / 512, 44 / 512, 472 / 512)
NAMED_DEPTHS = {(3, 4, 14, 3): 50, (3, 13, 30, 3): 100, (3, 8, 36, 3): 152}  # units per stage -> "IR-SE50"...


def arcface_from_state(state: dict, source: str) -> ArcFaceBackbone:
    config = infer_irse_config(state, source, KIND)
    linear = state.get("output_layer.3.weight")
    if not isinstance(linear, torch.Tensor) or linear.ndim != 2:
        raise AssetError(f"{source}: not an {KIND}: no output layer (output_layer.3.weight); an e4e encoder?")
    spatial = round((linear.shape[1] / config.depths[-1]) ** 0.5)
    if spatial * spatial * config.depths[-1] != linear.shape[1]:
        raise AssetError(f"{source}: output_layer.3.weight has shape {list(linear.shape)}, expected "
                         f"[embedding, {config.depths[-1]} x S x S]")
    model = ArcFaceBackbone(config, input_size=spatial * 16, embedding=linear.shape[0])
    return load_strict(model, state, source, "ArcFace backbone")


def load_arcface(path: str | os.PathLike) -> ArcFaceBackbone:
    path = Path(path)
    return arcface_from_state(tensor_dict(read_torch_file(path, KIND), str(path), "ArcFace"), str(path))


class ArcFaceEncoder(FrozenNetwork):
    """Generator-space images [N, 3, H, W] in [-1, 1] -> unit-length identity embeddings [N, 512]
    (a ``fit.encoders.IdentityEncoder``)."""

    def __init__(self, backbone: ArcFaceBackbone, crop: tuple[float, float, float, float] = E4E_CROP,
                 name: str = "ArcFace IR-SE"):
        super().__init__(backbone, name)
        self.crop = check_crop(crop)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        size = self.network.input_size
        return self.network(F.adaptive_avg_pool2d(face_box(images, self.crop), (size, size)))

    @torch.no_grad()
    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of two image batches' identities (1 = same embedding)."""
        return (self(a) * self(b)).sum(dim=1)


def load_identity_encoder(path: str | os.PathLike, device="cpu", crop=E4E_CROP) -> ArcFaceEncoder:
    """The entry point `pvp fit --arcface` calls: a frozen identity encoder on ``device``."""
    backbone = load_arcface(path)
    config = backbone.config
    depth = NAMED_DEPTHS.get(config.units, "")
    label = f"ArcFace IR{'-SE' if config.se else ''}{depth} {backbone.input_size}px ({Path(path).name})"
    return ArcFaceEncoder(backbone, crop, name=label).to(device)

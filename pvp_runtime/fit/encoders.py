"""Interfaces of the pretrained networks a fit can use, and nothing else.

The loaders (``pvp_runtime/loaders/``) build the real networks (ArcFace
IR-SE50, DECA's encoder, e4e) from their checkpoints; the fitting code only
ever sees these interfaces, so any network that honours them plugs in, and the
tests drive every loss with tiny random stand-ins.

All of them take the generator's aligned crops as ``[B, 3, H, W]`` float
tensors in [-1, 1] at the generator's resolution, and must be differentiable
with respect to them (the losses backpropagate through them).  Each does its
own resizing and cropping to its native input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from ..model.channel_estimate import ChannelEstimate


@runtime_checkable
class IdentityEncoder(Protocol):
    """Face recognition embedding (ArcFace IR-SE50): images -> [B, D]."""

    name: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ChannelEstimator(Protocol):
    """FLAME parameter regressor (DECA's encoder): images -> :class:`ChannelEstimate`."""

    name: str

    def __call__(self, images: torch.Tensor) -> ChannelEstimate: ...


@runtime_checkable
class LatentEncoder(Protocol):
    """GAN inversion encoder (e4e): images -> W+ ``[B, num_ws, w_dim]`` of the given generator."""

    name: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


@dataclass
class FitNetworks:
    """The optional pretrained networks of a fit (None = that loss or path is off)."""

    identity: IdentityEncoder | None = None
    estimator: ChannelEstimator | None = None
    latent_encoder: LatentEncoder | None = None

    def describe(self) -> dict:
        name = lambda net: getattr(net, "name", type(net).__name__) if net is not None else None
        return {"identity": name(self.identity), "channel_estimator": name(self.estimator),
                "latent_encoder": name(self.latent_encoder)}

"""LPIPS (Zhang et al. 2018, v0.1) in plain torch, without importing ``lpips`` or ``torchvision``.

Why our own: the ``lpips`` package imports torchvision at import time, and the
only torchvision for torch 2.13 is a CUDA build that fails to load on the CPU
torch (docs/architecture.md, "LPIPS").  The metric itself is small:

    d(x, y) = sum_l  mean_hw  || w_l * (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|) ||^2

with ``f_l`` five ReLU stages of a VGG16 or AlexNet trunk (inputs in [-1, 1],
shifted and scaled to ImageNet statistics), unit-normalised along channels, and
``w_l`` the published non-negative per-channel linear weights.

Weights come from three places, and :attr:`LPIPS.provenance` records which:

* linear layers: the installed ``lpips`` package's ``weights/v0.1/{vgg,alex}.pth``,
  located with ``importlib.util.find_spec`` (never imported);
* backbone: an explicit path, else the torch hub cache under torchvision's file
  names (``vgg16-397923af.pth``, ``alexnet-owt-7be5be79.pth``);
* neither available (always the case offline): a deterministic random backbone
  (seed 0), with a loud warning.  Such scores still measure differences between
  images, but they are not perceptual and not comparable to published numbers.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..contract.errors import PVPError
from ..loaders.torch_files import read_torch_file

log = logging.getLogger(__name__)
RANDOM_BACKBONE_SEED = 0
NORMALIZE_EPS = 1e-10


@dataclass(frozen=True)
class Trunk:
    hub_file: str               # torchvision's file name in the torch hub cache
    stage_ends: tuple[int, ...]  # features[:end] boundaries of the five ReLU stages (as lpips slices them)
    channels: tuple[int, ...]    # channels of each stage's output


TRUNKS = {
    "vgg": Trunk("vgg16-397923af.pth", (4, 9, 16, 23, 30), (64, 128, 256, 512, 512)),
    "alex": Trunk("alexnet-owt-7be5be79.pth", (2, 5, 8, 10, 12), (64, 192, 384, 256, 256)),
}


def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` layout (so its state dict keys load unchanged)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if width == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, width, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            in_ch = width
    return nn.Sequential(*layers)


def alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features`` layout."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=False),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=False),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


FEATURE_BUILDERS = {"vgg": vgg16_features, "alex": alexnet_features}


class LPIPS(nn.Module):
    """Perceptual distance between image batches in [-1, 1]; returns one value per sample.

    The module's parameters are frozen; gradients flow to the inputs.
    """

    def __init__(self, net: str = "vgg", backbone_state: dict | None = None,
                 linear_state: dict | None = None, provenance: dict | None = None):
        super().__init__()
        if net not in TRUNKS:
            raise PVPError(f"unknown LPIPS network {net!r} (expected one of {', '.join(TRUNKS)})")
        self.net = net
        trunk = TRUNKS[net]
        features = FEATURE_BUILDERS[net]()
        if backbone_state is None:
            _random_init(features)
        else:
            features.load_state_dict(backbone_state)
        # Keep only what the five stages use; split it the way lpips does.
        starts = (0,) + trunk.stage_ends[:-1]
        self.stages = nn.ModuleList(nn.Sequential(*[features[i] for i in range(a, b)])
                                    for a, b in zip(starts, trunk.stage_ends))
        self.linear = nn.ParameterList(nn.Parameter(torch.full((1, c, 1, 1), 1.0 / c)) for c in trunk.channels)
        if linear_state is not None:
            for k, param in enumerate(self.linear):
                param.data.copy_(linear_state[f"lin{k}.model.1.weight"])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])
        self.provenance = provenance or {"net": net, "backbone": "random", "linear": "uniform"}
        self.requires_grad_(False)
        self.eval()

    @property
    def pretrained(self) -> bool:
        return self.provenance.get("backbone_pretrained", False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        n = x.shape[0]
        # One pass over both batches: the trunk is the expensive part.
        h = (torch.cat([x, y]).float() - self.shift) / self.scale
        total = x.new_zeros(n, dtype=torch.float32)
        for stage, weight in zip(self.stages, self.linear):
            h = stage(h)
            unit = h / (h.square().sum(dim=1, keepdim=True).sqrt() + NORMALIZE_EPS)
            diff = (unit[:n] - unit[n:]).square()
            total = total + (diff * weight).sum(dim=1).mean(dim=(1, 2))
        return total


def _random_init(features: nn.Sequential) -> None:
    generator = torch.Generator().manual_seed(RANDOM_BACKBONE_SEED)
    with torch.no_grad():
        for layer in features:
            if isinstance(layer, nn.Conv2d):
                fan_in = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                layer.bias.zero_()


# --------------------------------------------------------------------------- locating weights

def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_backbone_file(net: str) -> Path | None:
    candidate = hub_checkpoint_dir() / TRUNKS[net].hub_file
    return candidate if candidate.is_file() else None


def find_linear_weights(net: str) -> Path | None:
    """The lpips package's published linear weights, found without importing it."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "weights" / "v0.1" / f"{net}.pth"
        if candidate.is_file():
            return candidate
    return None


def _read_state(path: Path, what: str) -> dict:
    # A .pth is a pickle: it goes through the allow-list every other pickle goes through, so a
    # backbone file can hold only tensors and plain containers, never code.
    state = read_torch_file(path, what)
    if not isinstance(state, dict):
        raise PVPError(f"{path}: not a {what} (expected a state dict, found {type(state).__name__})")
    return state


def read_backbone_state(path: Path, net: str) -> dict:
    """Read a torchvision VGG16/AlexNet checkpoint; keep the ``features.*`` tensors lpips uses."""
    state = _read_state(path, f"{net} backbone checkpoint")
    reference = FEATURE_BUILDERS[net]().state_dict()
    features = {}
    for key, tensor in reference.items():
        full = f"features.{key}"
        if full not in state:
            raise PVPError(f"{path}: not a torchvision {net} checkpoint (no tensor '{full}')")
        if not isinstance(state[full], torch.Tensor) or tuple(state[full].shape) != tuple(tensor.shape):
            shape = tuple(getattr(state[full], "shape", ()))
            raise PVPError(f"{path}: tensor '{full}' has shape {list(shape)}, expected {list(tensor.shape)}")
        features[key] = state[full].float()
    return features


def read_linear_state(path: Path, net: str) -> dict:
    state = _read_state(path, "LPIPS linear-weights file")
    for k, channels in enumerate(TRUNKS[net].channels):
        key = f"lin{k}.model.1.weight"
        if key not in state or tuple(state[key].shape) != (1, channels, 1, 1):
            raise PVPError(f"{path}: not the LPIPS v0.1 {net} linear weights (tensor '{key}' missing or misshapen)")
    return {k: v.float() for k, v in state.items()}


def backbone_file(net: str, backbone: str | os.PathLike | None) -> Path | None:
    """The trunk file LPIPS will read: the explicit one (which must exist), else the hub cache's, else None."""
    if backbone is None:
        return find_backbone_file(net)
    path = Path(backbone)
    if not path.is_file():
        raise PVPError(f"{path}: LPIPS backbone file not found")
    return path


def load_lpips(net: str = "vgg", backbone: str | os.PathLike | None = None, device="cpu") -> LPIPS:
    """Build LPIPS from the best weights available and log which were used."""
    if net not in TRUNKS:
        raise PVPError(f"unknown LPIPS network {net!r} (expected one of {', '.join(TRUNKS)})")
    provenance = {"net": net}
    backbone_path = backbone_file(net, backbone)
    if backbone_path is not None:
        backbone_state = read_backbone_state(backbone_path, net)
        provenance.update(backbone=f"pretrained ({backbone_path})", backbone_pretrained=True)
        log.info("LPIPS %s: pretrained backbone from %s", net, backbone_path)
    else:
        backbone_state = None
        provenance.update(backbone=f"RANDOM (seed {RANDOM_BACKBONE_SEED}; no {TRUNKS[net].hub_file} in "
                                   f"{hub_checkpoint_dir()} and no explicit path)", backbone_pretrained=False)
        log.warning("LPIPS %s: NO PRETRAINED BACKBONE. Using a deterministic RANDOM %s trunk: scores are not "
                    "perceptual and not comparable to published LPIPS. Put %s in %s or pass the file "
                    "explicitly (--lpips-backbone).", net, net, TRUNKS[net].hub_file, hub_checkpoint_dir())
    linear_path = find_linear_weights(net)
    if linear_path is not None:
        linear_state = read_linear_state(linear_path, net)
        provenance["linear"] = f"lpips v0.1 ({linear_path})"
    else:
        linear_state = None
        provenance["linear"] = "uniform 1/C (the lpips package is not installed)"
        log.warning("LPIPS %s: the lpips package's linear weights were not found; using uniform weights", net)
    return LPIPS(net, backbone_state, linear_state, provenance).to(device)


def area_downsample(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Box-filter images to at most ``size`` pixels square (no-op when already small enough)."""
    if size is None or images.shape[-1] <= size:
        return images
    return F.interpolate(images, size=(size, size), mode="area")

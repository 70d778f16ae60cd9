"""Shared by the ArcFace and e4e loaders: IR-SE layouts inferred from state dicts, strict loading."""

from __future__ import annotations

import re

import torch
from torch import nn

from ..contract.errors import AssetError
from ..model.irse import IRSEConfig


def tensor_dict(data, source: str, what: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """``data`` (a state dict, possibly inside ``{'state_dict': ...}``) restricted to ``prefix``, prefix removed."""
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise AssetError(f"{source}: expected a {what} state dict, got a {type(data).__name__}")
    out = {key[len(prefix):]: value for key, value in data.items() if isinstance(key, str) and key.startswith(prefix)}
    if not out:
        raise AssetError(f"{source}: no {what} tensors ({prefix or 'state dict'}*) in the file")
    return out


def infer_irse_config(state: dict, source: str, what: str) -> IRSEConfig:
    """Stage widths and unit counts from ``body.{i}.res_layer.1.weight`` shapes.

    Every stage starts with a stride-2 unit whose width differs from the
    previous stage's (64 -> 128 -> 256 -> 512), except the first, at unit 0.
    """
    indices = sorted(int(m.group(1)) for key in state if (m := re.fullmatch(r"body\.(\d+)\.res_layer\.1\.weight", key)))
    if not indices or indices != list(range(len(indices))):
        raise AssetError(f"{source}: not an {what}: no IR-SE body units (body.0 ... body.N)")
    widths = [_shape(state, f"body.{i}.res_layer.1.weight", source)[0] for i in indices]
    units, depths = [1], [widths[0]]
    for width in widths[1:]:
        if width == depths[-1]:
            units[-1] += 1
        else:
            units.append(1)
            depths.append(width)
    if len(units) != 4:
        raise AssetError(f"{source}: not an {what}: the IR-SE body has {len(units)} stages, expected 4")
    se = "body.0.res_layer.5.fc1.weight" in state
    reduction = 16
    if se:
        squeezed = _shape(state, "body.0.res_layer.5.fc1.weight", source)[0]
        if squeezed == 0 or depths[0] % squeezed:
            raise AssetError(f"{source}: squeeze-excitation of body.0 has width {squeezed}, not a divisor of "
                             f"{depths[0]}")
        reduction = depths[0] // squeezed
    return IRSEConfig(units=tuple(units), depths=tuple(depths), se=se, se_reduction=reduction)


def load_strict(module: nn.Module, state: dict, source: str, what: str) -> nn.Module:
    """Load every tensor by name and shape; BatchNorm's ``num_batches_tracked`` may be absent (old files)."""
    expected = module.state_dict()
    for name, reference in expected.items():
        if name not in state:
            if name.endswith("num_batches_tracked"):
                continue
            raise AssetError(f"{source}: {what} lacks tensor '{name}'")
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor):
            raise AssetError(f"{source}: '{name}' in the {what} is not a tensor")
        if tuple(tensor.shape) != tuple(reference.shape):
            raise AssetError(f"{source}: tensor '{name}' of the {what} has shape {list(tensor.shape)}, "
                             f"expected {list(reference.shape)}")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise AssetError(f"{source}: tensor '{name}' of the {what} holds NaN or infinite values")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise AssetError(f"{source}: unexpected tensor '{unexpected[0]}' in the {what}")
    module.load_state_dict({k: v for k, v in state.items()}, strict=False)
    return module.eval().requires_grad_(False)


def _shape(state: dict, name: str, source: str) -> tuple[int, ...]:
    tensor = state.get(name)
    if not isinstance(tensor, torch.Tensor):
        raise AssetError(f"{source}: missing tensor '{name}'")
    return tuple(tensor.shape)

"""Fit checkpoints: one safetensors file whose metadata carries the run's JSON state.

A checkpoint holds every tensor needed to continue (generator, pivots,
mappers, the current stage's optimiser state and latents) and, in the
safetensors header, a JSON document (config, inputs, finished stages, the
current stage and step, loss history).  Nothing is pickled.  Writing goes to
a temporary file that is flushed, read back and renamed over the previous
checkpoint, so a kill at any moment leaves either the old or the new one.
A state holding NaN or infinite values is never written (:mod:`finite`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors import safe_open
from safetensors.torch import save as save_safetensors

from ..contract.atomic_files import replacing
from ..contract.errors import PVPError
from .finite import FitDiverged, non_finite_tensor

FORMAT = "pvp-fit-checkpoint"
VERSION = 1


class CheckpointError(PVPError):
    """A fit checkpoint that is missing, corrupt, or from another run or version."""


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict, where: str = "") -> None:
    """Write a checkpoint; a non-finite tensor raises :class:`FitDiverged` (``where`` names the stage
    and step) and leaves the previous checkpoint in place."""
    path = Path(path)
    cpu = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    problem = non_finite_tensor(cpu)
    if problem is not None:
        raise FitDiverged(where or f"before checkpoint {path}", problem)
    data = save_safetensors(cpu, metadata={"format": FORMAT, "version": str(VERSION), "state": json.dumps(meta)})
    with replacing(path) as tmp:
        tmp.write_bytes(data)
        load_checkpoint(tmp)  # never replace a good checkpoint with one we cannot read


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint ({str(exc).splitlines()[0]})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pvp fit checkpoint")
    if metadata.get("version") != str(VERSION):
        raise CheckpointError(f"{path}: checkpoint version {metadata.get('version')} is not supported "
                              f"(this PVP Avatar writes version {VERSION})")
    try:
        meta = json.loads(metadata["state"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint state ({exc})") from None
    return tensors, meta


# --------------------------------------------------------------------------- modules and optimisers

def module_tensors(module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def load_module(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, source: str) -> None:
    head = prefix + "."
    state = {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"{source}: checkpoint lacks tensor '{head}{missing[0]}'")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{source}: checkpoint tensor '{head}{key}' has shape {list(state[key].shape)}, "
                                  f"expected {list(value.shape)} (a different run's checkpoint?)")
    with torch.no_grad():
        for key, value in expected.items():
            value.copy_(state[key])


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser's state into tensors and a JSON-able remainder."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict,
                   prefix: str) -> None:
    state: dict[int, dict] = {}
    head = prefix + "."
    for key, value in tensors.items():
        if key.startswith(head):
            index, name = key[len(head):].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError, RuntimeError) as error:
        # E.g. a checkpoint written before this version trained a part it now trains (the matte head).
        raise CheckpointError(f"checkpoint optimiser '{prefix}' does not match this fit's parameters ({error}); "
                              "it was written by another version or run: start over with --overwrite") from None

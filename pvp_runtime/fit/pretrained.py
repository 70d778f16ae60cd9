"""Pretrained generator files: a StyleGAN2 ``G_ema`` as safetensors in our parameter names.

``pvp import-generator`` converts official NVlabs ``.pkl`` and rosinality
``.pt`` checkpoints to this file.  The layout is the state dict of
:class:`pvp_runtime.model.stylegan2.Generator` (NVlabs names, see
docs/architecture.md).  The safetensors metadata may carry
``generator_config`` (a JSON ``GeneratorConfig``); without it the config is
read off the tensor shapes (resolution from the last block, widths from the
channel counts; the mapping lr multiplier and conv clamp take the config-f
defaults).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..contract.errors import PVPError
from ..model.stylegan2 import Generator, GeneratorConfig

CONFIG_KEY = "generator_config"


class GeneratorFileError(PVPError):
    """A pretrained generator file that is missing, corrupt, or not a StyleGAN2 generator."""


def save_generator_file(generator: Generator, path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    state = {k: v.detach().cpu().float().contiguous() for k, v in generator.state_dict().items()}
    save_file(state, str(tmp), metadata={CONFIG_KEY: json.dumps(generator.config.to_dict())})
    os.replace(tmp, path)


def infer_config(shapes: dict[str, tuple[int, ...]], path: Path) -> GeneratorConfig:
    blocks = sorted({int(m.group(1)) for k in shapes if (m := re.match(r"synthesis\.b(\d+)\.", k))})
    mapping = sorted({int(m.group(1)) for k in shapes if (m := re.match(r"mapping\.fc(\d+)\.weight$", k))})
    if not blocks or not mapping or "synthesis.b4.const" not in shapes:
        raise GeneratorFileError(f"{path}: not a StyleGAN2 generator in PVP's names "
                                 f"(no synthesis.b4.const / mapping.fc0.weight; convert it with pvp import-generator)")
    channels = {res: shapes[f"synthesis.b{res}.conv1.weight"][0] for res in blocks
                if f"synthesis.b{res}.conv1.weight" in shapes}
    channel_max = max(channels.values())
    below = [res for res in blocks if channels.get(res, channel_max) < channel_max]
    channel_base = channels[below[0]] * below[0] if below else channel_max * blocks[-1]
    return GeneratorConfig(resolution=blocks[-1], z_dim=shapes["mapping.fc0.weight"][1],
                           w_dim=shapes[f"mapping.fc{mapping[-1]}.weight"][0], channel_base=channel_base,
                           channel_max=channel_max, mapping_layers=len(mapping),
                           img_channels=shapes[f"synthesis.b{blocks[-1]}.torgb.weight"][0])


def load_generator_file(path: str | os.PathLike, device="cpu") -> Generator:
    path = Path(path)
    if not path.is_file():
        raise GeneratorFileError(f"{path}: pretrained generator file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise GeneratorFileError(f"{path}: not a safetensors generator ({str(exc).splitlines()[0]}); "
                                 f"convert checkpoints with pvp import-generator") from None
    try:
        config = (GeneratorConfig.from_dict(json.loads(metadata[CONFIG_KEY])) if CONFIG_KEY in metadata
                  else infer_config({k: tuple(v.shape) for k, v in state.items()}, path))
    except (ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
        raise GeneratorFileError(f"{path}: invalid generator config ({exc})") from None
    generator = Generator(config)
    expected = generator.state_dict()
    for key, reference in expected.items():
        if key not in state:
            raise GeneratorFileError(f"{path}: missing tensor '{key}' for a {config.resolution}px generator")
        if tuple(state[key].shape) != tuple(reference.shape):
            raise GeneratorFileError(f"{path}: tensor '{key}' has shape {list(state[key].shape)}, "
                                     f"expected {list(reference.shape)}")
        if not torch.isfinite(state[key]).all():
            raise GeneratorFileError(f"{path}: tensor '{key}' holds NaN or infinite values")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise GeneratorFileError(f"{path}: unexpected tensor '{unexpected[0]}'")
    generator.load_state_dict({k: v.float() for k, v in state.items()})
    return generator.to(device)

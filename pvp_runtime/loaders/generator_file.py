"""The pretrained-prior file: one StyleGAN2 generator as safetensors, and importing one.

``pvp import-generator`` converts a research checkpoint into this file once;
``pvp fit`` and everything after it read only this file (no pickles).

Layout: a safetensors file whose tensors are our ``Generator.state_dict()``
(float32, NVlabs names) and whose string metadata holds

``format``          ``"pvp-stylegan2-generator"``
``format_version``  ``"1"``
``config``          the :class:`GeneratorConfig` as JSON
``provenance``      JSON: source file name and SHA-256, source kind, notes

:func:`load_any_generator` reads any supported source: this file, an NVlabs
``.pkl`` (``G_ema``, or a PTI ``torch.save(G)``), a rosinality ``.pt``
(``g_ema``) or an e4e checkpoint (its ``decoder.*`` rosinality generator).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .. import __version__
from ..contract.atomic_files import replacing
from ..contract.errors import AssetError
from ..formats.safe_pickle import PersistentObject
from ..model.stylegan2 import Generator, GeneratorConfig
from .generator_state import build_generator
from .stylegan2_nvlabs import generator_from_nvlabs
from .stylegan2_rosinality import generator_from_rosinality
from .torch_files import read_torch_file

FORMAT_NAME = "pvp-stylegan2-generator"
FORMAT_VERSION = 1
KINDS = ("auto", "pvp", "nvlabs", "rosinality", "e4e")


def is_safetensors(path: Path) -> bool:
    """A safetensors file starts with a little-endian u64 header length and a JSON object."""
    with path.open("rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return False
    size = struct.unpack("<Q", head[:8])[0]
    return head[8:9] == b"{" and 0 < size <= path.stat().st_size - 8


# --------------------------------------------------------------------------- our file

def save_generator_file(generator: Generator, path: str | os.PathLike, provenance: dict | None = None) -> Path:
    """Write atomically: a temporary file, read back and checked, then renamed over ``path``."""
    path = Path(path)
    if path.is_dir():
        raise AssetError(f"{path}: is a directory, expected an output .safetensors file")
    if not path.parent.is_dir():
        raise AssetError(f"{path.parent}: output directory does not exist")
    state = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in generator.state_dict().items()}
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
                "config": json.dumps(generator.config.to_dict(), sort_keys=True),
                "provenance": json.dumps({"tool": f"pvp-avatar {__version__}", **(provenance or {})}, sort_keys=True)}
    with replacing(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
        load_generator_file(tmp)  # never rename something we could not read back
    return path


def read_generator_metadata(path: str | os.PathLike) -> dict:
    """Format, config and provenance of a generator file, without loading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"{path}: generator file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise AssetError(f"{path}: not a safetensors file, or a truncated one ({exc})") from None
    if metadata.get("format") != FORMAT_NAME:
        raise AssetError(f"{path}: not a PVP generator file (format {metadata.get('format')!r}); "
                         f"convert checkpoints with `pvp import-generator`")
    try:
        version = int(metadata.get("format_version", "0"))
        config = GeneratorConfig.from_dict(json.loads(metadata["config"]))
        provenance = json.loads(metadata.get("provenance", "{}"))
    except (KeyError, ValueError, TypeError) as exc:
        raise AssetError(f"{path}: corrupt generator file metadata ({exc})") from None
    if version > FORMAT_VERSION:
        raise AssetError(f"{path}: generator file version {version} is newer than this PVP Avatar supports "
                         f"({FORMAT_VERSION}); update PVP Avatar")
    return {"format_version": version, "config": config, "provenance": provenance}


def load_generator_file(path: str | os.PathLike, device="cpu") -> Generator:
    """Read a file written by :func:`save_generator_file` (the prior ``pvp fit`` takes)."""
    path = Path(path)
    config = read_generator_metadata(path)["config"]
    try:
        with safe_open(str(path), framework="pt") as handle:
            state = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise AssetError(f"{path}: corrupt or truncated generator file ({exc})") from None
    return build_generator(config, state, str(path), what="generator file").to(device)


# --------------------------------------------------------------------------- any source

def load_any_generator(path: str | os.PathLike, kind: str = "auto") -> tuple[Generator, dict]:
    """Read a StyleGAN2 generator from any supported file; return it with provenance notes."""
    path = Path(path)
    if kind not in KINDS:
        raise AssetError(f"unknown generator kind {kind!r} (expected one of {', '.join(KINDS)})")
    if not path.is_file():
        raise AssetError(f"{path}: generator checkpoint not found")
    provenance = {"source": path.name, "source_sha256": _sha256(path)}
    if kind == "pvp" or (kind == "auto" and is_safetensors(path)):
        metadata = read_generator_metadata(path)
        return load_generator_file(path), {**metadata["provenance"], "kind": "pvp"}
    data = read_torch_file(path, "StyleGAN2 checkpoint")
    if kind == "auto":
        kind = _detect_kind(data, path)
    if kind == "nvlabs":
        generator, notes = generator_from_nvlabs(data, str(path))
    elif kind == "rosinality":
        if not isinstance(data, dict) or not isinstance(data.get("g_ema"), dict):
            raise AssetError(f"{path}: expected a rosinality checkpoint with a 'g_ema' state dict")
        generator, notes = generator_from_rosinality(data["g_ema"], data.get("latent_avg"), str(path))
    else:
        generator, notes = generator_from_e4e_checkpoint(data, str(path))
    return generator, {**provenance, **notes}


def generator_from_e4e_checkpoint(data, source: str) -> tuple[Generator, dict]:
    state = data.get("state_dict") if isinstance(data, dict) else None
    if not isinstance(state, dict):
        raise AssetError(f"{source}: expected an e4e checkpoint with a 'state_dict'")
    decoder = {key[len("decoder."):]: value for key, value in state.items() if key.startswith("decoder.")}
    if not decoder:
        raise AssetError(f"{source}: the e4e checkpoint holds no decoder.* tensors")
    generator, notes = generator_from_rosinality(decoder, data.get("latent_avg"), source, what="e4e decoder")
    return generator, {**notes, "kind": "e4e"}


def _detect_kind(data, path: Path) -> str:
    if isinstance(data, PersistentObject) or (isinstance(data, dict) and isinstance(data.get("G_ema"), PersistentObject)):
        return "nvlabs"
    if isinstance(data, dict) and isinstance(data.get("g_ema"), dict):
        return "rosinality"
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict) and \
            any(str(key).startswith("decoder.") for key in data["state_dict"]):
        return "e4e"
    found = ", ".join(sorted(map(str, data))[:8]) if isinstance(data, dict) else type(data).__name__
    raise AssetError(f"{path}: not a StyleGAN2 checkpoint this version reads (expected an NVlabs pickle with "
                     f"G_ema, a rosinality .pt with g_ema, or an e4e checkpoint; found {found})")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

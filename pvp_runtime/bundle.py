"""The subject bundle: one ``.pvp`` file holding everything needed to render a subject.

A bundle is a zip archive (stored, not compressed) with three members:

``manifest.json``          format name and version, generator and mapper configs,
                           channel layout, the training clip's channel statistics,
                           framing, provenance, and the SHA-256 of each tensor file.
``generator.safetensors``  the personalized StyleGAN2 generator (names as in
                           :mod:`pvp_runtime.model.stylegan2`).
``mappers.safetensors``    ``pivots`` [N, num_ws, w_dim] and the pose/expression mappers.
``edits.safetensors``      only when the subject carries appearance edits: one unit ``[w_dim]``
                           direction per edit (manifest ``"edits"``, ``contract/edits.py``).
``matte.safetensors``      only when the subject learnt an alpha (a fit with mattes): the matte
                           head (manifest ``"matte"``, ``model/matte.py``).  Without it alpha is 1.

No member is ever unpickled.  Loading refuses, before reading or building
anything, a manifest number outside its sane range, a member compressed other
than stored or deflated, and a member that declares more bytes than its
tensors need (``contract/subject_manifest.py``, ``contract/zip_members.py``).
Saving writes a temporary file next to the
target, reads it back, and only then renames it over the target, so a crash or
a bad state never leaves a half-written bundle or replaces a good one.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .contract.atomic_files import replacing
from .contract.channels import ChannelLayout, ChannelStats
from .contract.edits import EDITS_FILE, layout_of, num_ws_of, specs_from_manifest
from .contract.errors import BundleError, PVPError
from .contract.provenance import tool_version
# The manifest layer is torch-free and lives in the contract, which the Blender extension ships.
from .contract.subject_manifest import (DEFAULT_EYE_DISTANCE, DEFAULT_HEAD_CENTRE, FORMAT_NAME, FORMAT_VERSION,
                                        MANIFEST, read_subject_manifest)
from .contract.subject_manifest import check_manifest as _manifest
from .contract.subject_manifest import open_archive as _open_archive
from .contract.subject_manifest import read_member as _read_member
from .model.edits import EditDirections
from .model.matte import MatteConfig, MatteHead
from .model.pvp import MapperConfig, PVPModel
from .model.stylegan2 import Generator, GeneratorConfig

GENERATOR_FILE = "generator.safetensors"
MAPPERS_FILE = "mappers.safetensors"
MATTE_FILE = "matte.safetensors"


@dataclass
class Framing:
    """How the aligned crop relates to the head: roll as a 2D rotation, placement in the shot.

    ``roll_center`` is the point (x, y in 0..1 of the crop, y down) the head
    rolls about; FFHQ-style crops put the neck pivot a little below the centre.
    ``head_centre`` (the eye midpoint, same units) and ``eye_distance`` (eye centre to eye
    centre, a fraction of the crop's side) say where the head sits in the crop and how
    large it is: placement maps them onto the rig's eyes as the camera sees them
    (``contract/subject_manifest.py`` has the defaults, ``fit/head_framing.py`` measures them).
    """

    roll_center: tuple[float, float] = (0.5, 0.55)
    head_centre: tuple[float, float] = DEFAULT_HEAD_CENTRE
    eye_distance: float = DEFAULT_EYE_DISTANCE

    def to_dict(self) -> dict:
        return {"roll_center": list(self.roll_center), "head_centre": list(self.head_centre),
                "eye_distance": self.eye_distance}

    @classmethod
    def from_dict(cls, data: dict) -> "Framing":
        center = data.get("roll_center", (0.5, 0.55))
        head = data.get("head_centre", DEFAULT_HEAD_CENTRE)
        return cls(roll_center=(float(center[0]), float(center[1])), head_centre=(float(head[0]), float(head[1])),
                   eye_distance=float(data.get("eye_distance", DEFAULT_EYE_DISTANCE)))


@dataclass
class SubjectBundle:
    name: str
    generator: Generator
    model: PVPModel
    channel_stats: ChannelStats
    framing: Framing = field(default_factory=Framing)
    provenance: dict = field(default_factory=dict)
    edits: EditDirections = field(default_factory=EditDirections)
    matte: MatteHead | None = None  # the learnt alpha; None: alpha is 1 (fitted without mattes)

    @property
    def layout(self) -> ChannelLayout:
        return layout_of(self.model.config.num_expressions, self.edits.specs)

    @property
    def resolution(self) -> int:
        return self.generator.config.resolution

    def manifest(self) -> dict:
        g = self.generator.config
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "resolution": g.resolution,
            "w_dim": g.w_dim,
            "num_ws": g.num_ws,
            "num_pivots": self.model.config.num_pivots,
            "num_expressions": self.model.config.num_expressions,
            "generator": g.to_dict(),
            "mappers": self.model.config.to_dict(),
            "channels": self.layout.to_dict(),
            "channel_stats": self.channel_stats.to_dict(),
            "framing": self.framing.to_dict(),
            "provenance": self.provenance,
            **({"edits": [spec.to_dict() for spec in self.edits.specs]} if len(self.edits) else {}),
            **({"matte": self.matte.config.to_dict()} if self.matte is not None else {}),
        }


def default_provenance(source: str, **extra) -> dict:
    return {"source": source, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "tool": tool_version(), **extra}


# --------------------------------------------------------------------------- saving

def _state_bytes(module: torch.nn.Module) -> bytes:
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in module.state_dict().items()}
    return save_safetensors(state)


def save_bundle(bundle: SubjectBundle, path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        raise BundleError(f"{path}: is a directory, expected a bundle file path")
    if not path.parent.exists():
        raise BundleError(f"{path.parent}: output directory does not exist")
    members = {GENERATOR_FILE: _state_bytes(bundle.generator), MAPPERS_FILE: _state_bytes(bundle.model)}
    if len(bundle.edits):
        members[EDITS_FILE] = save_safetensors(bundle.edits.state())
    if bundle.matte is not None:
        members[MATTE_FILE] = _state_bytes(bundle.matte)
    manifest = bundle.manifest()
    manifest["tensor_files"] = {name: hashlib.sha256(data).hexdigest() for name, data in members.items()}
    with replacing(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
            for name, data in members.items():
                archive.writestr(name, data)
        load_bundle(tmp)  # never rename something we could not read back
    return path


# --------------------------------------------------------------------------- loading

def read_manifest(path: str | os.PathLike) -> dict:
    """Read and check a bundle's manifest without touching its tensors."""
    return read_subject_manifest(path)


def safetensors_size_limit(expected: dict[str, torch.Tensor]) -> int:
    """The most bytes a safetensors member holding these tensors (float32, as saved) can need:
    the data plus a JSON header of ~100 bytes per name, shape and offsets.  A member that
    declares more is refused before it is read."""
    return 4 * sum(t.numel() for t in expected.values()) + 256 * len(expected) + 4096


def _load_state(archive, name, path, expected: dict[str, torch.Tensor], digest: str) -> dict:
    data = _read_member(archive, name, path, safetensors_size_limit(expected))
    if hashlib.sha256(data).hexdigest() != digest:
        raise BundleError(f"{path}: corrupt bundle, {name} does not match its checksum")
    try:
        state = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{path}: corrupt bundle, {name} is not a valid safetensors file ({exc})") from None
    for key, reference in expected.items():
        if key not in state:
            raise BundleError(f"{path}: missing tensor '{key}' in {name}")
        if tuple(state[key].shape) != tuple(reference.shape):
            raise BundleError(f"{path}: tensor '{key}' in {name} has shape {list(state[key].shape)}, "
                              f"expected {list(reference.shape)}")
        if not torch.isfinite(state[key]).all():
            raise BundleError(f"{path}: tensor '{key}' in {name} holds NaN or infinite values")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise BundleError(f"{path}: unexpected tensor '{unexpected[0]}' in {name}")
    return state


def load_bundle(path: str | os.PathLike) -> SubjectBundle:
    path = Path(path)
    with _open_archive(path) as archive:
        manifest = _manifest(archive, path)  # every number in range before anything is built from it
        try:
            generator_config = GeneratorConfig.from_dict(manifest["generator"])
            mapper_config = MapperConfig.from_dict(manifest["mappers"])
            stats = ChannelStats.from_dict(manifest["channel_stats"], ChannelLayout(mapper_config.num_expressions).rig_size)
            edit_specs = specs_from_manifest(manifest, num_ws_of(generator_config.resolution), path)
        except (TypeError, ValueError, KeyError, AttributeError, PVPError) as exc:
            raise BundleError(f"{path}: corrupt bundle, invalid manifest ({exc})") from None
        generator = Generator(generator_config)
        model = PVPModel(mapper_config, generator_config.num_ws, generator_config.w_dim)
        digests = manifest["tensor_files"]
        for module, name in ((generator, GENERATOR_FILE), (model, MAPPERS_FILE)):
            if name not in digests:
                raise BundleError(f"{path}: corrupt bundle, manifest lists no checksum for {name}")
            state = _load_state(archive, name, path, module.state_dict(), digests[name])
            module.load_state_dict(state)
        edits = _load_edits(archive, path, edit_specs, generator_config.w_dim, digests)
        matte = _load_matte(archive, path, manifest, digests)
    generator.eval().requires_grad_(False)
    model.eval().requires_grad_(False)
    return SubjectBundle(name=str(manifest.get("name", path.stem)), generator=generator, model=model,
                         channel_stats=stats, framing=Framing.from_dict(manifest.get("framing", {})),
                         provenance=dict(manifest.get("provenance", {})), edits=edits, matte=matte)


def _load_matte(archive, path: Path, manifest: dict, digests: dict) -> MatteHead | None:
    """The matte head the manifest lists (its numbers were checked with the manifest), or None:
    a bundle without one (every bundle written before alphas existed) renders with alpha 1."""
    if "matte" not in manifest:
        if MATTE_FILE in digests or MATTE_FILE in archive.namelist():
            raise BundleError(f"{path}: corrupt bundle, {MATTE_FILE} is present but the manifest lists no matte")
        return None
    if MATTE_FILE not in digests:
        raise BundleError(f"{path}: corrupt bundle, manifest lists no checksum for {MATTE_FILE}")
    matte = MatteHead(MatteConfig.from_dict(manifest["matte"]))
    matte.load_state_dict(_load_state(archive, MATTE_FILE, path, matte.state_dict(), digests[MATTE_FILE]))
    return matte.eval().requires_grad_(False)


UNIT_NORM_TOLERANCE = 1e-3


def _load_edits(archive, path: Path, specs, w_dim: int, digests: dict) -> EditDirections:
    """The edit directions the manifest lists: exactly those tensors, ``[w_dim]``, unit length."""
    if not specs:
        if EDITS_FILE in digests or EDITS_FILE in archive.namelist():
            raise BundleError(f"{path}: corrupt bundle, {EDITS_FILE} is present but the manifest lists no edits")
        return EditDirections()
    if EDITS_FILE not in digests:
        raise BundleError(f"{path}: corrupt bundle, manifest lists no checksum for {EDITS_FILE}")
    expected = {spec.name: torch.zeros(w_dim) for spec in specs}
    state = _load_state(archive, EDITS_FILE, path, expected, digests[EDITS_FILE])
    vectors = torch.stack([state[spec.name].float() for spec in specs])
    norms = vectors.norm(dim=1)
    for spec, norm in zip(specs, norms.tolist()):
        if abs(norm - 1.0) > UNIT_NORM_TOLERANCE:
            raise BundleError(f"{path}: corrupt bundle, edit direction '{spec.name}' has length {norm:.4g}, "
                              "expected a unit vector")
    return EditDirections(tuple(specs), vectors)


def random_bundle(generator_config: GeneratorConfig, num_pivots: int = 8, num_expressions: int = 50,
                  seed: int = 0, name: str = "random", expression_scale: float = 0.0) -> SubjectBundle:
    """A subject with random weights: for tests, benchmarks, and trying the pipeline without a fit.

    Pivots are mapped from random z so the images look like the generator's
    samples.  With ``expression_scale`` > 0 the mappers' last layers get random
    weights too, so pose and expression visibly change the render.
    """
    torch.manual_seed(seed)
    generator = Generator(generator_config)
    generator.estimate_w_avg(samples=2000, seed=seed)
    model = PVPModel(MapperConfig(num_pivots=num_pivots, num_expressions=num_expressions),
                     generator_config.num_ws, generator_config.w_dim)
    with torch.no_grad():
        z = torch.randn(num_pivots, generator_config.z_dim)
        model.pivots.copy_(generator.mapping(z, truncation_psi=0.7))
        if expression_scale > 0:
            for mlp in [model.pose_mapper.mlp, *model.expression_mapper.layers]:
                torch.nn.init.normal_(mlp[-2].weight, std=expression_scale)
    layout = ChannelLayout(num_expressions)
    stats = ChannelStats(mean=layout.defaults(1)[0], std=layout.defaults(1)[0] * 0 + 1)
    generator.eval().requires_grad_(False)
    model.eval().requires_grad_(False)
    return SubjectBundle(name=name, generator=generator, model=model, channel_stats=stats,
                         provenance=default_provenance("random weights", seed=seed))

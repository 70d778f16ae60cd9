"""A subject bundle's manifest, read without torch.

The ``.pvp`` format itself (tensors, saving, loading) is ``pvp_runtime.bundle``.
This is its torch-free front door: the format constants and the checks on
``manifest.json``, shared by the runtime and the Blender extension, which
reads a subject's expression count, resolution and channel statistics from
the manifest alone (``zipfile`` + ``json``).
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import zip_members
from .channels import MAX_EXPRESSIONS, ChannelLayout, ChannelStats
from .edits import EditSpec, layout_of, num_ws_of, specs_from_manifest
from .errors import BundleError, ChannelError

FORMAT_NAME = "pvp-avatar-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_KEYS = ("generator", "mappers", "channel_stats", "tensor_files")
# A real manifest is a few kB (configs, ~70 channel statistics, provenance); 16 MiB leaves room for
# a long provenance and refuses a decompression bomb before it is inflated.
MANIFEST_MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class Bound:
    """The sane range of one manifest value.  Generators and mappers are built from these
    numbers, so they are checked before anything is allocated from them."""

    low: float = 0
    high: float = 0
    kind: str = "int"  # "int", "real", or "flag" (true or false)
    optional: bool = False  # may be null (conv_clamp)

    def problem(self, value) -> str | None:
        """What the value should have been, or None when it is in range."""
        if value is None and self.optional:
            return None
        if self.kind == "flag":
            return None if isinstance(value, bool) else "true or false"
        if self.kind == "int":
            if not isinstance(value, int) or isinstance(value, bool) or not self.low <= value <= self.high:
                return f"an integer in {self.low}..{self.high}"
        elif (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
              or not self.low <= value <= self.high):
            return f"a number in {self.low}..{self.high}"
        return None


# Every GeneratorConfig and MapperConfig field (tests/test_bundle.py checks none is missing).  The
# upper bounds admit anything StyleGAN2 and the PVP fit produce (1024 px config-f: 512 channels,
# w_dim 512, 8 mapping layers; K = 200 pivots) with room to spare.
GENERATOR_BOUNDS = {
    "resolution": Bound(8, 2048), "z_dim": Bound(1, 1024), "w_dim": Bound(1, 1024),
    "channel_base": Bound(1, 1 << 20), "channel_max": Bound(1, 1024), "mapping_layers": Bound(1, 16),
    "mapping_lr_multiplier": Bound(0, 100, "real"), "img_channels": Bound(1, 4),
    "conv_clamp": Bound(0, 1e6, "real", optional=True),
}
POSE_WARP_MAX_GRID = 64  # model/pose_warp.py: offsets on at most a 64 x 64 grid
MAPPER_BOUNDS = {
    "num_pivots": Bound(1, 2048), "num_expressions": Bound(1, MAX_EXPRESSIONS), "hidden": Bound(1, 4096),
    "beta": Bound(0, 10, "real"), "expression_layers": Bound(1, 32), "gaze": Bound(kind="flag"),
    "standardized": Bound(kind="flag"), "expression_linear": Bound(kind="flag"),
    "pose_warp_grid": Bound(0, POSE_WARP_MAX_GRID), "pose_warp_resolution": Bound(0, 2048),
    "expression_warp_grid": Bound(0, POSE_WARP_MAX_GRID),
}
# The matte head (model/matte.py): it reads the generator's channels at its output resolution.
MATTE_BOUNDS = {"in_channels": Bound(1, 1024), "resolution": Bound(8, 2048), "hidden": Bound(1, 256)}
NUM_WS_BOUND = Bound(2, 20)  # W+ layers: 2 log2(resolution) - 2
REQUIRED_NUMBERS = {"generator": ("resolution", "w_dim", "channel_base"),
                    "mappers": ("num_pivots", "num_expressions")}
CHANNEL_STAT_BOUND = 1e3  # |mean| and std of a channel, in radians or FLAME PCA units
# Placement in the shot (docs/architecture.md, "Placement"): where the head sits in the aligned crop
# (the eye midpoint, x and y in 0..1 of the crop, y down) and how large it is (the distance between
# the eye centres, a fraction of the crop's side).  The defaults are what FFHQ alignment gives a
# frontal face, also used for pass-through crops without landmarks and for bundles made before.
DEFAULT_HEAD_CENTRE = (0.5, 0.47)
DEFAULT_EYE_DISTANCE = 0.25
EYE_DISTANCE_BOUND = Bound(0.02, 1.0, "real")


def open_archive(path: Path) -> zipfile.ZipFile:
    if not path.exists():
        raise BundleError(f"{path}: bundle not found")
    if path.is_dir():
        raise BundleError(f"{path}: is a directory, not a .pvp bundle")
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise BundleError(f"{path}: not a PVP bundle (not a zip archive, or truncated)") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read bundle ({exc.strerror or exc})") from None


def read_member(archive: zipfile.ZipFile, name: str, path: Path, limit: int) -> bytes:
    """A member's bytes; refused before reading when it declares more than ``limit`` bytes."""
    try:
        return zip_members.read_member(archive, name, limit, str(path), BundleError)
    except KeyError:
        raise BundleError(f"{path}: corrupt bundle, member {name} is missing") from None


def check_manifest(archive: zipfile.ZipFile, path: Path) -> dict:
    if MANIFEST not in archive.namelist():
        raise BundleError(f"{path}: not a PVP bundle (no {MANIFEST})")
    try:
        manifest = json.loads(read_member(archive, MANIFEST, path, MANIFEST_MAX_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: corrupt bundle, {MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise BundleError(f"{path}: not a PVP bundle (manifest format is {manifest.get('format')!r})"
                          if isinstance(manifest, dict) else f"{path}: not a PVP bundle")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise BundleError(f"{path}: corrupt bundle, format_version is missing")
    if version > FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format version {version} is newer than this PVP Avatar supports "
                          f"({FORMAT_VERSION}); update PVP Avatar")
    for key in REQUIRED_KEYS:
        if key not in manifest:
            raise BundleError(f"{path}: corrupt bundle, manifest has no '{key}'")
    check_numbers(manifest, path)
    return manifest


def check_numbers(manifest: dict, path: Path) -> None:
    """Every number the loaders size something with, in its sane range (one-line BundleError)."""
    def bad(where: str, value, expected: str) -> BundleError:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return BundleError(f"{path}: corrupt bundle, manifest {where} is {shown}, expected {expected}")

    configs = {}
    for section, bounds in (("generator", GENERATOR_BOUNDS), ("mappers", MAPPER_BOUNDS)):
        config = manifest[section]
        if not isinstance(config, dict):
            raise bad(section, config, "an object")
        for key in REQUIRED_NUMBERS[section]:
            if key not in config:
                raise BundleError(f"{path}: corrupt bundle, manifest has no {section}.{key}")
        for key, bound in bounds.items():  # absent ones take the config's (sane) default
            if key in config and (expected := bound.problem(config[key])):
                raise bad(f"{section}.{key}", config[key], expected)
        configs[section] = config
    generator, mappers = configs["generator"], configs["mappers"]
    resolution = generator["resolution"]
    if resolution & (resolution - 1):
        raise bad("generator.resolution", resolution, "a power of two")
    if generator["channel_base"] < resolution:  # else the last block would have no channels
        raise bad("generator.channel_base", generator["channel_base"], f"at least the resolution ({resolution})")
    # The top-level copies (read by `pvp info`) must say what the configs say.
    copies = {"resolution": resolution, "w_dim": generator["w_dim"], "num_pivots": mappers["num_pivots"],
              "num_expressions": mappers["num_expressions"]}
    for key, value in copies.items():
        if key in manifest and manifest[key] != value:
            raise bad(key, manifest[key], f"{value} as in its generator and mapper configs")
    if "num_ws" in manifest and (expected := NUM_WS_BOUND.problem(manifest["num_ws"])):
        raise bad("num_ws", manifest["num_ws"], expected)
    # The statistics describe the training clip: the rig channels, never the edits.
    _check_channel_stats(manifest["channel_stats"], ChannelLayout(mappers["num_expressions"]).rig_size, bad)
    specs_from_manifest(manifest, num_ws_of(resolution), path)
    if "matte" in manifest:
        _check_matte(manifest["matte"], generator, bad)
    framing = manifest.get("framing", {})
    if not isinstance(framing, dict):
        raise bad("framing", framing, "an object")
    center = framing.get("roll_center", (0.5, 0.5))
    unit = Bound(0, 1, "real")
    if not isinstance(center, (list, tuple)) or len(center) != 2 or any(unit.problem(v) for v in center):
        raise bad("framing.roll_center", center, "two numbers in 0..1 (a point in the crop)")
    head_centre = framing.get("head_centre", DEFAULT_HEAD_CENTRE)
    if not isinstance(head_centre, (list, tuple)) or len(head_centre) != 2 or any(unit.problem(v) for v in head_centre):
        raise bad("framing.head_centre", head_centre, "two numbers in 0..1 (a point in the crop)")
    eye_distance = framing.get("eye_distance", DEFAULT_EYE_DISTANCE)
    if expected := EYE_DISTANCE_BOUND.problem(eye_distance):
        raise bad("framing.eye_distance", eye_distance, expected + " (a fraction of the crop)")


def _check_matte(matte, generator: dict, bad) -> None:
    if not isinstance(matte, dict):
        raise bad("matte", matte, "an object")
    for key, bound in MATTE_BOUNDS.items():
        if key not in matte or (expected := bound.problem(matte[key])):
            raise bad(f"matte.{key}", matte.get(key), expected or "present")
    resolution = generator["resolution"]
    if matte["resolution"] != resolution:
        raise bad("matte.resolution", matte["resolution"], f"{resolution}, the generator's resolution")
    channels = min(generator["channel_base"] // resolution, generator.get("channel_max", 512))
    if matte["in_channels"] != channels:
        raise bad("matte.in_channels", matte["in_channels"], f"{channels}, the generator's channels at {resolution} px")


def has_alpha(manifest: dict) -> bool:
    """Does the subject carry a learnt alpha (a matte head)?  Without one its alpha is 1."""
    return "matte" in manifest


def _check_channel_stats(stats, size: int, bad) -> None:
    if not isinstance(stats, dict):
        raise bad("channel_stats", stats, "an object")
    for key, low in (("mean", -CHANNEL_STAT_BOUND), ("std", 0)):
        values = stats.get(key)
        if not isinstance(values, list) or len(values) != size:
            raise bad(f"channel_stats.{key}", values, f"a list of {size} numbers")
        bound = Bound(low, CHANNEL_STAT_BOUND, "real")
        for index, value in enumerate(values):
            if expected := bound.problem(value):
                raise bad(f"channel_stats.{key}[{index}]", value, expected)


def read_subject_manifest(path: str | os.PathLike) -> dict:
    """Read and check a bundle's manifest without touching its tensors."""
    path = Path(path)
    with open_archive(path) as archive:
        return check_manifest(archive, path)


@dataclass(frozen=True)
class SubjectSummary:
    """What a client needs to know about a subject before rendering it."""

    path: str
    name: str
    resolution: int
    layout: ChannelLayout
    channel_stats: ChannelStats
    gaze: bool = False  # do the eye channels drive this subject?  (only if its capture had gaze)
    edits: tuple[EditSpec, ...] = ()  # its appearance edits, in channel order (layout.edits)
    head_centre: tuple[float, float] = DEFAULT_HEAD_CENTRE  # placement: the eye midpoint in the crop (0..1)
    eye_distance: float = DEFAULT_EYE_DISTANCE  # placement: eye centre to eye centre, a fraction of the crop

    @classmethod
    def read(cls, path: str | os.PathLike) -> "SubjectSummary":
        manifest = read_subject_manifest(path)
        try:
            resolution = int(manifest["generator"]["resolution"])
            edits = specs_from_manifest(manifest, num_ws_of(resolution), path)
            layout = layout_of(int(manifest["mappers"]["num_expressions"]), edits)
            stats = ChannelStats.from_dict(manifest["channel_stats"], layout.rig_size)
            gaze = manifest["mappers"].get("gaze", False) is True
            framing = manifest.get("framing", {})
            head_centre = tuple(float(v) for v in framing.get("head_centre", DEFAULT_HEAD_CENTRE))
            eye_distance = float(framing.get("eye_distance", DEFAULT_EYE_DISTANCE))
        except (KeyError, TypeError, ValueError, AttributeError, ChannelError) as exc:
            raise BundleError(f"{path}: corrupt bundle, invalid manifest ({exc})") from None
        return cls(str(path), str(manifest.get("name", Path(path).stem)), resolution, layout, stats, gaze, edits,
                   head_centre, eye_distance)

"""A subject bundle's manifest, read without torch.

The ``.pvp`` format itself (tensors, saving, loading) is ``pvp_runtime.bundle``.
This is its torch-free front door: the format constants and the checks on
``manifest.json``, shared by the runtime and the Blender extension, which
reads a subject's expression count, resolution and channel statistics from
the manifest alone (``zipfile`` + ``json``).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .channels import ChannelLayout, ChannelStats
from .errors import BundleError, ChannelError

FORMAT_NAME = "pvp-avatar-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_KEYS = ("generator", "mappers", "channel_stats", "tensor_files")


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


def read_member(archive: zipfile.ZipFile, name: str, path: Path) -> bytes:
    try:
        return archive.read(name)
    except KeyError:
        raise BundleError(f"{path}: corrupt bundle, member {name} is missing") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise BundleError(f"{path}: corrupt or truncated bundle ({name}: {exc})") from None


def check_manifest(archive: zipfile.ZipFile, path: Path) -> dict:
    if MANIFEST not in archive.namelist():
        raise BundleError(f"{path}: not a PVP bundle (no {MANIFEST})")
    try:
        manifest = json.loads(read_member(archive, MANIFEST, path))
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
    return manifest


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

    @classmethod
    def read(cls, path: str | os.PathLike) -> "SubjectSummary":
        manifest = read_subject_manifest(path)
        try:
            layout = ChannelLayout(int(manifest["mappers"]["num_expressions"]))
            stats = ChannelStats.from_dict(manifest["channel_stats"], layout.size)
            resolution = int(manifest["generator"]["resolution"])
        except (KeyError, TypeError, ValueError, ChannelError) as exc:
            raise BundleError(f"{path}: corrupt bundle, invalid manifest ({exc})") from None
        return cls(str(path), str(manifest.get("name", Path(path).stem)), resolution, layout, stats)

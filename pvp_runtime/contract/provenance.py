"""What every rendered frame says about itself: the provenance keys, defined once.

The Blender engine adds these as stamp fields to each Render Result (Blender writes them into
PNG text chunks and EXR headers), ``pvp render`` writes them into its PNG and EXR files, and
``pvp verify`` reads them back.  A shot that composites the avatar over another engine's render
writes that engine's stamp, not ours, so there the same keys go into Blender's Note field, one
``key: value`` line each.  Stdlib only: the extension ships this module.
"""

from __future__ import annotations

import hashlib
import os
from typing import Mapping

from .. import __version__

SYNTHETIC = "PVP-Synthetic"       # always "yes": the image is generated, not photographed
SUBJECT = "PVP-Subject"           # the subject's name, as its bundle's manifest gives it
BUNDLE_SHA256 = "PVP-Bundle-SHA256"  # SHA-256 of the .pvp file the frame was rendered from
TOOL = "PVP-Tool"                 # the software and version that rendered it
KEYS = (SYNTHETIC, SUBJECT, BUNDLE_SHA256, TOOL)
PREFIX = "PVP-"


def tool_version() -> str:
    return f"pvp-avatar {__version__}"


def _one_line(text: str) -> str:
    # why: a newline or NUL in a name would break PNG text chunks (NUL ends the key) and Blender's note field
    return " ".join(str(text).replace("\0", " ").split())


def frame_metadata(subject_name: str, bundle_sha256: str) -> dict[str, str]:
    """The key/value pairs every frame rendered from that bundle carries, in ``KEYS`` order."""
    return {SYNTHETIC: "yes", SUBJECT: _one_line(subject_name), BUNDLE_SHA256: bundle_sha256,
            TOOL: tool_version()}


NOTE = "Note"  # the metadata key Blender writes its stamp note under


def note_with_provenance(note: str, metadata: Mapping[str, str]) -> str:
    """A stamp note holding ``metadata`` as ``key: value`` lines first (Blender caps the note's
    length), then the note's own lines that are not PVP keys."""
    own = [line for line in note.splitlines() if line.strip() and not line.startswith(PREFIX)]
    return "\n".join([f"{key}: {value}" for key, value in metadata.items()] + own)


def pvp_fields(metadata: Mapping[str, str]) -> dict[str, str]:
    """The PVP keys among a file's metadata, as fields or as lines of its Note (empty when none)."""
    found = {key: value for key, value in metadata.items() if key.startswith(PREFIX)}
    for line in str(metadata.get(NOTE, "")).splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.startswith(PREFIX):
            found.setdefault(key, value)
    return found


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

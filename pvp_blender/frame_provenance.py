"""Provenance on every frame the engine renders, as Blender stamp fields.

Fields added to the full Render Result (``RenderEngine.get_result()``, not the partial result
of ``begin_result``, whose stamp data is dropped when it is merged) are written by Blender into
PNG text chunks and EXR header strings, whatever the scene's Metadata checkboxes say (checked
on 4.2, 4.5 and 5.0).  The keys are ``contract/provenance.py``'s.  No bpy here: the engine
passes its result in.
"""

from __future__ import annotations

from ..pvp_runtime.contract.provenance import file_sha256, frame_metadata
from ..pvp_runtime.contract.subject_manifest import SubjectSummary
from .runtime_session import subject_key

_digests: dict[tuple, str] = {}  # a bundle is hashed once while its file is unchanged


def bundle_sha256(path: str) -> str:
    key = subject_key(path)
    digest = _digests.get(key)
    if digest is None:
        digest = file_sha256(path)
        _digests.clear()
        _digests[key] = digest
    return digest


def subject_metadata(subject: SubjectSummary) -> dict[str, str]:
    return frame_metadata(subject.name, bundle_sha256(subject.path))


def stamp(result, subject: SubjectSummary) -> None:
    """Add the provenance fields to a Render Result."""
    for key, value in subject_metadata(subject).items():
        result.stamp_data_add_field(key, value)

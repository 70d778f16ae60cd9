"""Crafted subject bundles for tests: a real bundle's archive rewritten with chosen edits."""

import json
import zipfile

from pvp_runtime.bundle import MANIFEST


def rewrite_bundle(src, dst, edit_manifest=None, edit_member=None):
    """Copy bundle ``src`` to ``dst`` member by member: ``edit_manifest(manifest)`` edits the parsed
    manifest in place; ``edit_member(name, data)`` returns another member's new bytes (None drops it)."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for name in a.namelist():
            data = a.read(name)
            if name == MANIFEST and edit_manifest:
                manifest = json.loads(data)
                edit_manifest(manifest)
                data = json.dumps(manifest)
            if name != MANIFEST and edit_member:
                data = edit_member(name, data)
            if data is not None:
                b.writestr(name, data)

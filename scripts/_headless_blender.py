"""What the demo scripts need from Blender, whether they run inside a real Blender
(``blender -b --python ...``) or under the bpy wheel (``python ...``)."""

from __future__ import annotations

import sys

import addon_utils
import bpy

# Installed from a zip ("Install from Disk") or from the extensions platform.
ADDON_CANDIDATES = ("bl_ext.user_default.pvp_avatar", "bl_ext.blender_org.pvp_avatar")
ENGINE_ID = "PVP_AVATAR"


def script_arguments() -> list[str]:
    """Arguments meant for the script: after ``--`` inside Blender, all of them under the wheel."""
    return sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]


def enable_extension() -> str:
    """Enable the installed PVP Avatar extension (the wheel loads no user preferences)."""
    for module in ADDON_CANDIDATES:
        if module not in bpy.context.preferences.addons:
            try:
                addon_utils.enable(module, default_set=True)
            except ModuleNotFoundError:
                continue
        if module in bpy.context.preferences.addons:
            return module
    raise SystemExit("the PVP Avatar extension is not installed in this Blender "
                     "(install dist/pvp_avatar-*.zip: Preferences > Get Extensions > Install from Disk)")

"""PVP Avatar's Blender extension: the FLAME head rig and the "PVP Avatar" render engine.

Layers (as in glTF-Blender-IO and Bonsai): modules without bpy hold the logic
and are tested with plain pytest (``rig_math``, ``runtime_session``,
``interpreters``, ``flame_mesh_math``); the bpy modules are thin
glue (``preferences``, ``properties``, ``rig``, ``engine``, ``operators``, ``ui``,
``animation``, ``compositing``, ``viewport``, ``flame_mesh``).  Nothing here imports torch: the
runtime runs in its own process (``pvp_runtime.server``), reached through
``pvp_runtime.contract.client``.

Importing this package imports no bpy; :func:`register` does.
"""

from __future__ import annotations

# The extension's own package (the repository root, e.g. "bl_ext.user_default.pvp_avatar"):
# what Blender calls the add-on, and so what AddonPreferences.bl_idname must be.
ADDON_PACKAGE = __package__.rpartition(".")[0] or __package__


def _modules():
    from . import compositing, engine, flame_mesh, operators, preferences, properties, ui
    return (preferences, properties, engine, compositing, flame_mesh, operators, ui)


def register():
    for module in _modules():
        module.register()


def unregister():
    for module in reversed(_modules()):
        module.unregister()
    from .runtime_session import SESSION
    SESSION.shutdown()

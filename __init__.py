"""Blender extension entry point.

``blender_manifest.toml`` sits at the repository root, so the root is the
extension's package; the add-on itself is ``pvp_blender`` (relative imports
only, as extensions require).  Outside Blender nothing needs this file, but
pytest imports it (the root is a package to it): imported without a parent
package it defines nothing.  ``pvp_blender`` imports no bpy until register().
"""

if __package__:
    from .pvp_blender import register, unregister  # noqa: F401

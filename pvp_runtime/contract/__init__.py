"""The contract between the runtime and the Blender extension.

Everything in this package imports neither torch nor bpy, so the Blender
extension ships it unchanged: the rig channel schema, channel files, errors,
and (later) the runtime protocol and its client.
"""

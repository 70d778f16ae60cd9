"""Properties stored in the .blend: which objects are PVP rigs, their subject, the scene's rig.

The animatable channels themselves are not here: rotations live on the rig's
pose bones and expression coefficients and appearance edits are custom properties
on the rig object (``rig["expr_00"]``, ``rig["edit_age"]``), both ID data, so F-curves, drivers, NLA and
library overrides work on them (see ``rig.py``).
"""

from __future__ import annotations

import bpy


def _subject_changed(self, context):
    # Local import: rig imports this module.
    from . import rig
    rig.sync_subject(self.id_data)


def _arkit_map_changed(self, context):
    from . import face_controls
    face_controls.sync_map(self.id_data)


def _is_rig(self, obj) -> bool:
    return obj.type == "ARMATURE" and obj.pvp_rig.is_rig


class PVPRigSettings(bpy.types.PropertyGroup):
    is_rig: bpy.props.BoolProperty(name="PVP head rig", default=False, options={"HIDDEN"})
    subject_path: bpy.props.StringProperty(
        name="Subject", subtype="FILE_PATH", update=_subject_changed,
        description="Subject bundle (.pvp) this rig drives. Keep it next to the .blend with a // relative path "
                    "so farm packers and other machines find it")
    num_expressions: bpy.props.IntProperty(name="Expressions", default=50, min=1, max=400,
                                           description="Expression channels on this rig (from the subject)")
    subject_status: bpy.props.StringProperty(name="Subject status", options={"SKIP_SAVE"})
    edit_names: bpy.props.StringProperty(name="Edits", options={"HIDDEN"},
                                         description="The subject's edit channels (edit_<name>), comma-separated")
    edits_note: bpy.props.StringProperty(name="Edits note", options={"SKIP_SAVE"},
                                         description="Keyed edits the current subject lacks")
    lock_to_frame_centre: bpy.props.BoolProperty(
        name="Lock to Frame Centre", default=False,
        description="Render the avatar centred and scaled to fit the frame, wherever the rig and the camera are "
                    "(the framing before placement; for talking-head shots). Off: the avatar sits where the "
                    "camera sees the rig's eyes, and moves and scales with the rig and the camera")
    eyes_note: bpy.props.StringProperty(name="Eyes", options={"SKIP_SAVE"},
                                        description="Why the eye channels do nothing on this subject, if they don't")
    arkit_map: bpy.props.StringProperty(
        name="ARKit Map", subtype="FILE_PATH", update=_arkit_map_changed,
        description="ARKit -> FLAME map (our .npz from pvp learn-arkit-map, EMAGE's mat_final.npy or a "
                    "mediapipe-blendshapes-to-flame mappings folder): gives the rig the 52 ARKit sliders of the "
                    "Face panel, which add to the FLAME channels through it")
    face_status: bpy.props.StringProperty(name="Face status", options={"SKIP_SAVE"})


class PVPSceneSettings(bpy.types.PropertyGroup):
    rig: bpy.props.PointerProperty(name="Rig", type=bpy.types.Object, poll=_is_rig,
                                   description="The PVP head rig this scene renders (empty: the only one in the scene)")
    overlay_of: bpy.props.PointerProperty(name="Overlay of", type=bpy.types.Scene,
                                          description="The shot this scene renders the avatar for (its compositor "
                                                      "lays this scene over its own render)")
    prefetch: bpy.props.BoolProperty(name="Prefetch frames", default=True,
                                     description="During an animation render, read the rig for the next frames and "
                                                 "render them in one batch")


CLASSES = (PVPRigSettings, PVPSceneSettings)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Object.pvp_rig = bpy.props.PointerProperty(type=PVPRigSettings)
    bpy.types.Scene.pvp = bpy.props.PointerProperty(type=PVPSceneSettings)


def unregister():
    del bpy.types.Scene.pvp
    del bpy.types.Object.pvp_rig
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

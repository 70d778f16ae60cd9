"""Panels and menu entries: the "PVP" sidebar tab, Add menu, Render Properties panel."""

from __future__ import annotations

import bpy

from ..pvp_runtime.contract.arkit import ARKIT_GROUPS, ARKIT_NAMES, PROPERTY_PREFIX, arkit_group
from ..pvp_runtime.contract.errors import PVPError
from . import rig as rig_module
from .engine import ENGINE_ID
from .rig_math import BONES_BY_NAME, HEAD_EULER_ORDER, bone_channel_names
from .runtime_session import SESSION

HEAD_LABELS = {0: "Pitch (down +)", 1: "Yaw (subject's left +)", 2: "Roll (counter-clockwise +)"}


def panel_rig(context):
    obj = context.object
    if obj is not None and obj.type == "ARMATURE" and obj.pvp_rig.is_rig:
        return obj
    try:
        return rig_module.scene_rig(context.scene)
    except PVPError:
        return None


class PVPSidebar:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "PVP"


class VIEW3D_PT_pvp_rig(PVPSidebar, bpy.types.Panel):
    bl_label = "PVP Avatar"

    def draw(self, context):
        layout = self.layout
        rig = panel_rig(context)
        if rig is None:
            layout.operator("pvp.add_head_rig", icon="ARMATURE_DATA")
            return
        layout.label(text=rig.name, icon="ARMATURE_DATA")
        layout.prop(rig.pvp_rig, "subject_path")
        status = rig.pvp_rig.subject_status
        if status:
            layout.label(text=status, icon="INFO")
        layout.prop(rig.pvp_rig, "lock_to_frame_centre")
        row = layout.row(align=True)
        row.operator("pvp.sync_subject", icon="FILE_REFRESH")
        row.operator("pvp.reset_channels", text="Reset All", icon="LOOP_BACK").group = "all"
        row = layout.row(align=True)
        row.operator("pvp.preview_frame", icon="IMAGE_DATA")
        row.operator("pvp.import_channels", icon="IMPORT")
        row = layout.row(align=True)
        row.operator("pvp.setup_overlay", icon="NODE_COMPOSITING")
        row.operator("pvp.add_flame_mesh", icon="MESH_MONKEY")
        layout.label(text=f"Runtime: {SESSION.status()}", icon="SYSTEM")
        layout.operator("pvp.free_runtime", icon="TRASH")


class _RigGroupPanel(PVPSidebar):
    """A sub-panel of the rig for one channel group, with that group's reset button."""
    bl_parent_id = "VIEW3D_PT_pvp_rig"
    group = ""

    @classmethod
    def poll(cls, context):
        return panel_rig(context) is not None

    def draw_header_preset(self, context):
        self.layout.operator("pvp.reset_channels", text="", icon="LOOP_BACK", emboss=False).group = self.group


class _ChannelGroupPanel(_RigGroupPanel):
    bones: tuple[str, ...] = ()

    def draw(self, context):
        rig = panel_rig(context)
        if self.group == "eyes" and rig.pvp_rig.eyes_note:
            self.layout.label(text=rig.pvp_rig.eyes_note, icon="INFO")
        col = self.layout.column(align=True)
        for bone_name in self.bones:
            pose_bone = rig.pose.bones.get(bone_name)
            if pose_bone is None:
                col.label(text=f"bone '{bone_name}' is missing", icon="ERROR")
                continue
            bone = BONES_BY_NAME[bone_name]
            mode = pose_bone.rotation_mode
            if len(mode) == 3:  # an Euler order
                for index in range(3):
                    if bone.group == "head" and mode == HEAD_EULER_ORDER:
                        text = HEAD_LABELS[index]
                    elif bone.group != "head" and mode == "XYZ":  # small angles: Euler ~ FLAME axis-angle
                        text = bone_channel_names(bone)[index]
                    else:
                        text = f"{bone_name} {'XYZ'[index]}"
                    col.prop(pose_bone, "rotation_euler", index=index, text=text, slider=True)
            else:  # quaternion or axis-angle: the bone's own values (still read as a rotation)
                path = "rotation_quaternion" if mode == "QUATERNION" else "rotation_axis_angle"
                col.label(text=f"{bone_name} ({mode.lower().replace('_', '-')})")
                col.prop(pose_bone, path, text="")


class VIEW3D_PT_pvp_head(_ChannelGroupPanel, bpy.types.Panel):
    bl_label = "Head"
    bones = ("head",)
    group = "head"


class VIEW3D_PT_pvp_neck(_ChannelGroupPanel, bpy.types.Panel):
    bl_label = "Neck"
    bones = ("neck",)
    group = "neck"
    bl_options = {"DEFAULT_CLOSED"}


class VIEW3D_PT_pvp_jaw(_ChannelGroupPanel, bpy.types.Panel):
    bl_label = "Jaw"
    bones = ("jaw",)
    group = "jaw"


class VIEW3D_PT_pvp_eyes(_ChannelGroupPanel, bpy.types.Panel):
    bl_label = "Eyes"
    bones = ("eye.L", "eye.R")
    group = "eyes"
    bl_options = {"DEFAULT_CLOSED"}


class VIEW3D_PT_pvp_expressions(_RigGroupPanel, bpy.types.Panel):
    bl_label = "Expressions"
    group = "expression"

    def draw(self, context):
        rig = panel_rig(context)
        col = self.layout.column(align=True)
        col.label(text=f"{rig.pvp_rig.num_expressions} FLAME PCA coefficients (no semantic names)")
        for name in rig_module.expression_names(rig.pvp_rig.num_expressions):
            if name in rig.keys():
                col.prop(rig, f'["{name}"]', slider=True)


class VIEW3D_PT_pvp_edits(_RigGroupPanel, bpy.types.Panel):
    """The subject's appearance edits (GANSpace / InterFaceGAN directions in its bundle), as
    keyframable sliders; edits of an earlier subject that still hold keys are listed as problems."""
    bl_label = "Edits"
    group = "edit"

    def draw(self, context):
        rig = panel_rig(context)
        col = self.layout.column(align=True)
        names = [name for name in rig.pvp_rig.edit_names.split(",") if name]
        if not names:
            col.label(text="This subject has no edits (pvp edits compute / add)")
        for name in names:
            if name in rig.keys():
                col.prop(rig, f'["{name}"]', text=name[len("edit_"):], slider=True)
        if rig.pvp_rig.edits_note:
            col.label(text=rig.pvp_rig.edits_note, icon="ERROR")
            for name in rig_module.edit_properties(rig):
                if name not in names:
                    col.prop(rig, f'["{name}"]', text=f"{name[len('edit_'):]} (not in subject)")


class VIEW3D_PT_pvp_face(_RigGroupPanel, bpy.types.Panel):
    """ARKit's 52 named controls (jawOpen, mouthSmileLeft ...) as keyframable sliders, grouped like
    ARKit's; shown when the rig has an ARKit map, through which they add to the FLAME channels."""
    bl_label = "Face"
    group = "face"

    def draw(self, context):
        rig = panel_rig(context)
        layout = self.layout
        layout.prop(rig.pvp_rig, "arkit_map")
        status = rig.pvp_rig.face_status
        if not rig.pvp_rig.arkit_map:
            layout.label(text="Set an ARKit map for named controls (pvp learn-arkit-map)", icon="INFO")
            return
        if status:
            layout.label(text=status, icon="INFO")
        for group in ARKIT_GROUPS:
            col = layout.column(align=True)
            col.label(text=group.title())
            for name in ARKIT_NAMES:
                prop = PROPERTY_PREFIX + name
                if arkit_group(name) == group and prop in rig.keys():
                    col.prop(rig, f'["{prop}"]', text=name, slider=True)


class RENDER_PT_pvp_avatar(bpy.types.Panel):
    bl_label = "PVP Avatar"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"
    COMPAT_ENGINES = {ENGINE_ID}

    @classmethod
    def poll(cls, context):
        return context.engine in cls.COMPAT_ENGINES

    def draw(self, context):
        layout = self.layout
        settings = context.scene.pvp
        layout.prop(settings, "rig")
        layout.prop(settings, "prefetch")
        render = context.scene.render
        if render.use_border:
            layout.label(text="Render Region: the avatar is cropped like any render", icon="INFO")
        layout.label(text=f"Runtime: {SESSION.status()}", icon="SYSTEM")
        row = layout.row(align=True)
        row.operator("pvp.free_runtime", icon="TRASH")
        row.operator("pvp.stop_runtime", icon="CANCEL")


def draw_add_menu(self, context):
    self.layout.operator("pvp.add_head_rig", icon="ARMATURE_DATA")


CLASSES = (VIEW3D_PT_pvp_rig, VIEW3D_PT_pvp_head, VIEW3D_PT_pvp_neck, VIEW3D_PT_pvp_jaw, VIEW3D_PT_pvp_eyes,
           VIEW3D_PT_pvp_expressions, VIEW3D_PT_pvp_edits, VIEW3D_PT_pvp_face, RENDER_PT_pvp_avatar)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.VIEW3D_MT_add.append(draw_add_menu)


def unregister():
    bpy.types.VIEW3D_MT_add.remove(draw_add_menu)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

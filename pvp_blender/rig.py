"""The PVP head rig: building it, its expression channels, and reading its channels per frame.

Rotations are pose-bone rotations (see ``rig_math`` for the bone <-> channel
mapping); expression coefficients are custom properties on the rig object,
named like the channels (``expr_00``), with the schema's soft range as slider
range and its hard range as limits.  A subject's appearance edits are custom
properties too (``edit_<name>``, range from the bundle); properties of edits the
current subject lacks are kept (with their keys) and reported, never dropped.  The subject bundle path is on the rig
(``rig.pvp_rig.subject_path``) and may be ``//`` relative.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..pvp_runtime.contract.channels import (EDIT_PREFIX, ChannelLayout, expression_channels, expression_name,
                                             validate_frames)
from ..pvp_runtime.contract.errors import BundleError, ChannelError, PVPError
from . import face_controls
from .rig_math import HEAD_EULER_ORDER, JOINT_EULER_ORDER, RIG_BONES, accumulated_rotation, channels_from_pose

# Bone layout in metres, rig origin at the base of the neck; the face looks along -Y.
# (name, head, tail, parent).  Bones pointing forward get a roll that keeps their local X on +X,
# so on every bone the X Euler angle is FLAME's x rotation (nod / jaw open).
BONE_LAYOUT = (
    ("head", (0.0, 0.0, 0.0), (0.0, 0.0, 0.09), None),
    ("neck", (0.0, 0.0, 0.09), (0.0, 0.0, 0.25), "head"),
    ("jaw", (0.0, -0.01, 0.13), (0.0, -0.09, 0.09), "neck"),
    ("eye.L", (0.032, -0.075, 0.165), (0.032, -0.095, 0.165), "neck"),
    ("eye.R", (-0.032, -0.075, 0.165), (-0.032, -0.095, 0.165), "neck"),
)
GROUPS = ("head", "neck", "jaw", "eyes", "expression", "edit", "face")
# A subject learns gaze only from a capture whose eyes moved; keyed eyes then change nothing.
EYES_WITHOUT_EFFECT = "No effect on this subject (its capture had no gaze)"


# --------------------------------------------------------------------------- building

def add_head_rig(context, name: str = "PVP Head", num_expressions: int = 50, subject_path: str = ""):
    """A new rig at the 3D cursor, made active and selected.  Works in background mode."""
    if context.object is not None and context.object.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    armature = bpy.data.armatures.new(name)
    armature.display_type = "OCTAHEDRAL"
    rig = bpy.data.objects.new(name, armature)
    rig.location = context.scene.cursor.location
    rig.show_in_front = True
    context.collection.objects.link(rig)
    for obj in context.view_layer.objects:
        obj.select_set(False)
    context.view_layer.objects.active = rig
    rig.select_set(True)
    bpy.ops.object.mode_set(mode="EDIT")
    for bone_name, head, tail, parent in BONE_LAYOUT:
        bone = armature.edit_bones.new(bone_name)
        bone.head, bone.tail = head, tail
        direction = np.subtract(tail, head)
        bone.align_roll(tuple(np.cross((1.0, 0.0, 0.0), direction / np.linalg.norm(direction))))
        if parent:
            bone.parent = armature.edit_bones[parent]
            bone.use_connect = False
    bpy.ops.object.mode_set(mode="OBJECT")
    for bone_name, *_ in BONE_LAYOUT:
        pose_bone = rig.pose.bones[bone_name]
        pose_bone.rotation_mode = HEAD_EULER_ORDER if bone_name == "head" else JOINT_EULER_ORDER
        pose_bone.lock_location = (True, True, True)  # FLAME joints only rotate
    rig.pvp_rig.is_rig = True
    rig.pvp_rig.num_expressions = num_expressions
    ensure_expression_properties(rig, num_expressions)
    if subject_path:
        rig.pvp_rig.subject_path = subject_path  # syncs the expression count from the subject
    if context.scene.pvp.rig is None:
        context.scene.pvp.rig = rig
    if context.scene.camera is None:
        add_front_camera(context, rig)
    return rig


def add_front_camera(context, rig):
    """Blender renders nothing without a camera, whatever the engine: give the scene one that looks
    at the face, framed so that the placed avatar fills a square render (``placement.py``)."""
    from .placement import frame_front_camera
    camera = bpy.data.objects.new("PVP Camera", bpy.data.cameras.new("PVP Camera"))
    frame_front_camera(camera, rig, context.scene.render)
    context.collection.objects.link(camera)
    context.scene.camera = camera
    return camera


def rig_subject(rig):
    """The rig's subject summary (BundleError when it has none or it cannot be read)."""
    from .runtime_session import SESSION
    return SESSION.subject(subject_file(rig))


def expression_names(count: int) -> list[str]:
    return [expression_name(i, count) for i in range(count)]


def ensure_expression_properties(rig, count: int) -> None:
    """Give the rig exactly ``count`` expression properties, keeping values and F-curves of the
    ones that stay (renaming them when the name width changes, e.g. 50 -> 200 expressions)."""
    old_count = rig.pvp_rig.num_expressions
    old_names = [name for name in expression_names(old_count) if name in rig.keys()]
    new_names = expression_names(count)
    specs = expression_channels(count)
    # By channel number, whether or not its property is still there: a deleted expr_03 must not
    # shift expr_04's F-curve onto expr_003.
    renames = {f'["{expression_name(i, old_count)}"]': f'["{new_names[i]}"]'
               for i in range(min(old_count, count)) if expression_name(i, old_count) != new_names[i]}
    values = {name: float(rig[name]) for name in old_names}
    for name in old_names:
        del rig[name]
    for i, (name, spec) in enumerate(zip(new_names, specs)):
        old = expression_name(i, old_count)
        rig[name] = values.get(old, spec.default)
        ui = rig.id_properties_ui(name)
        ui.update(min=spec.hard_min, max=spec.hard_max, soft_min=spec.soft_min, soft_max=spec.soft_max,
                  default=spec.default, description=spec.description, step=10, precision=3)
        rig.property_overridable_library_set(f'["{name}"]', True)
    if renames:
        from .animation import rename_fcurves
        rename_fcurves(rig, renames)
    rig.pvp_rig.num_expressions = count


def edit_properties(rig) -> list[str]:
    """The rig's edit properties (``edit_<name>``), whether or not its subject has them."""
    return sorted(key for key in rig.keys() if key.startswith(EDIT_PREFIX))


def ensure_edit_properties(rig, layout: ChannelLayout) -> None:
    """Give the rig a property per subject edit, with the bundle's range; keep the values and keys
    of those it already has.  Others stay (an earlier subject's, maybe keyed): see ``stray_edits``."""
    for spec in layout.specs[layout.rig_size:]:
        if spec.name not in rig.keys():
            rig[spec.name] = spec.default
        ui = rig.id_properties_ui(spec.name)
        ui.update(min=spec.hard_min, max=spec.hard_max, soft_min=spec.soft_min, soft_max=spec.soft_max,
                  default=spec.default, description=spec.description, step=10, precision=3)
        rig.property_overridable_library_set(f'["{spec.name}"]', True)
    rig.pvp_rig.edit_names = ",".join(layout.edit_names)


def stray_edits(rig, layout: ChannelLayout) -> list[str]:
    """Edit properties the subject lacks that hold a key, a driver or a non-zero value."""
    from .animation import fcurve_collection
    animated = set()
    collections = [fcurve_collection(rig, create=False)]
    if rig.animation_data is not None:
        collections.append(rig.animation_data.drivers)
    for fcurves in collections:
        animated.update(fcurve.data_path for fcurve in fcurves or ())
    known = set(layout.edit_names)
    return [name for name in edit_properties(rig) if name not in known
            and (f'["{name}"]' in animated or float(rig.get(name, 0.0)) != 0.0)]


def subject_file(rig) -> str:
    """The rig's subject bundle as an absolute path (``//`` resolved against the rig's .blend)."""
    path = rig.pvp_rig.subject_path
    if not path:
        raise BundleError(f"rig '{rig.name}' has no subject: set its subject bundle (.pvp) in the PVP panel")
    return bpy.path.abspath(path, library=rig.library)


def sync_subject(rig) -> str | None:
    """Match the rig's expression channels to its subject (runs when the subject path changes).

    Returns the problem in one line, or None; either way the rig's status line shows it.
    """
    from .runtime_session import SESSION
    try:
        summary = SESSION.subject(subject_file(rig))
    except PVPError as exc:
        rig.pvp_rig.subject_status = str(exc)
        rig.pvp_rig.eyes_note = ""
        return str(exc)
    rig.pvp_rig.eyes_note = "" if summary.gaze else EYES_WITHOUT_EFFECT
    if summary.layout.num_expressions != rig.pvp_rig.num_expressions:
        ensure_expression_properties(rig, summary.layout.num_expressions)
    ensure_edit_properties(rig, summary.layout)
    stray = stray_edits(rig, summary.layout)
    rig.pvp_rig.edits_note = (f"{', '.join(stray)}: keyed or set, but {summary.name} has no such edit"
                              if stray else "")
    if stray:
        print(f"PVP Avatar: rig '{rig.name}': {rig.pvp_rig.edits_note}")
    edits = f", {len(summary.layout.edits)} edits" if summary.layout.edits else ""
    rig.pvp_rig.subject_status = (f"{summary.name}: {summary.resolution} x {summary.resolution}, "
                                  f"{summary.layout.num_expressions} expressions{edits}")
    return None


def scene_rig(scene):
    """The rig a scene renders: the scene's chosen rig, else its only PVP rig."""
    chosen = scene.pvp.rig
    if chosen is not None:
        return chosen
    rigs = [obj for obj in scene.objects if obj.type == "ARMATURE" and obj.pvp_rig.is_rig]
    if not rigs:
        raise PVPError(f"scene '{scene.name}' has no PVP head rig (Add > PVP Head Rig)")
    if len(rigs) > 1:
        raise PVPError(f"scene '{scene.name}' has {len(rigs)} PVP rigs: choose one in Render Properties > PVP Avatar")
    return rigs[0]


# --------------------------------------------------------------------------- reading

def read_channels(rig_eval, layout: ChannelLayout, frame: int, check_edits: bool = True) -> np.ndarray:
    """The validated channel vector of an *evaluated* rig at ``frame``.

    Pose matrices include F-curves, drivers, NLA and constraints; custom properties
    on the evaluated object include their animation and drivers; the ARKit sliders add through
    the rig's map (``face_controls``).  An edit property the
    layout lacks must be 0 (``check_edits``; the FLAME display mesh reads the rig channels
    alone and does not care).
    """
    source = f"rig '{rig_eval.name}'"
    accumulated = {}
    for bone in RIG_BONES:
        pose_bone = rig_eval.pose.bones.get(bone.name)
        if pose_bone is not None:
            accumulated[bone.name] = accumulated_rotation(np.array(pose_bone.matrix),
                                                          np.array(pose_bone.bone.matrix_local))
    count = rig_eval.pvp_rig.num_expressions
    values = []
    for i, name in enumerate(expression_names(count)):
        raw = rig_eval.get(name, 0.0)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ChannelError(f"{source}: frame {frame}, channel '{name}' holds {raw!r}, not a number") from None
        if i >= layout.num_expressions and value != 0.0:
            raise ChannelError(f"{source}: frame {frame}, channel '{name}' = {value:.4g} but the subject has only "
                               f"{layout.num_expressions} expressions")
        values.append(value)
    channels = channels_from_pose(accumulated, values, layout)
    channels = face_controls.add_face_controls(channels, rig_eval, layout, frame)  # ARKit sliders, through the map
    for column, name in enumerate(layout.edit_names, start=layout.rig_size):
        channels[column] = _number(rig_eval.get(name, 0.0), source, frame, name)
    known = set(layout.edit_names)
    for name in edit_properties(rig_eval) if check_edits else ():
        if name not in known and _number(rig_eval[name], source, frame, name) != 0.0:
            raise ChannelError(f"{source}: frame {frame}, channel '{name}' = {float(rig_eval[name]):.4g} but the "
                               f"subject has no such edit (its edits: {', '.join(layout.edit_names) or 'none'})")
    return validate_frames(channels[None], layout, source, first_frame=frame)[0]


def _number(raw, source: str, frame: int, name: str) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ChannelError(f"{source}: frame {frame}, channel '{name}' holds {raw!r}, not a number") from None


# --------------------------------------------------------------------------- resetting

def reset_channels(rig, group: str) -> None:
    """Put a channel group back to its defaults (rest pose, zero expression)."""
    groups = GROUPS if group == "all" else (group,)
    for bone in RIG_BONES:
        if bone.group in groups and bone.name in rig.pose.bones:
            pose_bone = rig.pose.bones[bone.name]
            pose_bone.rotation_euler = (0.0, 0.0, 0.0)
            pose_bone.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
            pose_bone.rotation_axis_angle = (0.0, 0.0, 1.0, 0.0)
    if "expression" in groups:
        for name in expression_names(rig.pvp_rig.num_expressions):
            if name in rig.keys():
                rig[name] = 0.0
    if "edit" in groups:
        for name in edit_properties(rig):
            rig[name] = 0.0
    if "face" in groups:
        face_controls.reset(rig)

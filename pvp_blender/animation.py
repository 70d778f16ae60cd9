"""Writing channel clips into the rig as keyframes, in bulk (``keyframe_points.foreach_set``).

Three action APIs, chosen by ``bpy.app.version`` (each checked with that Blender's wheel):

* 4.2/4.3: flat actions, ``action.fcurves.new(path, index=, action_group=)``.
* 4.4/4.5: slotted actions (``action.slots``, channelbags), but no
  ``anim_utils.action_ensure_channelbag_for_slot`` and a channelbag's ``fcurves.new`` takes
  no group: the layer, strip and channelbag are made by hand, the group set on the F-curve.
* 5.0: slotted only (``action.fcurves`` is gone); ``action_ensure_channelbag_for_slot`` and
  ``fcurves.new(..., group_name=)``.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..pvp_runtime.contract.channels import ChannelLayout
from .key_splice import splice_keys
from .rig import expression_names
from .rig_math import RIG_BONES, bone_basis_rotations, rotation_values

ROTATION_PATHS = {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}


def fcurve_collection(obj, create: bool = True):
    """The F-curve collection of the object's action (for its slot), created if asked."""
    animation = obj.animation_data or (obj.animation_data_create() if create else None)
    if animation is None:
        return None
    action = animation.action
    if action is None:
        if not create:
            return None
        action = bpy.data.actions.new(f"{obj.name}Action")
        animation.action = action
    if bpy.app.version < (4, 4, 0):  # why: slotted actions arrived in 4.4; before, an action is one F-curve list
        return action.fcurves
    from bpy_extras import anim_utils
    slot = animation.action_slot
    if slot is None:
        if not create:
            return None
        slot = action.slots.new(id_type="OBJECT", name=obj.name)
        animation.action_slot = slot
    bag = anim_utils.action_get_channelbag_for_slot(action, slot)
    if bag is None and create:
        bag = _ensure_channelbag(action, slot)
    return bag.fcurves if bag else None


def _ensure_channelbag(action, slot):
    if bpy.app.version >= (5, 0, 0):
        from bpy_extras import anim_utils
        return anim_utils.action_ensure_channelbag_for_slot(action, slot)
    # why: 4.4/4.5 have no action_ensure_channelbag_for_slot; an action holds one layer with one
    # keyframe strip there (what keyframe_insert makes), whose channelbag() can create the slot's bag.
    layer = action.layers[0] if action.layers else action.layers.new("Layer")
    strip = layer.strips[0] if layer.strips else layer.strips.new(type="KEYFRAME")
    return strip.channelbag(slot, ensure=True)


def new_fcurve(fcurves, data_path: str, index: int, group: str):
    """A new F-curve in ``fcurves`` (from :func:`fcurve_collection`), in the channel group ``group``."""
    if bpy.app.version >= (5, 0, 0):
        return fcurves.new(data_path, index=index, group_name=group)
    if bpy.app.version < (4, 4, 0):  # why: flat actions name the group with action_group
        return fcurves.new(data_path, index=index, action_group=group)
    # why: a 4.4/4.5 channelbag's fcurves.new takes no group; groups live on the channelbag
    # (the collection's owner, ``fcurves.data``) and are assigned to the F-curve.
    fcurve = fcurves.new(data_path, index=index)
    bag = fcurves.data
    fcurve.group = bag.groups.get(group) or bag.groups.new(group)
    return fcurve


def write_keys(fcurves, data_path: str, index: int, times: np.ndarray, values: np.ndarray, group: str) -> None:
    """Key ``values`` at ``times`` (ascending frames) on one F-curve, made if missing; an existing
    curve keeps its animation outside the clip's frames (see ``key_splice``)."""
    fcurve = fcurves.find(data_path, index=index)
    if fcurve is None:
        fcurve = new_fcurve(fcurves, data_path, index, group)
    splice_keys(fcurve, np.asarray(times, dtype=np.float64), np.asarray(values, dtype=np.float64))


def rename_fcurves(obj, renames: dict[str, str]) -> None:
    """Point F-curves and drivers at renamed properties (``'["expr_00"]'`` -> ``'["expr_000"]'``)."""
    collections = [fcurve_collection(obj, create=False)]
    if obj.animation_data is not None:
        collections.append(obj.animation_data.drivers)
    for fcurves in collections:
        for fcurve in fcurves or ():
            if fcurve.data_path in renames:
                fcurve.data_path = renames[fcurve.data_path]


def key_clip(rig, frames: np.ndarray, layout: ChannelLayout, times: np.ndarray, key_all: bool = False) -> int:
    """Keyframe a clip (``[F, layout.size]``) on the rig at ``times``.  Returns the F-curves written.

    Each keyed channel's keys within the clip's frames are replaced and its animation outside
    them is kept (``key_splice``).  Channel groups that stay at their default for the whole clip
    are left alone unless ``key_all``, so a clip without eye or neck data does not erase that
    animation.
    """
    frames = np.asarray(frames, dtype=np.float64)
    defaults = layout.defaults(1)[0]
    moving = lambda part: key_all or bool(np.any(frames[:, part] != defaults[part]))
    fcurves = fcurve_collection(rig)
    written = 0
    rest = {b.name: np.array(b.matrix_local) for b in rig.data.bones}
    parents = {b.name: (b.parent.name if b.parent else None) for b in rig.data.bones}
    basis = bone_basis_rotations(frames, layout, rest, parents)
    for bone in RIG_BONES:
        if bone.name not in rig.pose.bones or not moving(layout.slice(bone.group)):
            continue
        pose_bone = rig.pose.bones[bone.name]
        mode = pose_bone.rotation_mode
        values = rotation_values(basis[bone.name], mode)
        path = f'pose.bones["{bone.name}"].{ROTATION_PATHS.get(mode, "rotation_euler")}'
        for index in range(values.shape[1]):
            write_keys(fcurves, path, index, times, values[:, index], bone.name)
            written += 1
    expression = layout.slice("expression")
    for i, name in enumerate(expression_names(rig.pvp_rig.num_expressions)[:layout.num_expressions]):
        column = expression.start + i
        if key_all or np.any(frames[:, column] != defaults[column]):
            write_keys(fcurves, f'["{name}"]', 0, times, frames[:, column], "Expressions")
            written += 1
    for column, name in enumerate(layout.edit_names, start=layout.rig_size):
        if (key_all or np.any(frames[:, column] != defaults[column])) and name in rig.keys():
            write_keys(fcurves, f'["{name}"]', 0, times, frames[:, column], "Edits")
            written += 1
    return written


def key_properties(rig, names, values: np.ndarray, times: np.ndarray, group: str) -> int:
    """Key custom properties ``names`` (columns of ``values`` [F, len(names)]) at ``times``, keeping
    their animation outside the clip's frames (``key_splice``).  Returns the F-curves written."""
    fcurves = fcurve_collection(rig)
    for column, name in enumerate(names):
        write_keys(fcurves, f'["{name}"]', 0, times, np.asarray(values[:, column], dtype=np.float64), group)
    return len(names)

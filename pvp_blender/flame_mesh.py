"""The posed FLAME mesh on a head rig: built from the user's FLAME file, kept posed by Blender itself.

The FLAME file is never bundled or copied into the extension: its path is an
add-on preference (``flame_model``), read when the mesh is built.  The mesh is
a child of the rig with an Armature modifier (neck, jaw and eyes turn it), and
shape keys for expressions (driven by the rig's ``expr_NN`` properties, so they
follow F-curves, drivers and NLA without any code running) and pose
correctives (set from the rig's channels by a handler on every frame change
and every edit).  The numbers come from :mod:`.flame_mesh_math`.
"""

from __future__ import annotations

import bpy
import numpy as np
from bpy.app.handlers import persistent

from ..pvp_runtime.contract.channels import ChannelLayout
from ..pvp_runtime.contract.errors import PVPError
from ..pvp_runtime.formats.flame import read_flame_model
from . import rig as rig_module
from .flame_mesh_math import (BONE_OF_JOINT, NUM_CORRECTIVES, SHAPE_KEY_LIMIT, corrective_name, corrective_values,
                              face_offsets, flame_mesh_data)

MESH_FLAG = "pvp_flame_mesh"  # custom property marking the mesh objects this module keeps posed
FLAME_FILE = "pvp_flame_file"  # the FLAME file a mesh was built from (ARKit shape keys are rebuilt from it)


def flame_meshes(rig) -> list:
    return [child for child in rig.children if child.get(MESH_FLAG)]


def add_flame_mesh(context, rig, flame_path: str):
    """Build (or rebuild) the FLAME mesh of ``rig`` from the FLAME file at ``flame_path``."""
    model = read_flame_model(bpy.path.abspath(flame_path))  # AssetError: one line naming the file
    data = flame_mesh_data(model, rig.pvp_rig.num_expressions)
    for old in flame_meshes(rig):
        mesh = old.data
        bpy.data.objects.remove(old)
        if mesh.users == 0:
            bpy.data.meshes.remove(mesh)
    _place_bones_on_joints(context, rig, data.joints)

    mesh = bpy.data.meshes.new("FLAME")
    mesh.from_pydata(data.vertices.tolist(), [], data.faces.tolist())
    mesh.update()
    obj = bpy.data.objects.new(f"{rig.name} FLAME", mesh)
    for collection in rig.users_collection:
        collection.objects.link(obj)
    obj.parent = rig
    obj.matrix_parent_inverse.identity()
    obj[MESH_FLAG] = True
    obj[FLAME_FILE] = flame_path

    for joint, bone_name in enumerate(BONE_OF_JOINT):
        group = obj.vertex_groups.new(name=bone_name)
        weights = data.weights[:, joint]
        for value in np.unique(weights[weights > 0]):
            group.add(np.flatnonzero(weights == value).tolist(), float(value), "REPLACE")
    modifier = obj.modifiers.new("FLAME joints", "ARMATURE")
    modifier.object = rig
    modifier.use_vertex_groups = True

    obj.shape_key_add(name="Basis", from_mix=False)
    names = rig_module.expression_names(rig.pvp_rig.num_expressions)
    for name, offsets in zip(names, data.expression_offsets):
        _driven_key(obj, name, data.vertices + offsets, rig, name)
    for index in range(NUM_CORRECTIVES):
        _shape_key(obj, corrective_name(index), data.vertices + data.corrective_offsets[index])
    update_face_shape_keys(rig, obj, data)
    update_correctives(rig, obj, context.evaluated_depsgraph_get(), context.scene.frame_current)
    return obj


def _driven_key(obj, name: str, coordinates: np.ndarray, rig, property_name: str):
    key = _shape_key(obj, name, coordinates)
    driver = key.driver_add("value").driver
    driver.type = "AVERAGE"
    variable = driver.variables.new()
    variable.type = "SINGLE_PROP"
    variable.targets[0].id = rig
    variable.targets[0].data_path = f'["{property_name}"]'
    return key


def update_face_shape_keys(rig, obj, data=None) -> None:
    """One shape key per ARKit slider the rig's map moves (``flame_mesh_math.face_offsets``), driven by
    the slider; none without a map.  Rebuilt whenever the map changes."""
    from . import face_controls  # local: face_controls imports this module lazily too
    keys = obj.data.shape_keys
    for block in list(keys.key_blocks) if keys else ():
        if block.name.startswith(face_controls.PROPERTY_PREFIX):
            block.driver_remove("value")
            obj.shape_key_remove(block)
    path = face_controls.map_file(rig)
    if not path:
        return
    if data is None:
        data = flame_mesh_data(read_flame_model(bpy.path.abspath(obj[FLAME_FILE])), rig.pvp_rig.num_expressions)
    layout = ChannelLayout(rig.pvp_rig.num_expressions)
    offsets = face_offsets(data, face_controls.layout_weights(path, layout), layout)
    for name, offset in zip(face_controls.PROPERTY_NAMES, offsets):
        if np.abs(offset).max() > 0:
            _driven_key(obj, name, data.vertices + offset, rig, name)


def _shape_key(obj, name: str, coordinates: np.ndarray):
    key = obj.shape_key_add(name=name, from_mix=False)
    key.data.foreach_set("co", coordinates.astype(np.float32).ravel())
    key.slider_min, key.slider_max = -SHAPE_KEY_LIMIT, SHAPE_KEY_LIMIT
    return key


def _place_bones_on_joints(context, rig, joints: np.ndarray) -> None:
    """Move each rig bone's head onto its FLAME joint, keeping its direction, length and roll.

    Channels are rotations relative to the rest pose, so they keep their meaning; only the
    pivots move, which is what makes the armature deform the mesh like FLAME does.
    """
    previous_active, previous_mode = context.view_layer.objects.active, rig.mode
    context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        for bone_name, head in zip(BONE_OF_JOINT, joints):
            bone = rig.data.edit_bones.get(bone_name)
            if bone is None:
                continue
            roll = bone.roll
            offset = bone.tail - bone.head
            bone.head = head.tolist()
            bone.tail = (head + np.array(offset)).tolist()
            bone.roll = roll
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        context.view_layer.objects.active = previous_active
        if previous_mode != "OBJECT" and previous_active is rig:
            bpy.ops.object.mode_set(mode=previous_mode)


def update_correctives(rig, obj, depsgraph, frame: int) -> None:
    """Set the pose-corrective shape keys from the rig's channels (only values that changed)."""
    keys = obj.data.shape_keys
    if keys is None:
        return
    try:
        channels = rig_module.read_channels(rig.evaluated_get(depsgraph), ChannelLayout(rig.pvp_rig.num_expressions),
                                            frame, check_edits=False)  # edits do not move the mesh
    except PVPError:
        return  # an invalid channel is reported by the render and the panel, not by the display mesh
    values = corrective_values(channels, ChannelLayout(rig.pvp_rig.num_expressions))
    for index, value in enumerate(values):
        key = keys.key_blocks.get(corrective_name(index))
        if key is not None and abs(key.value - value) > 1e-6:
            key.value = float(value)


@persistent
def _update_all(scene, depsgraph=None):
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    for obj in scene.objects:
        if obj.type == "ARMATURE" and obj.pvp_rig.is_rig:
            for mesh in flame_meshes(obj):
                update_correctives(obj, mesh, depsgraph, scene.frame_current)


def register():
    # Every frame change (scrubbing, playback) and every edit (posing a bone) re-poses the correctives;
    # writing only changed values keeps the depsgraph update from feeding itself.
    bpy.app.handlers.frame_change_post.append(_update_all)
    bpy.app.handlers.depsgraph_update_post.append(_update_all)


def unregister():
    for handlers in (bpy.app.handlers.frame_change_post, bpy.app.handlers.depsgraph_update_post):
        if _update_all in handlers:
            handlers.remove(_update_all)

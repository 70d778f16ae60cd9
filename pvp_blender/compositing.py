"""Compositor access for Blender 4.2-4.5 and 5.0, and the "avatar over another engine" setup.

4.x: ``scene.use_nodes`` + ``scene.node_tree`` with a Composite node.
5.0: ``scene.compositing_node_group`` (a CompositorNodeTree) whose Group
Output is the result; there is no Composite node.

Overlay setup: the avatar cannot be rendered by Cycles, so the shot scene
keeps its engine and a second scene renders the avatar with "PVP Avatar".
The shot's compositor puts that scene's Render Layers over its own with Alpha
Over, so one F12 / ``blender -b -a`` renders both in sync.  The overlay scene
links the rig and the shot's camera (a scene without a camera renders
nothing) and follows the shot's camera and the settings that place the avatar
(resolution, percentage, pixel aspect) and its frame range, copied before each
render.  The shot's frames carry the avatar's provenance keys in their Note field.
"""

from __future__ import annotations

import bpy
from bpy.app.handlers import persistent

from ..pvp_runtime.contract.errors import PVPError
from ..pvp_runtime.contract.provenance import note_with_provenance
from . import frame_provenance
from . import rig as rig_module
from .engine import ENGINE_ID
from .runtime_session import SESSION

# Everything the avatar's size and placement depend on (besides the camera), and the frame range.
SYNCED_SETTINGS = ("render.resolution_x", "render.resolution_y", "render.resolution_percentage",
                   "render.pixel_aspect_x", "render.pixel_aspect_y",
                   "frame_start", "frame_end", "frame_step", "render.fps", "render.fps_base")


def _group_output_compositor() -> bool:
    # why: 5.0 replaced scene.node_tree (4.2-4.5, checked on the 4.2 and 4.5 wheels) with
    # scene.compositing_node_group, a node group whose Group Output is the result.
    return bpy.app.version >= (5, 0, 0)


def compositor_tree(scene, create: bool = True):
    """The scene's compositor node tree (created, with an image output, if asked)."""
    if _group_output_compositor():
        tree = scene.compositing_node_group
        if tree is None and create:
            tree = bpy.data.node_groups.new(f"{scene.name} Compositing", "CompositorNodeTree")
            tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
            scene.compositing_node_group = tree
        return tree
    if create:
        scene.use_nodes = True
    return scene.node_tree


def remove_compositor(scene) -> None:
    """Switch the scene's compositor off (the render result is the engine's image again)."""
    if _group_output_compositor():
        scene.compositing_node_group = None
    else:
        scene.use_nodes = False


def output_socket(tree):
    """The input socket whose image becomes the render result."""
    for node in tree.nodes:
        if node.bl_idname == "NodeGroupOutput" and node.inputs and node.inputs[0].name == "Image":
            return node.inputs[0]
        if node.bl_idname == "CompositorNodeComposite":
            return node.inputs["Image"]
    node = tree.nodes.new("NodeGroupOutput" if _group_output_compositor() else "CompositorNodeComposite")
    node.location = (600, 0)
    return node.inputs[0]


def render_layers_node(tree, scene, name: str):
    node = tree.nodes.get(name) or tree.nodes.new("CompositorNodeRLayers")
    node.name = node.label = name
    node.scene = scene
    return node


def _alpha_over_inputs(node):
    # 5.0 names them Background / Foreground; 4.x has (Fac, Image, Image).
    if "Background" in node.inputs:
        return node.inputs["Background"], node.inputs["Foreground"]
    return node.inputs[1], node.inputs[2]


def copy_render_settings(source, target) -> None:
    """The overlay ``target`` renders what ``source`` (the shot) would: same settings, same camera."""
    for path in SYNCED_SETTINGS:
        owner_path, _, prop = path.rpartition(".")
        owner = target.path_resolve(owner_path) if owner_path else target
        setattr(owner, prop, source.path_resolve(path))
    camera = source.camera
    if camera is not None and target.camera != camera:
        if camera.name not in target.collection.objects:
            target.collection.objects.link(camera)
        target.camera = camera


@persistent
def sync_overlay_scenes(scene, _depsgraph=None) -> None:
    """render_init handler: overlay scenes follow the shot being rendered."""
    for other in bpy.data.scenes:
        if other.pvp.overlay_of == scene:
            copy_render_settings(scene, other)
            stamp_provenance_note(scene, other)


def stamp_provenance_note(scene, overlay) -> None:
    """The shot's frames are written with the shot engine's stamp, which holds none of the overlay's
    fields: put the provenance keys into the shot's Note (read at each frame's write; checked on
    4.2, 4.5 and 5.0).  A rig without a readable subject is left to fail its own render."""
    try:
        subject = SESSION.subject(rig_module.subject_file(rig_module.scene_rig(overlay)))
        metadata = frame_provenance.subject_metadata(subject)
    except (PVPError, OSError):
        return
    scene.render.use_stamp_note = True
    scene.render.stamp_note_text = note_with_provenance(scene.render.stamp_note_text, metadata)


def setup_overlay(scene, rig):
    """Create (or refresh) the avatar overlay scene for ``scene`` and wire the compositor."""
    if scene.camera is None:
        raise ValueError(f"scene '{scene.name}' has no camera: the overlay scene needs one to render")
    name = f"{scene.name} PVP Overlay"
    overlay = bpy.data.scenes.get(name) or bpy.data.scenes.new(name)
    overlay.render.engine = ENGINE_ID
    overlay.render.film_transparent = True
    if rig.name not in overlay.collection.objects:
        overlay.collection.objects.link(rig)
    overlay.pvp.rig = rig
    overlay.pvp.overlay_of = scene
    copy_render_settings(scene, overlay)

    tree = compositor_tree(scene)
    shot = render_layers_node(tree, scene, "Shot")
    avatar = render_layers_node(tree, overlay, "PVP Avatar")
    shot.location, avatar.location = (0, 200), (0, -200)
    over = tree.nodes.get("PVP Alpha Over") or tree.nodes.new("CompositorNodeAlphaOver")
    over.name = over.label = "PVP Alpha Over"
    over.location = (300, 0)
    background, foreground = _alpha_over_inputs(over)
    tree.links.new(shot.outputs["Image"], background)
    tree.links.new(avatar.outputs["Image"], foreground)
    tree.links.new(over.outputs["Image"], output_socket(tree))
    stamp_provenance_note(scene, overlay)  # shown in the Metadata panel now; refreshed at every render
    return overlay


def register():
    bpy.app.handlers.render_init.append(sync_overlay_scenes)


def unregister():
    if sync_overlay_scenes in bpy.app.handlers.render_init:
        bpy.app.handlers.render_init.remove(sync_overlay_scenes)

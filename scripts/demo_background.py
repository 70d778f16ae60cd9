"""The demo shot over a CG set: a backdrop wall, a floor and a light rendered by Cycles, with the
placed avatar composited over them by the extension's "Composite Avatar Over Scene".

Used by scripts/make_demo_shot.py ``--over-background``.  The camera that add_head_rig framed
(the head filling the frame) is pulled back so the set shows around the head, and the rig
drifts sideways across the shot, so the avatar is placed where the head bone is seen through the
camera, not centred.  Cycles, not EEVEE: Cycles renders on the CPU under the bpy wheel with
no GPU (the wheel's only GL context here is the llvmpipe software renderer).
"""

from __future__ import annotations

import bpy
from mathutils import Vector

PULL_BACK = 2.5        # the frame spans this many crop widths at the head
DRIFT = 0.4            # the rig moves this many crop widths to either side and back
WALL_BEHIND = 3.0      # the backdrop this many crop widths behind the eyes
FLOOR_BELOW = 1.2      # the floor this many crop widths below the eyes
SAMPLES = 16           # a few samples: the set is plain and the frames are small


def crop_width_at_eyes(camera, eyes: Vector) -> float:
    """What add_head_rig's front camera spans at the eyes, in metres: the crop's width (it fills the
    frame's shorter side; the demo shot is square)."""
    distance = (eyes - camera.location).length
    return distance * camera.data.sensor_width / camera.data.lens


def material(name: str, colour, checker=None):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    principled = mat.node_tree.nodes["Principled BSDF"]
    principled.inputs["Roughness"].default_value = 0.8
    if checker is None:
        principled.inputs["Base Color"].default_value = (*colour, 1.0)
        return mat
    texture = mat.node_tree.nodes.new("ShaderNodeTexChecker")
    texture.inputs["Color1"].default_value = (*colour, 1.0)
    texture.inputs["Color2"].default_value = (*checker, 1.0)
    texture.inputs["Scale"].default_value = 60.0
    mat.node_tree.links.new(texture.outputs["Color"], principled.inputs["Base Color"])
    return mat


def plane(scene, name: str, size: float, location: Vector, rotation, mat):
    mesh = bpy.data.meshes.new(name)
    half = size / 2
    mesh.from_pydata([(-half, -half, 0), (half, -half, 0), (half, half, 0), (-half, half, 0)], [], [(0, 1, 2, 3)])
    mesh.uv_layers.new()
    mesh.materials.append(mat)
    obj = bpy.data.objects.new(name, mesh)
    obj.location, obj.rotation_euler = location, rotation
    scene.collection.objects.link(obj)
    return obj


def key_drift(rig, side: float, frame_end: int) -> None:
    """The rig slides to camera-left, to camera-right and back over the shot (Bezier easing)."""
    start = rig.location.x
    for frame, offset in ((1, 0.0), (frame_end // 4, -DRIFT), (3 * frame_end // 4, DRIFT), (frame_end, 0.0)):
        rig.location.x = start + offset * side
        rig.keyframe_insert("location", index=0, frame=frame)
    rig.location.x = start


def add_background_set(scene, rig, frame_end: int) -> None:
    """Give ``scene`` a Cycles set behind the rig and composite the avatar over it."""
    camera = scene.camera
    eyes = rig.matrix_basis @ ((rig.data.bones["eye.L"].head_local + rig.data.bones["eye.R"].head_local) / 2)
    side = crop_width_at_eyes(camera, eyes)
    camera.location = eyes + (camera.location - eyes) * PULL_BACK
    size = 40.0 * side
    wall = material("PVP Demo Wall", (0.18, 0.32, 0.55), checker=(0.35, 0.52, 0.75))
    floor = material("PVP Demo Floor", (0.45, 0.30, 0.18))
    plane(scene, "PVP Demo Wall", size, eyes + Vector((0.0, WALL_BEHIND * side, 0.0)), (1.5708, 0.0, 0.0), wall)
    plane(scene, "PVP Demo Floor", size, eyes - Vector((0.0, 0.0, FLOOR_BELOW * side)), (0.0, 0.0, 0.0), floor)
    light = bpy.data.objects.new("PVP Demo Light", bpy.data.lights.new("PVP Demo Light", "AREA"))
    light.data.energy, light.data.size = 400.0 * side * side, 4.0 * side
    light.location = eyes + Vector((1.5 * side, -2.0 * side, 3.0 * side))
    light.rotation_euler = (0.6, 0.3, 0.0)
    scene.collection.objects.link(light)
    if scene.world is None:
        scene.world = bpy.data.worlds.new("PVP Demo World")
    scene.world.use_nodes = True
    scene.world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.05, 0.05, 0.06, 1.0)
    key_drift(rig, side, frame_end)

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = SAMPLES
    scene.cycles.use_denoising = False
    scene.render.film_transparent = False  # the set fills the frame: opaque frames
    bpy.context.view_layer.objects.active = rig
    rig.select_set(True)
    bpy.ops.pvp.setup_overlay()

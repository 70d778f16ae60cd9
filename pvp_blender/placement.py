"""Reading placement from the scene: the rig's eyes and the scene camera, for ``placement_math``.

The engine asks :func:`frame_placement` for each frame it renders (prefetched frames
included, so an animated camera or rig is followed); the answer is the crop's 2x3
affine in output pixels, or None when the rig is locked to the frame centre (the
crop is then centred as before placement existed).
"""

from __future__ import annotations

import numpy as np
from mathutils import Vector

from ..pvp_runtime.contract.errors import PVPError
from ..pvp_runtime.contract.subject_manifest import DEFAULT_EYE_DISTANCE, DEFAULT_HEAD_CENTRE, SubjectSummary
from .placement_math import CameraView, HeadInCrop, frame_filling_distance, placement_affine
from .rig_math import rotation_part

EYE_BONES = ("eye.L", "eye.R")
FRONT_LENS, FRONT_SENSOR = 50.0, 36.0


def camera_view(camera_eval, render, width: int, height: int) -> CameraView:
    data = camera_eval.data
    if data.type not in ("PERSP", "ORTHO"):
        raise PVPError(f"camera '{camera_eval.name}' is panoramic: the avatar can be placed only through a "
                       "perspective or orthographic camera (or tick the rig's 'Lock to Frame Centre')")
    return CameraView(world_from_camera=np.array(camera_eval.matrix_world), width=width, height=height,
                      orthographic=data.type == "ORTHO", lens=data.lens, ortho_scale=data.ortho_scale,
                      sensor_width=data.sensor_width, sensor_height=data.sensor_height, sensor_fit=data.sensor_fit,
                      shift_x=data.shift_x, shift_y=data.shift_y,
                      pixel_aspect_x=render.pixel_aspect_x, pixel_aspect_y=render.pixel_aspect_y)


def rig_eyes(rig_eval) -> tuple[np.ndarray, float]:
    """The rig's eye midpoint in world space and its eye distance in metres.

    The eye bones' rest heads, moved with the head bone's posed position and the armature's
    world transform (location, rotation, scale, parents, constraints), but not turned by the
    head's rotation: the rendered crop shows that itself (the face turns, the crop rolls).
    """
    bones = rig_eval.pose.bones
    missing = [name for name in ("head", *EYE_BONES) if name not in bones]
    if missing:
        raise PVPError(f"rig '{rig_eval.name}' has no bone '{missing[0]}': placement needs the head and eye bones "
                       "(or tick the rig's 'Lock to Frame Centre')")
    head = bones["head"]
    rest = np.array([bones[name].bone.head_local for name in EYE_BONES])
    world = np.array(rig_eval.matrix_world)
    eyes_armature = np.array(head.head) + (rest.mean(axis=0) - np.array(head.bone.head_local))
    midpoint = (world @ np.append(eyes_armature, 1.0))[:3]
    distance = float(np.linalg.norm(world[:3, :3] @ (rest[0] - rest[1])))
    return midpoint, distance


def frame_placement(depsgraph, rig, subject: SubjectSummary, width: int, height: int) -> np.ndarray | None:
    """This frame's crop -> output pixels affine, or None when the rig is locked to the frame centre."""
    rig_eval = rig.evaluated_get(depsgraph)
    if rig_eval.pvp_rig.lock_to_frame_centre:
        return None
    scene = depsgraph.scene
    if scene.camera is None:
        raise PVPError(f"scene '{scene.name}' has no camera to place the avatar with")
    camera = camera_view(scene.camera.evaluated_get(depsgraph), scene.render, width, height)
    midpoint, distance = rig_eyes(rig_eval)
    head = HeadInCrop(subject.resolution, subject.head_centre, subject.eye_distance)
    return placement_affine(camera, midpoint, distance, rotation_part(np.array(rig_eval.matrix_world)), head)


def stack_placements(placements: list) -> np.ndarray | None:
    return None if placements[0] is None else np.stack(placements)


def frame_front_camera(camera, rig, render) -> None:
    """Put ``camera`` in front of the rig's face so that the placed avatar fills the render's
    shorter side, centred, as the centred crop did (at the render's current size and pixel aspect;
    50 mm lens, 36 mm sensor, fitted to the longer side; the rig unrotated; the subject's framing,
    or the default one while the rig has no readable subject)."""
    from .rig import rig_subject
    try:
        subject = rig_subject(rig)
    except PVPError:
        subject = None
    head_centre = subject.head_centre if subject else DEFAULT_HEAD_CENTRE
    eye_fraction = subject.eye_distance if subject else DEFAULT_EYE_DISTANCE
    rest = [Vector(rig.data.bones[name].head_local) for name in EYE_BONES]
    side = (rest[0] - rest[1]).length * max(rig.scale) / eye_fraction  # metres the crop spans at the eyes
    midpoint = rig.matrix_basis @ ((rest[0] + rest[1]) / 2)  # (matrix_world waits for a depsgraph update)
    crop_centre = midpoint + Vector(((0.5 - head_centre[0]) * side, 0.0, (head_centre[1] - 0.5) * side))
    camera.data.lens, camera.data.sensor_width, camera.data.sensor_fit = FRONT_LENS, FRONT_SENSOR, "AUTO"
    camera.data.type = "PERSP"
    shape = (render.resolution_x * render.pixel_aspect_x, render.resolution_y * render.pixel_aspect_y)
    distance = frame_filling_distance(side, FRONT_LENS, FRONT_SENSOR) * max(shape) / min(shape)
    camera.location = crop_centre - Vector((0.0, distance, 0.0))
    camera.rotation_mode = "XYZ"
    camera.rotation_euler = (np.pi / 2, 0.0, 0.0)  # looking along +Y, at the face

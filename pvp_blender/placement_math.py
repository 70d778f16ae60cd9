"""Where the avatar goes in the shot: the rig's head seen through the scene camera.  No bpy.

The runtime renders an aligned crop (eyes level, at a fixed place and scale).  A
shot needs it where the rig is: each frame gets a 2D similarity of the crop
(translation, scale, roll), turned into an affine in output pixels when the
pixels are not square.  Given:

* the rig's **eye midpoint** in world space (the eye bones' rest heads, carried by
  the head bone's posed position and the armature's world transform, so moving,
  scaling or parenting the rig moves it; the head's own rotation is not in it:
  the crop shows yaw and pitch as the face turning, and the runtime rolls the crop
  by ``head_roll`` about the subject's roll centre, as it always did);
* the rig's **eye distance** in metres (world scale included) and its world
  orientation;
* the subject's ``head_centre`` and ``eye_distance`` in the crop (its framing);

the crop's head centre goes where the camera projects the eye midpoint, crop
pixels become metres at the rig's eyes (eye distance over eye distance) and
metres become pixels at that depth (perspective) or over the orthographic
scale, and the crop turns by the on-screen roll of the rig's frame as the
camera sees it (``head_angles_from_matrix``'s outermost roll, the channels'
convention).  A head behind a perspective camera gets a zero affine, which the
runtime draws as nothing.

The camera model is Blender's own (``BKE_camera_params_compute_viewplane``):
sensor fit AUTO / HORIZONTAL / VERTICAL, lens shift in units of the fitted side,
pixel aspect, perspective and orthographic cameras.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..pvp_runtime.contract.channels import BLENDER_TO_FLAME, head_angles_from_matrix
from .rig_math import rotation_part


@dataclass(frozen=True)
class CameraView:
    """What projecting a point needs: a Blender camera and the render's size in pixels."""

    world_from_camera: np.ndarray  # 4x4: the camera object's matrix_world (looks along its -Z, +Y up)
    width: int                      # render pixels (resolution x percentage)
    height: int
    orthographic: bool = False
    lens: float = 50.0              # mm (perspective)
    ortho_scale: float = 6.0        # metres across the fitted side (orthographic)
    sensor_width: float = 36.0      # mm
    sensor_height: float = 24.0
    sensor_fit: str = "AUTO"        # AUTO, HORIZONTAL or VERTICAL
    shift_x: float = 0.0            # lens shift, in units of the fitted side
    shift_y: float = 0.0
    pixel_aspect_x: float = 1.0
    pixel_aspect_y: float = 1.0

    def _fit(self) -> tuple[bool, float]:
        """(fit horizontally?, sensor size along the fitted side) as Blender decides them."""
        if self.sensor_fit == "AUTO":
            return (self.pixel_aspect_x * self.width >= self.pixel_aspect_y * self.height), self.sensor_width
        if self.sensor_fit == "HORIZONTAL":
            return True, self.sensor_width
        return False, self.sensor_height

    def _plane(self) -> tuple[float, float]:
        """(view factor, y correction): the fitted side in horizontal-pixel units, pixel aspect y / x."""
        horizontal, _ = self._fit()
        y_correction = self.pixel_aspect_y / self.pixel_aspect_x
        return (float(self.width) if horizontal else y_correction * self.height), y_correction

    def camera_point(self, point) -> np.ndarray:
        """A world point in camera coordinates (x right, y up, z back: depth is -z)."""
        world = np.asarray(self.world_from_camera, dtype=np.float64)
        return (np.linalg.inv(world) @ np.append(np.asarray(point, dtype=np.float64), 1.0))[:3]

    def metres_per_pixel(self, depth: float) -> float:
        """Metres one horizontal pixel spans at ``depth`` (any depth, orthographic)."""
        view_factor, _ = self._plane()
        if self.orthographic:
            return self.ortho_scale / view_factor
        _, sensor = self._fit()
        return sensor * depth / (self.lens * view_factor)

    def project(self, point) -> tuple[np.ndarray, float]:
        """``(pixel (x, y), depth)``: pixel coordinates with (0, 0) at the top-left corner of the
        image, y down (the runtime's top-row-first frames); depth in metres along the view."""
        x, y, z = self.camera_point(point)
        depth = -z
        view_factor, y_correction = self._plane()
        if not self.orthographic and depth <= 0:
            return np.array([math.nan, math.nan]), depth
        size = self.metres_per_pixel(depth)
        # Horizontal-pixel units from the image centre, then the shift (in units of the fitted side).
        u = x / size + 0.5 * self.width - self.shift_x * view_factor
        v = y / size + 0.5 * y_correction * self.height - self.shift_y * view_factor
        return np.array([u, self.height - v / y_correction]), depth

    def screen_roll(self, world_rotation) -> float:
        """The on-screen roll (radians, counter-clockwise as seen) of a frame with the rig's axes
        (Blender armature axes: X the subject's left, Z up, -Y out of the face) as this camera
        sees it: the outermost roll of the channels' convention, in camera axes."""
        camera = rotation_part(self.world_from_camera)
        in_camera = camera.T @ rotation_part(world_rotation) @ BLENDER_TO_FLAME.T
        return head_angles_from_matrix(in_camera)[2]


@dataclass(frozen=True)
class HeadInCrop:
    """The subject's framing: where the head sits in its crop and how large it is."""

    resolution: int
    head_centre: tuple[float, float]  # the eye midpoint, 0..1 of the crop, y down
    eye_distance: float               # eye centre to eye centre, a fraction of the crop's side


def placement_affine(camera: CameraView, eye_midpoint, eye_distance_m: float, rig_rotation,
                     head: HeadInCrop) -> np.ndarray:
    """The 2x3 affine taking crop pixels to output pixels (both y down, (0, 0) the top-left
    corner).  A zero affine when the eyes are behind a perspective camera."""
    centre, depth = camera.project(eye_midpoint)
    if not np.isfinite(centre).all():
        return np.zeros((2, 3))
    metres_per_crop_pixel = eye_distance_m / (head.eye_distance * head.resolution)
    scale = metres_per_crop_pixel / camera.metres_per_pixel(depth)  # horizontal output pixels per crop pixel
    roll = camera.screen_roll(rig_rotation)
    cos, sin = math.cos(roll), math.sin(roll)
    _, y_correction = camera._plane()
    # Counter-clockwise on screen is clockwise in y-down maths; a non-square pixel covers
    # y_correction times the height of a square one, so the same length spans fewer rows.
    linear = scale * np.diag([1.0, 1.0 / y_correction]) @ np.array([[cos, sin], [-sin, cos]])
    anchor = np.array(head.head_centre) * head.resolution
    return np.concatenate([linear, (centre - linear @ anchor)[:, None]], axis=1)


def frame_filling_distance(crop_side_m: float, lens: float = 50.0, sensor: float = 36.0) -> float:
    """How far a perspective camera must be from the head for a crop ``crop_side_m`` metres wide
    to fill the side its sensor is fitted to: the centred framing, on a square render."""
    return crop_side_m * lens / sensor

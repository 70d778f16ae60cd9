"""Placement in the shot without Blender: the camera projection against a numpy pinhole reference,
and the crop -> output affine the engine sends (``pvp_blender/placement_math.py``)."""

import math

import numpy as np
import pytest

from blender_helpers import extension_module

placement_math = extension_module("pvp_blender.placement_math")
CameraView, HeadInCrop = placement_math.CameraView, placement_math.HeadInCrop


def look_from(position, roll=0.0, pitch=0.0):
    """A camera matrix_world at ``position`` looking along +Y (at a rig facing -Y), rolled by
    ``roll`` about its view axis (counter-clockwise as the camera turns)."""
    c, s = math.cos(math.pi / 2 + pitch), math.sin(math.pi / 2 + pitch)
    tilt = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])  # Blender's front camera: Euler X 90 deg
    c, s = math.cos(roll), math.sin(roll)
    rotation = tilt @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])  # then about its own view axis
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = rotation, position
    return matrix


def pinhole(camera, point):
    """The reference: an intrinsic matrix K built the textbook way from the same camera settings."""
    W, H = camera.width, camera.height
    aspect = camera.pixel_aspect_y / camera.pixel_aspect_x
    fit = camera.sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if camera.pixel_aspect_x * W >= camera.pixel_aspect_y * H else "VERTICAL"
    sensor = camera.sensor_width if camera.sensor_fit in ("AUTO", "HORIZONTAL") else camera.sensor_height
    fitted = W if fit == "HORIZONTAL" else H * aspect  # the fitted side, in horizontal pixels
    fx = camera.lens / sensor * fitted
    fy = fx / aspect
    cx = W / 2 - camera.shift_x * fitted
    cy = H / 2 + camera.shift_y * fitted / aspect
    K = np.array([[fx, 0, cx], [0, -fy, cy], [0, 0, 1]])  # camera y up -> pixel rows down
    p = np.linalg.inv(camera.world_from_camera) @ np.append(point, 1.0)
    depth = -p[2]
    projected = K @ np.array([p[0], p[1], depth])
    return projected[:2] / depth


CAMERAS = [
    dict(width=64, height=64),
    dict(width=160, height=90, lens=35.0),
    dict(width=90, height=160, lens=85.0),                               # AUTO fits the (larger) height
    dict(width=120, height=80, sensor_fit="VERTICAL", sensor_height=20.0),
    dict(width=120, height=80, sensor_fit="HORIZONTAL", shift_x=0.1, shift_y=-0.05),
    dict(width=100, height=100, pixel_aspect_x=1.0, pixel_aspect_y=2.0, shift_y=0.2),
    dict(width=100, height=60, pixel_aspect_x=3.0, pixel_aspect_y=2.0, sensor_fit="VERTICAL"),
]


@pytest.mark.parametrize("settings", CAMERAS)
def test_projection_matches_a_pinhole_camera(settings, rng):
    camera = CameraView(world_from_camera=look_from((0.1, -1.2, 0.3), roll=0.3, pitch=0.05), **settings)
    for point in rng.uniform([-0.3, -0.2, 0.0], [0.3, 0.4, 0.5], size=(6, 3)):
        got, depth = camera.project(point)
        assert depth > 0
        assert got == pytest.approx(pinhole(camera, point), abs=1e-9)


def test_orthographic_projection_ignores_depth_and_spans_the_ortho_scale():
    camera = CameraView(world_from_camera=look_from((0.0, -2.0, 0.0)), width=200, height=100,
                        orthographic=True, ortho_scale=0.5, shift_x=0.1)
    near, _ = camera.project((0.05, -1.0, 0.02))
    far, _ = camera.project((0.05, 3.0, 0.02))
    assert near == pytest.approx(far)
    # 0.5 m across 200 pixels: 400 px per metre; shifted left by 0.1 of the width.
    assert near == pytest.approx([100 + 0.05 * 400 - 20, 50 - 0.02 * 400])


HEAD = HeadInCrop(resolution=32, head_centre=(0.5, 0.47), eye_distance=0.25)
EYES = np.array([0.0, 0.0, 0.165])
EYE_DISTANCE_M = 0.064


def affine_for(camera, eyes=EYES, rig_rotation=np.eye(3), head=HEAD):
    return placement_math.placement_affine(camera, eyes, EYE_DISTANCE_M, rig_rotation, head)


@pytest.mark.parametrize("settings", CAMERAS)
@pytest.mark.parametrize("roll", [0.0, 0.4])
def test_affine_maps_the_crop_onto_the_rigs_face_plane(settings, roll):
    """A point of the crop lands where the camera sees the matching point of a face-on head."""
    camera = CameraView(world_from_camera=look_from((0.02, -0.9, 0.15), roll=roll), **settings)
    affine = affine_for(camera)
    metres_per_crop_pixel = EYE_DISTANCE_M / (HEAD.eye_distance * HEAD.resolution)
    centre = np.array(HEAD.head_centre) * HEAD.resolution
    for offset in ([0, 0], [3, 0], [0, -4], [-2, 5]):  # crop pixels, y down
        crop = centre + offset
        # The matching point on the head: x along the rig's X (screen right), crop y down = world -Z.
        world = EYES + metres_per_crop_pixel * np.array([offset[0], 0.0, -offset[1]])
        # Small offsets: the plane through the eyes is nearly parallel to the image (a tolerance
        # of a few hundredths of a pixel for the perspective across it).
        assert affine @ np.append(crop, 1.0) == pytest.approx(pinhole(camera, world), abs=0.05)


def test_moving_the_rig_right_moves_the_avatar_by_the_projected_amount():
    camera = CameraView(world_from_camera=look_from((0.0, -1.0, 0.165)), width=160, height=120)
    before, after = affine_for(camera), affine_for(camera, eyes=EYES + [0.1, 0, 0])
    fx = 50.0 / 36.0 * 160
    assert after[:, 2] - before[:, 2] == pytest.approx([fx * 0.1 / 1.0, 0.0])
    assert after[:, :2] == pytest.approx(before[:, :2])


def test_moving_the_camera_back_shrinks_the_avatar():
    near = affine_for(CameraView(world_from_camera=look_from((0.0, -0.5, 0.165)), width=100, height=100))
    far = affine_for(CameraView(world_from_camera=look_from((0.0, -1.0, 0.165)), width=100, height=100))
    assert np.linalg.det(far[:, :2]) == pytest.approx(np.linalg.det(near[:, :2]) / 4)
    assert far[:, :2] @ np.array(HEAD.head_centre) * 32 + far[:, 2] == pytest.approx([50, 50])


def test_rig_rotation_about_the_view_axis_rolls_the_avatar():
    camera = CameraView(world_from_camera=look_from((0.0, -1.0, 0.165)), width=100, height=100)
    angle = 0.3  # the rig turned counter-clockwise as seen (about -Y, the axis towards the camera)
    c, s = math.cos(angle), math.sin(angle)
    turned = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])  # rotation about -Y
    affine = affine_for(camera, rig_rotation=turned)
    right = affine[:, :2] @ [1.0, 0.0]  # the crop's x axis on screen (y down)
    assert math.atan2(-right[1], right[0]) == pytest.approx(angle)
    # Rolling the camera the other way looks the same.
    rolled = affine_for(CameraView(world_from_camera=look_from((0.0, -1.0, 0.165), roll=-angle),
                                   width=100, height=100))
    assert rolled[:, :2] == pytest.approx(affine[:, :2])


def test_default_framing_fills_a_square_render_like_the_centred_crop():
    side = EYE_DISTANCE_M / HEAD.eye_distance  # metres the crop spans at the eyes
    distance = placement_math.frame_filling_distance(side)
    crop_centre = EYES + [0.0, 0.0, (HEAD.head_centre[1] - 0.5) * side]  # the crop's centre on the head
    camera = CameraView(world_from_camera=look_from(crop_centre + [0.0, -distance, 0.0]), width=64, height=64)
    affine = affine_for(camera)
    assert affine == pytest.approx(np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), abs=1e-9)


def test_a_head_behind_the_camera_gets_no_placement():
    camera = CameraView(world_from_camera=look_from((0.0, 1.0, 0.165)), width=64, height=64)  # past the head
    assert not affine_for(camera).any()

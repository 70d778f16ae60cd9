"""The avatar placed where the camera sees the rig, in headless Blender renders (every Blender environment).

One Blender process renders single frames of a rig on the tiny subject (no matte: alpha is 1 on
the placed crop and 0 outside it, so the alpha's centroid and spread say where the crop went and
how large it is) under different rig and camera set-ups.  Blender's own projection
(``bpy_extras.object_utils.world_to_camera_view``) of the crop's centre and edges, taken on the
rig's eye plane, is the reference.  "Lock to Frame Centre" must give today's centred frame.
"""

import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pvp_runtime.avatar import Avatar
from pvp_runtime.canvas import place_on_canvas
from pvp_runtime.image_io import read_png_rgba

from asset_builders import face_flame_arrays
from blender_helpers import run_blender_scenario

WIDTH, HEIGHT = 160, 120

SCENARIO = textwrap.dedent("""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector
    scene = bpy.context.scene
    pixel_exact_scene(scene, first=1, last=1)
    scene.render.resolution_x, scene.render.resolution_y = ARGS["width"], ARGS["height"]
    prefs = use_this_runtime()
    for obj in list(scene.objects):  # the startup file's cube, light and camera: the rig brings its own camera
        bpy.data.objects.remove(obj)
    bpy.ops.pvp.add_head_rig(subject_path=ARGS["subject"])
    rig = bpy.context.object
    camera = scene.camera
    default_camera = [list(camera.location), list(camera.rotation_euler)]
    import numpy as np
    eyes_rest = [rig.data.bones[n].head_local for n in ("eye.L", "eye.R")]
    side = (eyes_rest[0] - eyes_rest[1]).length / 0.25  # the crop's width in metres (default framing)
    def expected():
        "Where Blender's camera puts the crop: its centre and its width and height, in pixels."
        bpy.context.view_layer.update()
        eyes = rig.matrix_world @ ((eyes_rest[0] + eyes_rest[1]) / 2)
        centre = eyes + Vector((0.0, 0.0, -(0.5 - 0.47) * side * rig.scale[0]))
        half = side * rig.scale[0] / 2
        def pixel(p):
            v = world_to_camera_view(scene, camera, p)
            return [v.x * ARGS["width"], (1 - v.y) * ARGS["height"]]
        left, right = pixel(centre - Vector((half, 0, 0))), pixel(centre + Vector((half, 0, 0)))
        top, bottom = pixel(centre + Vector((0, 0, half))), pixel(centre - Vector((0, 0, half)))
        corners = [pixel(centre + Vector((sx * half, 0, sz * half))) for sx in (-1, 1) for sz in (-1, 1)]
        return {"centre": pixel(centre), "width": right[0] - left[0], "height": bottom[1] - top[1],
                "corners": corners}

    cases = {}
    def render(name):
        scene.render.filepath = ARGS["out"] + "/" + name + ".png"
        bpy.ops.render.render(write_still=True)
        cases[name] = expected()

    render("new_rig")  # the camera a new rig brings frames it like the centred crop
    camera.location = Vector((0.0, -1.0, 0.16))
    render("base")
    rig.location.x = 0.1  # to camera-right
    render("rig_right")
    rig.location.x = 0.0
    camera.location.y = -1.5  # the camera moves back
    render("camera_back")
    camera.location.y = -1.0
    camera.data.shift_x = 0.1
    render("lens_shift")
    camera.data.shift_x = 0.0
    camera.data.sensor_fit, camera.data.sensor_height = "VERTICAL", 20.0
    render("sensor_vertical")
    camera.data.sensor_fit = "AUTO"
    scene.render.pixel_aspect_y = 2.0
    render("pixel_aspect")
    scene.render.pixel_aspect_y = 1.0
    camera.data.type, camera.data.ortho_scale = "ORTHO", 0.8
    render("ortho")
    rig.location.x, camera.location.y = 0.1, -3.0
    render("ortho_right")
    camera.data.type = "PERSP"
    camera.rotation_euler[1] = 0.3  # rolled: the avatar turns the other way on screen
    render("camera_roll")
    camera.rotation_euler[1] = 0.0
    rig.scale = (0.5, 0.5, 0.5)  # a smaller rig: a smaller head
    render("rig_scaled")
    rig.pvp_rig.lock_to_frame_centre = True  # wherever rig and camera are: today's framing
    render("locked")

    # A rig with the FLAME mesh (its eye bones moved onto FLAME's eye joints): where the engine puts
    # the crop's eyes, against the mesh's own eye joints (FLAME's regressor on its evaluated vertices).
    prefs.flame_model = ARGS["flame"]
    bpy.ops.pvp.add_head_rig(subject_path=ARGS["subject"])
    flame_rig = bpy.context.object
    mesh = [c for c in flame_rig.children if c.get("pvp_flame_mesh")][0]
    subject = module("runtime_session").SESSION.subject(ARGS["subject"])
    flame = {}
    for name, move in (("rest", lambda: None), ("moved", lambda: setattr(flame_rig, "location", (0.05, 0.1, -0.02))),
                       ("turned", lambda: setattr(flame_rig, "rotation_euler", (0.0, 0.3, 0.0))),
                       ("camera", lambda: setattr(camera, "location", (0.03, -0.7, 0.12)))):
        move()
        depsgraph = bpy.context.evaluated_depsgraph_get()
        evaluated = mesh.evaluated_get(depsgraph)
        vertices = np.array([mesh.matrix_world @ v.co for v in evaluated.data.vertices])
        eyes = [list(world_to_camera_view(scene, camera, Vector(ARGS["regressor"][j] @ vertices)))
                for j in (3, 4)]
        affine = module("placement").frame_placement(depsgraph, flame_rig, subject, ARGS["width"], ARGS["height"])
        flame[name] = {"eyes": eyes, "affine": affine.tolist()}
    result(cases=cases, default_camera=default_camera, flame=flame, resolution=subject.resolution,
           head_centre=subject.head_centre, eye_distance=subject.eye_distance)
""")


def alpha_geometry(path):
    """The alpha's centroid (x, y; pixel centres at i + 0.5) and the width and height of the uniform
    rectangle with the same spread (sqrt(12 variance))."""
    alpha = read_png_rgba(path)[..., 3].astype(np.float64) / 255
    rows, columns = np.indices(alpha.shape) + 0.5
    mass = alpha.sum()
    x, y = (columns * alpha).sum() / mass, (rows * alpha).sum() / mass
    width = math.sqrt(12 * (((columns - x) ** 2) * alpha).sum() / mass)
    height = math.sqrt(12 * (((rows - y) ** 2) * alpha).sum() / mass)
    return np.array([x, y]), width, height


@pytest.fixture(scope="module")
def placed(tmp_path_factory, blender_python, tiny_bundle_path):
    root = tmp_path_factory.mktemp("placement")
    arrays = face_flame_arrays()
    np.savez(root / "face.npz", **{k: v for k, v in arrays.items() if isinstance(v, np.ndarray)})
    got = run_blender_scenario(blender_python, root / "scenario", SCENARIO, subject=str(tiny_bundle_path),
                               out=str(root / "frames"), width=WIDTH, height=HEIGHT, python=sys.executable,
                               source=str(Path(__file__).resolve().parents[1]), flame=str(root / "face.npz"),
                               regressor=arrays["J_regressor"].tolist())
    return got, root / "frames"


@pytest.mark.parametrize("case", ["base", "rig_right", "camera_back", "lens_shift", "sensor_vertical",
                                  "pixel_aspect", "ortho", "ortho_right", "rig_scaled"])
def test_the_crop_lands_where_the_camera_sees_the_rig(placed, case):
    got, frames = placed
    expected = got["cases"][case]
    centre, width, height = alpha_geometry(frames / f"{case}.png")
    assert centre == pytest.approx(expected["centre"], abs=1.0), case
    assert width == pytest.approx(expected["width"], abs=1.5) and height == pytest.approx(expected["height"], abs=1.5)


def test_moving_the_rig_right_moves_the_avatar_by_the_projected_amount(placed):
    got, frames = placed
    for before, after in (("base", "rig_right"), ("ortho", "ortho_right")):
        moved = alpha_geometry(frames / f"{after}.png")[0] - alpha_geometry(frames / f"{before}.png")[0]
        projected = np.subtract(got["cases"][after]["centre"], got["cases"][before]["centre"])
        assert projected[0] > 10
        assert moved == pytest.approx(projected, abs=3.0), before


def test_moving_the_camera_back_shrinks_the_avatar(placed):
    got, frames = placed
    near, far = (alpha_geometry(frames / f"{case}.png")[1] for case in ("base", "camera_back"))
    eyes = -0.075  # the default rig's eyes sit 7.5 cm in front of its origin, the camera at y = -1 and -1.5
    assert far == pytest.approx(near * (eyes + 1.0) / (eyes + 1.5), abs=1.0)


def test_camera_roll_turns_the_avatar(placed):
    got, frames = placed
    alpha = read_png_rgba(frames / "camera_roll.png")[..., 3].astype(np.float64) / 255
    centre = np.array(got["cases"]["camera_roll"]["centre"])
    for corner in np.array(got["cases"]["camera_roll"]["corners"]):
        towards = (centre - corner) / np.linalg.norm(centre - corner)
        inside, outside = (np.floor(corner + towards * step).astype(int) for step in (3.0, -3.0))
        assert alpha[inside[1], inside[0]] > 0.9 and alpha[outside[1], outside[0]] < 0.1, corner


def todays_frame(tiny_bundle_path):
    """The centred frame at the test's resolution, as PNG values (alpha; sRGB where alpha is 1)."""
    avatar = Avatar.load(tiny_bundle_path, device="cpu")
    linear = place_on_canvas(avatar.render(avatar.layout.defaults(1)).linear, WIDTH, HEIGHT)[0]
    encoded = np.where(linear[..., :3] <= 0.0031308, linear[..., :3] * 12.92,
                       1.055 * np.clip(linear[..., :3], 0.0031308, 1) ** (1 / 2.4) - 0.055)
    return np.round(linear[..., 3] * 255).astype(np.int32), np.round(encoded * 255).astype(np.int32)


def test_lock_to_frame_centre_gives_todays_frame(placed, tiny_bundle_path):
    _, frames = placed
    alpha, rgb = todays_frame(tiny_bundle_path)
    got = read_png_rgba(frames / "locked.png").astype(np.int32)
    assert np.array_equal(got[..., 3], alpha)
    inside = alpha == 255
    assert np.abs(got[..., :3][inside] - rgb[inside]).max() <= 1


def test_a_new_rigs_camera_frames_the_placed_avatar_like_the_centred_crop(placed, tiny_bundle_path):
    got, frames = placed
    location, rotation = got["default_camera"]
    # Eye midpoint (0, -0.075, 0.165) of the default rig; crop 0.256 m wide; 50 mm on 36 mm fitted to
    # the 160 px width, so 4/3 further away for the crop to fill the 120 px height.
    assert location == pytest.approx([0.0, -0.075 - 0.256 * 50 / 36 * 4 / 3, 0.165 - 0.03 * 0.256], abs=1e-4)
    assert rotation == pytest.approx([math.pi / 2, 0.0, 0.0], abs=1e-6)
    alpha, rgb = todays_frame(tiny_bundle_path)
    placed_frame = read_png_rgba(frames / "new_rig.png").astype(np.int32)
    inside = alpha == 255
    assert np.abs(placed_frame[..., :3][inside] - rgb[inside]).max() <= 1
    assert np.abs(placed_frame[..., 3] - alpha).max() <= 1


@pytest.mark.parametrize("case", ["rest", "moved", "turned", "camera"])
def test_flame_mesh_eyes_line_up_with_the_rendered_eyes(placed, case):
    """The crop's eye midpoint and eye distance land on the FLAME mesh's eyes as the camera sees them."""
    got, _ = placed
    flame = got["flame"][case]
    affine = np.array(flame["affine"])
    eyes = np.array([[x * WIDTH, (1 - y) * HEIGHT] for x, y, _ in flame["eyes"]])
    size = got["resolution"]
    rendered_centre = affine @ np.append(np.array(got["head_centre"]) * size, 1.0)
    assert rendered_centre == pytest.approx(eyes.mean(axis=0), abs=0.05)
    rendered_eyes = affine[:, :2] @ np.array([got["eye_distance"] * size, 0.0])  # right eye minus left, on screen
    # The subject's left eye (+x) shows on the image's right: the crop's +x is the mesh's left - right.
    assert rendered_eyes == pytest.approx(eyes[0] - eyes[1], abs=0.05)

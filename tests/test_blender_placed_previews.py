"""Previews and the overlay scene place the avatar as the final render does (every Blender environment).

One Blender process, a rig on the tiny subject (no matte: alpha 1 on the placed crop, 0 outside)
moved off the camera's axis, so a placed frame and a centred one differ:

* Preview Frame, and the viewport's camera-view render, give F12's frame (render size, resolution
  percentage included, same placement); outside camera view the viewport keeps the centred crop.
* The camera-view texture is drawn over the camera frame: the rectangle comes from the view's
  projection (a stand-in ``RegionView3D`` whose projection is the camera's, zoomed and panned as
  a camera view is), and the texture drawn there (offscreen) puts the avatar's alpha centroid
  where F12's is, mapped into that rectangle.
* "Composite Avatar Over Scene" with non-square pixels, and after the shot's camera changes:
  the avatar's alpha centroid in the composited output (the shot film-transparent, so the alpha
  is the avatar's) is where Blender's ``world_to_camera_view`` puts the crop's centre.
"""

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pvp_runtime.canvas import to_srgb8
from pvp_runtime.image_io import read_png_rgba

from blender_helpers import run_blender_scenario

WIDTH, HEIGHT, PERCENT = 160, 120, 50  # F12 renders 80 x 60
REGION = (200, 150)
ZOOM, PAN = 0.6, (0.1, -0.2)  # the camera frame in the stand-in view, in normalised device coordinates

SCENARIO = textwrap.dedent("""
    import os, types
    import numpy as np
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Matrix, Vector
    scene = bpy.context.scene
    pixel_exact_scene(scene, first=1, last=1)
    scene.render.resolution_x, scene.render.resolution_y = ARGS["width"], ARGS["height"]
    scene.render.resolution_percentage = ARGS["percent"]
    use_this_runtime()
    for obj in list(scene.objects):  # the rig brings its own camera
        bpy.data.objects.remove(obj)
    bpy.ops.pvp.add_head_rig(subject_path=ARGS["subject"])
    rig = bpy.context.object
    camera = scene.camera
    camera.location.y -= 0.3  # the whole crop in frame, wherever it goes below
    rig.location.x = 0.04     # to camera-right: placed and centred frames differ
    viewport = module("viewport")
    out = ARGS["out"] + "/"

    scene.render.filepath = out + "f12.png"
    bpy.ops.render.render(write_still=True)
    assert bpy.ops.pvp.preview_frame() == {"FINISHED"}
    image = bpy.data.images["PVP Preview"]
    preview = np.array(image.pixels[:], dtype=np.float32).reshape(image.size[1], image.size[0], 4)[::-1]
    np.save(out + "preview.npy", preview)

    depsgraph = bpy.context.evaluated_depsgraph_get()
    for name, view in (("camera_view", viewport.CAMERA_PREVIEW), ("outside_view", viewport.PREVIEW)):
        view.update(depsgraph)
        view.pixels = view.pending.result(timeout=120)  # what the timer does in an interactive Blender
        view.stop()
        np.save(out + name + ".npy", view.pixels)

    # A camera view: the camera's own projection, then the view's zoom and pan (on the frame's
    # normalised device coordinates), for a region with the render's aspect.
    region = types.SimpleNamespace(width=ARGS["region"][0], height=ARGS["region"][1])
    projection = camera.calc_matrix_camera(depsgraph, x=ARGS["width"], y=ARGS["height"],
                                           scale_x=scene.render.pixel_aspect_x, scale_y=scene.render.pixel_aspect_y)
    zoom_pan = Matrix.Translation((ARGS["pan"][0], ARGS["pan"][1], 0.0)) @ Matrix.Diagonal((ARGS["zoom"], ARGS["zoom"], 1.0, 1.0))
    rv3d = types.SimpleNamespace(view_perspective="CAMERA",
                                 perspective_matrix=zoom_pan @ projection @ camera.matrix_world.inverted())
    in_camera = viewport.preview_for(rv3d) is viewport.CAMERA_PREVIEW
    outside = viewport.preview_for(types.SimpleNamespace(view_perspective="PERSP")) is viewport.PREVIEW
    rect = viewport.CAMERA_PREVIEW.layout(depsgraph, region, rv3d)

    # "Composite Avatar Over Scene" on Cycles, its film transparent: the output's alpha is the avatar's.
    subject = module("runtime_session").SESSION.subject(ARGS["subject"])
    eyes_rest = [rig.data.bones[n].head_local for n in ("eye.L", "eye.R")]
    side = (eyes_rest[0] - eyes_rest[1]).length / subject.eye_distance  # the crop's width in metres
    def expected_centre():
        "Where Blender's camera puts the crop's centre, in output pixels."
        bpy.context.view_layer.update()
        eyes = rig.matrix_world @ ((eyes_rest[0] + eyes_rest[1]) / 2)
        centre = eyes + Vector(((0.5 - subject.head_centre[0]) * side, 0.0, (subject.head_centre[1] - 0.5) * side))
        v = world_to_camera_view(scene, scene.camera, centre)
        w, h = (scene.render.resolution_x * scene.render.resolution_percentage // 100,
                scene.render.resolution_y * scene.render.resolution_percentage // 100)
        return [v.x * w, (1 - v.y) * h]
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.render.film_transparent = True
    scene.render.resolution_percentage = 100
    scene.render.resolution_x, scene.render.resolution_y = 80, 60
    scene.render.pixel_aspect_y = 2.0
    bpy.ops.pvp.setup_overlay()
    composited = {}
    def composite(name):
        scene.render.filepath = out + name + ".png"
        bpy.ops.render.render(write_still=True)
        composited[name] = expected_centre()
    composite("overlay_pixel_aspect")
    other = bpy.data.objects.new("Other Camera", camera.data.copy())
    scene.collection.objects.link(other)
    other.matrix_world = camera.matrix_world
    other.location.x -= 0.1
    other.location.y -= 0.4
    scene.camera = other
    composite("overlay_new_camera")

    # The camera-view texture drawn where the layout says, into an offscreen region.
    start_gpu_module(scene)
    import gpu
    width, height = region.width, region.height
    offscreen = gpu.types.GPUOffScreen(width, height, format="RGBA32F")
    with offscreen.bind():
        framebuffer = gpu.state.active_framebuffer_get()
        framebuffer.clear(color=(0.0, 0.0, 0.0, 0.0))
        with gpu.matrix.push_pop():
            gpu.matrix.load_identity()
            gpu.matrix.load_projection_matrix(Matrix.Diagonal((2 / width, 2 / height, 1, 1))
                                              @ Matrix.Translation((-width / 2, -height / 2, 0)))
            viewport.draw_texture(viewport.make_texture(viewport.CAMERA_PREVIEW.pixels), *rect)
        drawn = np.array(framebuffer.read_color(0, 0, width, height, 4, 0, "FLOAT").to_list(), dtype=np.float32)
    np.save(out + "drawn.npy", drawn.reshape(height, width, 4)[::-1])  # top row first
    result(rect=list(rect), in_camera=in_camera, outside=outside, composited=composited)
    if bpy.app.version < (5, 0, 0):
        os._exit(0)  # the 4.x wheels cannot tear down a background GPU context at exit (see test_blender_extension)
""")


def alpha_centroid(alpha: np.ndarray) -> np.ndarray:
    """(x, y) of the alpha's centroid, pixel centres at i + 0.5, y down."""
    rows, columns = np.indices(alpha.shape) + 0.5
    return np.array([(columns * alpha).sum(), (rows * alpha).sum()]) / alpha.sum()


def png_alpha(path) -> np.ndarray:
    return read_png_rgba(path)[..., 3].astype(np.float64) / 255


@pytest.fixture(scope="module")
def previews(tmp_path_factory, blender_python, tiny_bundle_path):
    root = tmp_path_factory.mktemp("placed_previews")
    (root / "frames").mkdir()
    got = run_blender_scenario(blender_python, root / "scenario", SCENARIO, subject=str(tiny_bundle_path),
                               out=str(root / "frames"), width=WIDTH, height=HEIGHT, percent=PERCENT,
                               region=list(REGION), zoom=ZOOM, pan=list(PAN), python=sys.executable,
                               source=str(Path(__file__).resolve().parents[1]))
    return got, root / "frames"


def test_preview_frame_is_what_f12_renders(previews):
    _, frames = previews
    f12 = read_png_rgba(frames / "f12.png").astype(np.int32)
    assert f12.shape == (HEIGHT * PERCENT // 100, WIDTH * PERCENT // 100, 4)
    assert alpha_centroid(f12[..., 3] / 255)[0] > f12.shape[1] / 2 + 5  # placed right of centre
    preview = np.load(frames / "preview.npy")
    assert preview.shape == f12.shape
    assert np.abs(to_srgb8(preview[None])[0].astype(np.int32) - f12).max() <= 1


def test_camera_view_renders_f12s_frame_and_other_views_the_centred_crop(previews):
    got, frames = previews
    assert got["in_camera"] and got["outside"]
    assert np.array_equal(np.load(frames / "camera_view.npy"), np.load(frames / "preview.npy"))
    outside = np.load(frames / "outside_view.npy")
    assert outside.shape == (32, 32, 4) and outside[..., 3].min() == 1.0  # the subject's crop, unplaced


def test_camera_view_draws_over_the_camera_frame(previews):
    got, frames = previews
    width, height = REGION
    # The frame's corners at NDC -1 and 1, zoomed and panned, in region pixels (y up).
    left, right = ((PAN[0] + ZOOM * s + 1) * width / 2 for s in (-1, 1))
    bottom, top = ((PAN[1] + ZOOM * s + 1) * height / 2 for s in (-1, 1))
    assert got["rect"] == pytest.approx([left, bottom, right - left, top - bottom], abs=1e-3)
    f12 = png_alpha(frames / "f12.png")
    centre = alpha_centroid(f12)
    x, y, w, h = got["rect"]
    in_region = [x + centre[0] / f12.shape[1] * w, (height - y - h) + centre[1] / f12.shape[0] * h]  # y down
    drawn = np.load(frames / "drawn.npy")[..., 3].astype(np.float64)
    assert alpha_centroid(drawn) == pytest.approx(in_region, abs=0.5)


@pytest.mark.parametrize("case", ["overlay_pixel_aspect", "overlay_new_camera"])
def test_overlay_places_the_avatar_as_the_shot_camera_sees_it(previews, case):
    got, frames = previews
    alpha = png_alpha(frames / f"{case}.png")
    assert alpha.shape == (60, 80)
    assert 0 < alpha.sum() and alpha[0].max() == alpha[-1].max() == alpha[:, 0].max() == alpha[:, -1].max() == 0
    assert alpha_centroid(alpha) == pytest.approx(got["composited"][case], abs=1.0)


def test_the_overlay_cases_tell_cameras_apart(previews):
    """The new camera sees the avatar elsewhere: a composite through the old camera would fail."""
    got, _ = previews
    before, after = (np.array(got["composited"][case]) for case in ("overlay_pixel_aspect", "overlay_new_camera"))
    assert after[0] - before[0] > 5

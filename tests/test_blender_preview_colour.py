"""Previews hold F12's colours: Preview Frame's image and the viewport's texture equal the Render
Result in the scene's working space (every Blender environment; Linear Rec.2020 on 5.0).

One Blender process renders the rig's frame with F12 (32-bit float EXR and 8-bit PNG), runs
Preview Frame, and builds the camera view's texture (a render with a GPU context initialises the
gpu module in background mode).  The preview image is also saved through the scene's display
transform, as the Image Editor shows it.  The viewport draws its buffer in scene-linear and
applies the view transform to all of it (``bind_display_space_shader`` binds a plain image
shader since Blender 2.9x), so its texture must hold the Render Result's values too.  On 4.x the
working space is the colour config's ``scene_linear`` (Linear Rec.709): the same comparisons
hold, but cannot tell a converted preview from an unconverted one.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

from pvp_runtime.image_io import read_png_rgba

from blender_helpers import run_blender_scenario
from test_blender_frame_files import read_exr_pixels

SCENARIO = """
import os
import numpy as np
scene = bpy.context.scene
pixel_exact_scene(scene, first=1, last=1)
working = ""
if hasattr(bpy.data, "colorspace"):  # 5.0: a file chooses its working space (before any image is made)
    bpy.ops.wm.set_working_color_space(working_space="Linear Rec.2020")
    working = bpy.data.colorspace.working_space
use_this_runtime()
rig = add_centred_rig(ARGS["bundle"])  # colour is what is compared; the centred frame is enough
rig.pose.bones["head"].rotation_euler[2] = 0.5  # rolled: transparent corners, antialiased edges
out = ARGS["out"] + "/"
viewport = module("viewport")

settings = scene.render.image_settings
settings.file_format, settings.color_depth, settings.exr_codec = "OPEN_EXR", "32", "ZIP"
scene.render.filepath = out + "f12.exr"
bpy.ops.render.render(write_still=True)
settings.file_format, settings.color_depth = "PNG", "8"
scene.render.filepath = out + "f12.png"
bpy.ops.render.render(write_still=True)

assert bpy.ops.pvp.preview_frame() == {"FINISHED"}
image = bpy.data.images["PVP Preview"]
np.save(out + "preview.npy", np.array(image.pixels[:], dtype=np.float32).reshape(image.size[1], image.size[0], 4)[::-1])
image.save_render(out + "preview.png", scene=scene)  # through the view transform, as the Image Editor shows it

view = viewport.CAMERA_PREVIEW
view.update(bpy.context.evaluated_depsgraph_get())
view.pixels = view.pending.result(timeout=120)  # what the timer does in an interactive Blender
view.stop()
np.save(out + "runtime.npy", view.pixels)  # the runtime's own Rec.709 linear

start_gpu_module(scene)
texture = view.working_space_texture()
texels = np.array(texture.read().to_list(), dtype=np.float32).reshape(texture.height, texture.width, 4)
np.save(out + "texture.npy", texels[::-1])  # GPU textures are bottom row first
result(working=working)
if bpy.app.version < (5, 0, 0):
    os._exit(0)  # the 4.x wheels cannot tear down a background GPU context at exit (see test_blender_extension)
"""


@pytest.fixture(scope="module")
def previews(tmp_path_factory, blender_python, tiny_bundle_path):
    root = tmp_path_factory.mktemp("preview_colour")
    out = root / "out"
    out.mkdir()
    got = run_blender_scenario(blender_python, root / "scenario", SCENARIO, bundle=str(tiny_bundle_path),
                               out=str(out), python=sys.executable, source=str(Path(__file__).resolve().parents[1]))
    (f12,) = read_exr_pixels([out / "f12.exr"])
    return got, out, f12


def test_preview_frame_holds_f12s_pixels(previews):
    _, out, f12 = previews
    assert f12.shape == (32, 32, 4) and f12[..., 3].min() == 0 and f12[..., 3].max() == 1
    assert np.abs(np.load(out / "preview.npy") - f12).max() <= 1e-5  # 32-bit float: only rounding


def test_preview_frame_looks_as_f12_in_the_image_editor(previews):
    _, out, _ = previews
    shown = read_png_rgba(out / "preview.png").astype(np.int64)
    assert np.abs(shown - read_png_rgba(out / "f12.png").astype(np.int64)).max() <= 1


def test_viewport_texture_holds_f12s_pixels(previews):
    _, out, f12 = previews
    texels = np.load(out / "texture.npy")
    assert texels.shape == f12.shape
    assert np.abs(texels - f12).max() <= 2e-3 * max(1.0, np.abs(f12).max())  # the texture is half float


def test_the_working_space_is_not_the_runtimes(previews):
    """The comparisons above tell a converted preview from the runtime's Rec.709 pixels (5.0)."""
    got, out, f12 = previews
    if not got["working"]:
        pytest.skip("this Blender has no per-file working space (4.x: the colour config's scene_linear)")
    assert got["working"] == "Linear Rec.2020"
    assert np.abs(np.load(out / "runtime.npy") - f12).max() > 0.02

"""A subject's learnt alpha in Blender: the Render Result holds it premultiplied.

One Blender process per Blender environment renders one frame of a rig on a subject with a
matte head, headless, twice: as an RGBA PNG (Blender un-premultiplies the Render Result into
PNG's straight alpha) and as a 32-bit float RGBA OpenEXR (Blender writes the Render Result's
scene-linear premultiplied pixels as they are).  The PNG must equal ``Avatar.render``'s straight
``srgb8`` and the EXR its premultiplied ``linear``: an engine that wrote straight colour into the
Render Result would give a PNG brighter by 1/alpha and an EXR that is not premultiplied.
"""

import os
import sys
import textwrap
from pathlib import Path

import numpy as np

from pvp_runtime.avatar import Avatar
from pvp_runtime.image_io import read_png_rgba

from blender_helpers import run_blender_scenario

REPO = Path(__file__).resolve().parents[1]

SCENARIO = textwrap.dedent("""
    scene = bpy.context.scene
    pixel_exact_scene(scene, first=1, last=1)
    use_this_runtime()
    rig = add_centred_rig(ARGS["subject"])  # the startup camera is far away: compare the centred frame
    rig.pose.bones["head"].rotation_euler[1] = 0.2
    scene.frame_set(1)
    assert scene.render.engine == "PVP_AVATAR", scene.render.engine
    scene.render.filepath = ARGS["out"] + "/straight.png"
    bpy.ops.render.render(write_still=True)
    settings = scene.render.image_settings
    settings.file_format = "OPEN_EXR"
    settings.color_mode = "RGBA"
    settings.color_depth = "32"
    settings.exr_codec = "NONE"
    scene.render.filepath = ARGS["out"] + "/premultiplied.exr"
    bpy.ops.render.render(write_still=True)
    result(yaw=rig.pose.bones["head"].rotation_euler[1])
""")


def read_exr(path):
    os.environ["OPENCV_IO_ENABLE_OPENEXR"] = "1"  # OpenCV reads EXR only when asked to
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.shape[2] == 4, path
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)


def test_render_result_holds_the_learnt_alpha_premultiplied(tmp_path, blender_python, alpha_bundle_path):
    out = tmp_path / "out"
    got = run_blender_scenario(blender_python, tmp_path / "scenario", SCENARIO, subject=str(alpha_bundle_path),
                               out=str(out), python=sys.executable, source=str(REPO))
    avatar = Avatar.load(alpha_bundle_path, device="cpu")
    frame = avatar.layout.defaults(1)
    frame[0, avatar.layout.index("head_yaw")] = got["yaw"]
    expected = avatar.render(frame)
    linear, srgb8 = expected.linear[0], expected.srgb8[0].astype(int)
    alpha = linear[..., 3]
    assert alpha.min() < 0.05 and alpha.max() > 0.95
    png = read_png_rgba(out / "straight.png").astype(int)
    assert np.abs(png[..., 3] - srgb8[..., 3]).max() <= 1
    seen = alpha > 0.25  # below that, 8-bit straight colour is too coarse to compare
    assert np.abs(png[..., :3][seen] - srgb8[..., :3][seen]).max() <= 2
    exr = read_exr(out / "premultiplied.exr")
    assert np.abs(exr - linear).max() < 1e-4
    assert np.all(exr[..., :3] <= exr[..., 3:] + 1e-4)  # premultiplied: no channel above its alpha

"""Frames the engine renders through Blender's own outputs: PNG 8 and 16 bit, OpenEXR half RGBA.

One Blender process per Blender environment renders a two-frame shot (the second frame rolls the
head, so its corners are transparent) to each format, then once more with every Metadata checkbox
off, then composited over Cycles (the overlay scene), and (5.0) once in a Linear Rec.2020 working space.  Every file must hold the runtime's pixels
in that format's convention and carry the provenance keys; Blender's image loader must read
``pvp render``'s own EXR as written.
"""

import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from pvp_runtime.avatar import Avatar
from pvp_runtime.cli.main import main
from pvp_runtime.contract.provenance import (BUNDLE_SHA256, KEYS, SUBJECT, SYNTHETIC, TOOL, file_sha256,
                                             note_with_provenance, pvp_fields, tool_version)
from pvp_runtime.image_io import read_metadata, read_png_rgba

from blender_helpers import extension_module, run_blender_scenario

# Rec.709 linear -> Rec.2020 linear (ITU-R BT.2087), both D65: what Blender's conversion must match.
REC709_TO_REC2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])

SCENARIO = textwrap.dedent("""
    import os
    import numpy as np
    rig_module = module("rig")
    scene = bpy.context.scene
    pixel_exact_scene(scene, first=1, last=2)
    use_this_runtime()
    rig = add_centred_rig(ARGS["bundle"])  # the startup camera is far away: compare the centred frame
    head = rig.pose.bones["head"]
    for frame, yaw, roll in ((1, 0.3, 0.0), (2, -0.2, 0.5)):
        head.rotation_euler[1], head.rotation_euler[2] = yaw, roll
        head.keyframe_insert("rotation_euler", frame=frame)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    summary = module("runtime_session").SESSION.subject(ARGS["bundle"])
    channels = []
    for frame in (1, 2):
        scene.frame_set(frame)
        channels.append(rig_module.read_channels(rig.evaluated_get(depsgraph), summary.layout, frame).tolist())

    def render(name, file_format, depth):
        settings = scene.render.image_settings
        settings.file_format, settings.color_mode, settings.color_depth = file_format, "RGBA", depth
        if file_format == "OPEN_EXR":
            settings.exr_codec = "ZIP"
        scene.render.filepath = os.path.join(ARGS["out"], name + "_####")
        bpy.ops.render.render(animation=True)

    render("png", "PNG", "8")
    render("png16", "PNG", "16")
    render("exr", "OPEN_EXR", "16")
    for flag in [p for p in dir(scene.render) if p.startswith("use_stamp")]:
        setattr(scene.render, flag, False)
    render("nometa", "PNG", "8")
    image = bpy.data.images.load(ARGS["own_exr"])  # pvp render's EXR, through Blender's loader
    loaded = np.array(image.pixels[:], dtype=np.float32).reshape(image.size[1], image.size[0], image.channels)
    np.save(os.path.join(ARGS["out"], "loaded.npy"), loaded[::-1])  # Blender holds the bottom row first
    # The avatar composited over Cycles: the shot's frames carry the keys in their Note.
    shot = bpy.data.scenes.new("Shot")
    for obj in (scene.camera, rig):
        shot.collection.objects.link(obj)
    shot.camera = scene.camera
    shot.render.engine = "CYCLES"
    shot.cycles.samples = 1
    shot.render.resolution_x = shot.render.resolution_y = 32
    shot.render.resolution_percentage = 100
    shot.render.stamp_note_text = "take 3"
    module("compositing").setup_overlay(shot, rig)
    for file_format, suffix in (("PNG", "png"), ("OPEN_EXR", "exr")):
        shot.render.image_settings.file_format = file_format
        shot.render.filepath = os.path.join(ARGS["out"], "overlay." + suffix)
        bpy.ops.render.render(write_still=True, scene=shot.name)
    working = ""
    if hasattr(bpy.data, "colorspace"):  # 5.0: a file chooses its working space (4.x: the OCIO config does)
        bpy.ops.wm.set_working_color_space(working_space="Linear Rec.2020")
        working = bpy.data.colorspace.working_space
        render("rec2020", "OPEN_EXR", "32")
        render("rec2020", "PNG", "8")

    result(channels=channels, working=working, loaded_channels=image.channels)
""")


def read_exr_pixels(paths):
    out = [p.with_suffix(".npy") for p in paths]
    code = ("import sys, cv2, numpy as np\n"
            "for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):\n"
            "    np.save(dst, cv2.cvtColor(cv2.imread(src, cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA))\n")
    subprocess.run([sys.executable, "-c", code, *[str(x) for pair in zip(paths, out) for x in pair]], check=True,
                   env={**os.environ, "OPENCV_IO_ENABLE_OPENEXR": "1"})
    return [np.load(p) for p in out]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, blender_python, tiny_bundle_path):
    root = tmp_path_factory.mktemp("frame_files")
    out = root / "out"
    out.mkdir()
    clip = root / "clip.csv"
    assert main(["example-channels", str(clip), "--frames", "1", "--expressions", "10"]) == 0
    assert main(["render", str(tiny_bundle_path), str(clip), "-o", str(root / "own"), "--format", "exr",
                 "--device", "cpu"]) == 0
    data = run_blender_scenario(blender_python, root, SCENARIO, bundle=str(tiny_bundle_path), out=str(out),
                                own_exr=str(root / "own" / "frame_0000.exr"),
                                python=sys.executable, source=str(os.path.dirname(os.path.dirname(__file__))))
    avatar = Avatar.load(tiny_bundle_path, device="cpu")
    frames = avatar.render(np.array(data["channels"], dtype=np.float32), batch_size=2)
    return {"out": out, "root": root, "data": data, "frames": frames,
            "provenance": {SYNTHETIC: "yes", SUBJECT: "tiny", BUNDLE_SHA256: file_sha256(tiny_bundle_path),
                           TOOL: tool_version()}}


def test_every_output_carries_the_provenance_keys(rendered):
    files = sorted(rendered["out"].glob("*_000[12].*"))
    assert {p.name for p in files} >= {f"{kind}_000{f}.{ext}" for f in (1, 2)
                                        for kind, ext in (("png", "png"), ("png16", "png"), ("exr", "exr"),
                                                          ("nometa", "png"))}
    for path in files:
        _, metadata = read_metadata(path)
        assert {key: metadata.get(key) for key in KEYS} == rendered["provenance"], path.name
    # With every Metadata checkbox off, Blender writes the engine's fields and nothing else.
    assert set(read_metadata(rendered["out"] / "nometa_0001.png")[1]) == set(KEYS)


def test_avatar_composited_over_cycles_carries_the_keys_in_its_note(rendered):
    for name in ("overlay.png", "overlay.exr"):
        _, metadata = read_metadata(rendered["out"] / name)
        assert pvp_fields(metadata) == rendered["provenance"], name
        assert metadata["Note"].splitlines()[-1] == "take 3"  # the shot's own note is kept


def test_png_8_and_16_bit_hold_the_runtime_pixels_with_straight_alpha(rendered):
    srgb8 = rendered["frames"].srgb8.astype(np.int64)
    assert (srgb8[1, ..., 3] == 0).any() and (srgb8[1, ..., 3] == 255).any()  # the rolled frame has clear corners
    for index in range(2):
        png = read_png_rgba(rendered["out"] / f"png_000{index + 1}.png").astype(np.int64)
        assert np.abs(png - srgb8[index]).max() <= 1
        png16 = cv2.imread(str(rendered["out"] / f"png16_000{index + 1}.png"), cv2.IMREAD_UNCHANGED)
        assert png16.dtype == np.uint16 and png16.shape == (32, 32, 4)
        png16 = cv2.cvtColor(png16, cv2.COLOR_BGRA2RGBA).astype(np.int64)
        opaque = srgb8[index, ..., 3] == 255
        assert np.abs(png16[opaque] - srgb8[index][opaque] * 257).max() <= 2 * 257
        assert np.abs(png16[..., 3] - srgb8[index, ..., 3] * 257).max() <= 129  # alpha: the same to 8-bit rounding


def test_exr_is_half_rgba_scene_linear_premultiplied(rendered):
    paths = [rendered["out"] / f"exr_000{f}.exr" for f in (1, 2)]
    for path in paths:
        assert read_metadata(path)[1]["channels"] == ["A", "B", "G", "R"]
    for got, want in zip(read_exr_pixels(paths), rendered["frames"].linear):
        assert got.shape == (32, 32, 4)
        assert np.abs(got - want).max() <= 2e-3  # half precision of the runtime's premultiplied linear RGBA


def test_working_space_is_respected(rendered):
    if not rendered["data"]["working"]:
        pytest.skip("this Blender has no per-file working space (4.x: the colour config's scene_linear)")
    assert rendered["data"]["working"] == "Linear Rec.2020"
    linear = rendered["frames"].linear
    (got,) = read_exr_pixels([rendered["out"] / "rec2020_0002.exr"])
    want = np.concatenate([linear[1, ..., :3] @ REC709_TO_REC2020.T, linear[1, ..., 3:]], axis=-1)
    assert np.abs(got - want).max() <= 2e-3
    # Shown and saved through the display transform, the frame looks as in Rec.709.
    png = read_png_rgba(rendered["out"] / "rec2020_0001.png").astype(np.int64)
    assert np.abs(png - rendered["frames"].srgb8[0].astype(np.int64)).max() <= 1


def test_blender_reads_pvp_render_exr_as_written(rendered):
    assert rendered["data"]["loaded_channels"] == 4
    loaded = np.load(rendered["out"] / "loaded.npy")
    (written,) = read_exr_pixels([rendered["root"] / "own" / "frame_0000.exr"])
    assert loaded.shape == written.shape == (32, 32, 4)
    assert np.abs(loaded - written).max() <= 1e-6


def test_a_working_space_that_is_not_linear_rgb_is_refused():
    working_space = extension_module("pvp_blender.working_space")
    assert working_space.conversion_matrix(lambda rgb: rgb, "Linear Rec.709") is None
    matrix = working_space.conversion_matrix(lambda rgb: (REC709_TO_REC2020 @ rgb).tolist(), "Linear Rec.2020")
    assert np.allclose(matrix, REC709_TO_REC2020, atol=1e-6)
    with pytest.raises(working_space.PVPError, match=r"\(Filmic Log\) is not a linear RGB space") as error:
        working_space.conversion_matrix(lambda rgb: [c ** 0.5 for c in rgb], "Filmic Log")
    assert "\n" not in str(error.value)


def test_note_lines_replace_earlier_provenance_and_keep_the_users_note():
    first = note_with_provenance("take 3\nPVP-Subject: old", {SYNTHETIC: "yes", SUBJECT: "anna"})
    assert first == "PVP-Synthetic: yes\nPVP-Subject: anna\ntake 3"
    assert note_with_provenance(first, {SYNTHETIC: "yes", SUBJECT: "bo"}).splitlines() == [
        "PVP-Synthetic: yes", "PVP-Subject: bo", "take 3"]
    assert pvp_fields({"Note": first, "Frame": "001"}) == {SYNTHETIC: "yes", SUBJECT: "anna"}

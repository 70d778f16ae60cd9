"""Named face controls in Blender: ARKit sliders through a map render as ``pvp render`` of the mapped
channels; Live Link Face captures import with the scene's timing, keying the sliders or the FLAME channels.

One Blender process per Blender environment: a rig on the tiny subject gets an ARKit map, which gives it
52 keyframable ``arkit_*`` properties (0..1); ``jawOpen`` is keyed over six frames and rendered headless;
the frames must equal ``pvp render`` of a channel file holding ``matrix @ sliders``.  Then a 60 fps Live
Link take is imported into a 30 fps scene (sliders keyed, resampled), onto a rig without a map (a one-line
error naming how to get one) and with the dialog's map (FLAME channels keyed); a bad map is reported.
"""

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from arkit_helpers import known_map, write_live_link_csv
from pvp_runtime.cli.main import main
from pvp_runtime.contract.arkit import ARKIT_NAMES, write_arkit_map
from pvp_runtime.contract.channel_files import write_channel_file
from pvp_runtime.contract.channels import ChannelLayout
from pvp_runtime.image_io import read_png_rgba

from blender_helpers import run_blender_scenario

FRAMES = range(1, 7)
JAW_OPEN = ARKIT_NAMES.index("jawOpen")

SCENARIO = textwrap.dedent("""
    animation = module("animation")
    scene = bpy.context.scene
    pixel_exact_scene(scene)
    use_this_runtime()

    def keys(rig, path):
        curve = animation.fcurve_collection(rig).find(path)
        return [list(p.co) for p in curve.keyframe_points] if curve else []

    rig = add_centred_rig(ARGS["subject"])  # the startup camera is far away: compare the centred frame
    before = sorted(k for k in rig.keys() if k.startswith("arkit_"))
    rig.pvp_rig.arkit_map = ARGS["map"]
    props = sorted(k for k in rig.keys() if k.startswith("arkit_"))
    ui = rig.id_properties_ui("arkit_jawOpen").as_dict()
    for frame, value in ((1, 0.0), (6, 1.0)):
        rig["arkit_jawOpen"] = value
        rig.keyframe_insert('["arkit_jawOpen"]', frame=frame)
    for fcurve in animation.fcurve_collection(rig):
        for key in fcurve.keyframe_points:
            key.interpolation = "LINEAR"
    scene.render.filepath = ARGS["out"] + "/f_####"
    bpy.ops.render.render(animation=True)
    rig["arkit_mouthSmileLeft"] = 0.5
    bpy.ops.pvp.reset_channels(group="face")
    after_reset = float(rig["arkit_mouthSmileLeft"])

    scene.render.fps, scene.render.fps_base = 30, 1.0
    bpy.ops.pvp.import_channels(filepath=ARGS["take"], start_frame=20, key_arkit=True)
    slider_keys = keys(rig, '["arkit_jawOpen"]')
    bias_keys = keys(rig, '["expr_00"]')

    bpy.ops.pvp.add_head_rig(num_expressions=10)  # a second rig, no map anywhere
    plain = bpy.context.object
    try:
        bpy.ops.pvp.import_channels(filepath=ARGS["take"])
        no_map_error = ""
    except RuntimeError as exc:
        no_map_error = str(exc)
    bpy.ops.pvp.import_channels(filepath=ARGS["take"], arkit_map=ARGS["map"], start_frame=1)
    mapped_keys = keys(plain, '["expr_00"]')
    plain_props = [k for k in plain.keys() if k.startswith("arkit_")]
    plain.pvp_rig.arkit_map = ARGS["bad_map"]
    result(before=before, props=props, ui=ui, after_reset=after_reset, slider_keys=slider_keys, bias_keys=bias_keys,
           no_map_error=no_map_error, mapped_keys=mapped_keys, plain_props=plain_props,
           bad_status=plain.pvp_rig.face_status, face_panel=hasattr(bpy.types, "VIEW3D_PT_pvp_face"))
""")


@pytest.fixture(scope="module")
def face_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("face")
    rng = np.random.default_rng(5)
    arkit_map = known_map(rng, expressions=10)
    write_arkit_map(folder / "map.npz", arkit_map)
    np.save(folder / "bad_map.npy", np.zeros((51, 100)))
    weights = rng.uniform(0, 1, (60, 52))
    write_live_link_csv(folder / "take.csv", weights)  # 60 rows at 60 fps: one second
    return folder, arkit_map, weights


def test_keyed_arkit_slider_renders_like_pvp_render_of_the_mapped_channels(tmp_path, blender_python, face_files,
                                                                           tiny_bundle_path):
    folder, arkit_map, weights = face_files
    layout = ChannelLayout(10)
    frames = layout.defaults(len(FRAMES)).astype(np.float64)
    sliders = np.zeros((len(FRAMES), 52))
    sliders[:, JAW_OPEN] = np.linspace(0.0, 1.0, len(FRAMES))
    on_layout, _, _ = arkit_map.on_layout(layout)
    frames += sliders @ on_layout.T  # the rig adds the map's weights, not its bias
    write_channel_file(tmp_path / "clip.csv", frames, layout)
    assert main(["render", str(tiny_bundle_path), str(tmp_path / "clip.csv"), "-o", str(tmp_path / "cli"),
                 "--device", "cpu"]) == 0
    out = tmp_path / "blender"
    got = run_blender_scenario(blender_python, tmp_path / "scenario", SCENARIO, subject=str(tiny_bundle_path),
                               map=str(folder / "map.npz"), bad_map=str(folder / "bad_map.npy"),
                               take=str(folder / "take.csv"), out=str(out), python=sys.executable,
                               source=str(Path(__file__).resolve().parents[1]))
    assert got["before"] == [] and len(got["props"]) == 52 and "arkit_jawOpen" in got["props"]
    assert (got["ui"]["min"], got["ui"]["max"]) == (0.0, 1.0) and got["face_panel"]
    for i, frame in enumerate(FRAMES):
        blender = read_png_rgba(out / f"f_{frame:04d}.png").astype(np.int32)
        cli = read_png_rgba(tmp_path / "cli" / f"frame_{i:04d}.png").astype(np.int32)
        assert np.abs(blender - cli).max() <= 1, frame
    first, last = (read_png_rgba(out / f"f_{f:04d}.png").astype(np.int32) for f in (1, 6))
    assert np.abs(first - last).max() > 10  # the keyed jawOpen visibly moves the face
    assert got["after_reset"] == 0.0

    # 60 fps take into a 30 fps scene: 30 keys one frame apart from frame 20, every other sample
    slider = np.array(got["slider_keys"])
    assert np.array_equal(slider[:2], [[1, 0.0], [6, 1.0]])  # the animator's keys before the clip stay
    slider = slider[slider[:, 0] >= 20]
    assert np.array_equal(slider[:, 0], np.arange(20, 50))
    assert np.allclose(slider[:, 1], weights[::2, JAW_OPEN], atol=1e-6)
    bias = np.array(got["bias_keys"])
    assert np.allclose(bias[bias[:, 0] >= 20, 1], arkit_map.bias[0], atol=1e-6)  # the map's bias, keyed
    assert "needs an ARKit map" in got["no_map_error"] and "pvp learn-arkit-map" in got["no_map_error"]
    mapped = np.array(got["mapped_keys"])
    expected = weights[::2] @ arkit_map.matrix[0] + arkit_map.bias[0]
    assert np.array_equal(mapped[:, 0], np.arange(1, 31)) and np.allclose(mapped[:, 1], expected, atol=1e-5)
    assert got["plain_props"] == []  # FLAME channels keyed; no sliders on a rig without a map
    assert "bad_map.npy" in got["bad_status"] and "(51, 100)" in got["bad_status"]


def test_flame_mesh_face_shape_keys_follow_flame(tmp_path):
    """The FLAME display mesh's ARKit shape keys (bpy-free numbers): exact for the expression part,
    the jaw's rotation linearised (small where jaws move little per slider step)."""
    from asset_builders import tiny_flame_arrays
    from blender_helpers import extension_module
    from pvp_runtime.contract.arkit import ArkitMap
    from pvp_runtime.formats.flame import read_flame_model
    mesh_math = extension_module("pvp_blender.flame_mesh_math")
    np.savez(tmp_path / "flame.npz", **{k: v for k, v in tiny_flame_arrays().items() if isinstance(v, np.ndarray)})
    model = read_flame_model(tmp_path / "flame.npz")
    layout = ChannelLayout(10)
    data = mesh_math.flame_mesh_data(model, 10)
    for jaw in (0.0, 0.05):
        arkit_map = ArkitMap(("jawOpen", "mouthSmileLeft"), ("expr_01", "expr_07", "jaw_x"),
                             np.array([[1.5, 0.0], [0.0, -2.0], [jaw, 0.0]]), np.zeros(3))
        weights, _, _ = arkit_map.on_layout(layout)
        offsets = mesh_math.face_offsets(data, weights, layout)
        assert not offsets[[i for i in range(52) if i not in (JAW_OPEN, ARKIT_NAMES.index("mouthSmileLeft"))]].any()
        frame = layout.defaults(1)[0]
        frame[[layout.index("expr_01"), layout.index("jaw_x")]] = 1.5, jaw
        shown = (data.vertices + offsets[JAW_OPEN]
                 + np.tensordot(mesh_math.corrective_values(frame, layout), data.corrective_offsets, axes=1))
        flame = mesh_math.posed_vertices(model, frame, layout)
        if jaw == 0.0:
            np.testing.assert_allclose(shown, flame, atol=1e-10)
        else:
            moved = np.abs(flame - mesh_math.posed_vertices(model, frame * (np.arange(len(frame)) != layout.index("jaw_x")),
                                                             layout)).max()
            assert moved > 0 and np.abs(shown - flame).max() < 0.05 * moved

"""Appearance edits in Blender: keyframed ``edit_<name>`` sliders render as ``pvp render`` does.

One Blender process per Blender environment: a rig on a subject with two edits gets its edit
properties (bundle names and ranges); one edit is keyed over six frames and rendered headless;
the frames must equal ``pvp render`` of a channel file holding the same column.  Then the rig is
pointed at a subject without edits: the keyed edit is reported (not dropped) and a render refuses it.
Reset puts the edits back to 0.
"""

import textwrap

import numpy as np
import pytest

from pvp_runtime.bundle import load_bundle, save_bundle
from pvp_runtime.cli.main import main
from pvp_runtime.contract.channel_files import write_channel_file
from pvp_runtime.contract.edits import EditSpec
from pvp_runtime.image_io import read_png_rgba

from blender_helpers import run_blender_scenario

FRAMES = range(1, 7)

SCENARIO = textwrap.dedent("""
    import os
    rig_module = module("rig")
    scene = bpy.context.scene
    pixel_exact_scene(scene)
    use_this_runtime()

    rig = add_centred_rig(ARGS["edited"])  # the startup camera is far away: compare the centred frame
    ui = rig.id_properties_ui("edit_age").as_dict()
    props, edit_names = rig_module.edit_properties(rig), rig.pvp_rig.edit_names
    for frame, value in ((1, 0.0), (6, 2.5)):
        rig["edit_age"] = value
        rig.keyframe_insert('["edit_age"]', frame=frame)
    for fcurve in module("animation").fcurve_collection(rig):
        for key in fcurve.keyframe_points:
            key.interpolation = "LINEAR"
    scene.render.filepath = ARGS["out"] + "/f_####"
    bpy.ops.render.render(animation=True)

    rig["edit_pc00"] = 1.0
    bpy.ops.pvp.reset_channels(group="edit")
    after_reset = [float(rig[name]) for name in ("edit_age", "edit_pc00")]

    rig.pvp_rig.subject_path = ARGS["plain"]   # a subject without edits: the keyed one is reported
    note, status = rig.pvp_rig.edits_note, rig.pvp_rig.subject_status
    scene.frame_set(4)
    scene.render.filepath = ARGS["out"] + "/plain_####"
    try:
        bpy.ops.render.render(write_still=True)
        error = ""
    except RuntimeError as exc:
        error = str(exc)
    result(props=props, ui=ui, edit_names=edit_names, names_after=rig.pvp_rig.edit_names, after_reset=after_reset, note=note,
           status=status, error=error, still_there="edit_age" in rig.keys(),
           plain_written=os.path.exists(ARGS["out"] + "/plain_0004.png"))
""")


@pytest.fixture(scope="module")
def edited_subject(tmp_path_factory, tiny_bundle_path):
    folder = tmp_path_factory.mktemp("edits")
    direction = folder / "age.npy"
    np.save(direction, np.random.default_rng(3).standard_normal((1, 32)).astype(np.float32))
    edited = folder / "edited.pvp"
    assert main(["edits", "add", str(tiny_bundle_path), "age", str(direction), "--layers", "0:6",
                 "--range", "-4", "4", "-o", str(edited)]) == 0
    assert main(["edits", "compute", str(edited), "-k", "1", "--samples", "256", "-o", str(edited)]) == 0
    return edited


def test_keyed_edit_renders_like_pvp_render(tmp_path, blender_python, edited_subject, tiny_bundle_path):
    bundle = load_bundle(edited_subject)
    layout = bundle.layout
    frames = layout.defaults(len(FRAMES))
    frames[:, layout.index("edit_age")] = np.linspace(0.0, 2.5, len(FRAMES))
    write_channel_file(tmp_path / "clip.csv", frames, layout)
    assert main(["render", str(edited_subject), str(tmp_path / "clip.csv"), "-o", str(tmp_path / "cli"),
                 "--device", "cpu"]) == 0
    out = tmp_path / "blender"
    got = run_blender_scenario(blender_python, tmp_path / "scenario", SCENARIO, edited=str(edited_subject),
                               plain=str(tiny_bundle_path), out=str(out), python=__import__("sys").executable,
                               source=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert got["props"] == ["edit_age", "edit_pc00"] and got["edit_names"] == "edit_age,edit_pc00"
    assert (got["ui"]["min"], got["ui"]["max"]) == (-4.0, 4.0)
    for i, frame in enumerate(FRAMES):
        blender = read_png_rgba(out / f"f_{frame:04d}.png").astype(np.int32)
        cli = read_png_rgba(tmp_path / "cli" / f"frame_{i:04d}.png").astype(np.int32)
        assert np.abs(blender - cli).max() <= 1, frame
    first, last = (read_png_rgba(out / f"f_{f:04d}.png").astype(np.int32) for f in (1, 6))
    assert np.abs(first - last).max() > 10  # the keyed edit visibly changes the picture
    assert got["after_reset"] == [0.0, 0.0]
    assert "edit_age" in got["note"] and got["still_there"]  # reported, kept with its keys
    assert got["names_after"] == "" and "2 edits" not in got["status"]
    assert "edit_age" in got["error"] and not got["plain_written"]

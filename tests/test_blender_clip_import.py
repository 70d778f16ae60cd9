"""Importing a clip onto an animated rig keeps the animation around it, and undo restores it all.

One Blender process per Blender environment (the ``blender_python`` fixture): an animator's keys
(Bezier and linear, before, across and after the clip's frames, on expression properties and a
bone) get a 4-frame clip imported at frame 100 with the operator, then ``ed.undo``.  The rig has no
subject, so no runtime starts.  Also: renaming expression F-curves when the expression count
changes, with one expression property deleted.  The Bezier split itself is checked without Blender.
"""

import textwrap

import numpy as np
import pytest

from pvp_runtime.contract.channel_files import write_channel_file
from pvp_runtime.contract.channels import ChannelLayout

from blender_helpers import extension_module, run_blender_scenario

key_splice = extension_module("pvp_blender.key_splice")
LAYOUT = ChannelLayout(10)
START = 100
SAMPLES = np.arange(-5.0, 220.0, 0.5)  # frames where the scenario samples every F-curve

SCENARIO = textwrap.dedent("""
    import numpy as np
    animation, rig_module = module("animation"), module("rig")

    def key(rig, path, index, keys, interpolation="BEZIER"):
        for frame, value in keys:
            if path.startswith('["'):
                rig[path[2:-2]] = value
                rig.keyframe_insert(path, frame=frame)
            else:
                rig.path_resolve(path)[index] = value
                rig.keyframe_insert(path, index=index, frame=frame)
        curve = animation.fcurve_collection(rig).find(path, index=index)
        for point in curve.keyframe_points:
            point.interpolation = interpolation

    def curves(name):
        out = {}
        for curve in animation.fcurve_collection(bpy.data.objects[name]):
            out[f"{curve.data_path}[{curve.array_index}]"] = dict(
                keys=[list(p.co) for p in curve.keyframe_points],
                samples=[curve.evaluate(f) for f in ARGS["samples"]])
        return out

    bpy.ops.pvp.add_head_rig(num_expressions=10)
    rig = bpy.context.object
    key(rig, '["expr_00"]', 0, [(1, 0.0), (20, 1.0)])                # keys before the clip only
    key(rig, '["expr_01"]', 0, [(1, 0.0), (60, 0.5), (200, 2.0)])    # keys on both sides
    key(rig, '["expr_02"]', 0, [(100, 0.3), (102, 1.0)])             # keys inside only: replaced
    key(rig, '["expr_04"]', 0, [(1, 0.2), (150, -0.4)])              # not in the clip: untouched
    key(rig, '["expr_05"]', 0, [(99.5, 0.4), (103.5, -0.3), (130, 0.0)], "LINEAR")  # within a frame
    key(rig, 'pose.bones["head"].rotation_euler', 1, [(1, 0.0), (150, 0.5)])  # one segment spans it
    before = curves(rig.name)
    bpy.ops.ed.undo_push(message="animated")

    # undo=True: run as from the UI, so the operator's UNDO option pushes an undo step.
    bpy.ops.pvp.import_channels("EXEC_DEFAULT", True, filepath=ARGS["clip"], start_frame=ARGS["start"])
    imported = curves(rig.name)
    layout = sys.modules[ADDON + ".pvp_runtime.contract.channels"].ChannelLayout(10)
    read = []
    for frame in range(ARGS["start"], ARGS["start"] + 4):
        bpy.context.scene.frame_set(frame)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        read.append(rig_module.read_channels(rig.evaluated_get(depsgraph), layout, frame).tolist())
    name = rig.name
    bpy.ops.ed.undo()
    undone = curves(name)

    # Renaming: expr_03's property deleted, then 10 -> 200 expressions (two-digit -> three-digit names).
    bpy.ops.pvp.add_head_rig(num_expressions=10)
    other = bpy.context.object
    for i in range(10):
        key(other, f'["expr_{i:02d}"]', 0, [(1, 0.1 * i)])
    del other["expr_03"]
    rig_module.ensure_expression_properties(other, 200)
    renamed = {c.data_path: c.evaluate(1) for c in animation.fcurve_collection(other)}

    # A 30 fps clip in a 24 fps scene lands between frames (100, 100.8, ...): importing it again
    # onto its own keys must give the same keys, not doubles of float32-rounded frames.
    bpy.ops.pvp.add_head_rig(num_expressions=10)
    third = bpy.context.object
    key(third, '["expr_01"]', 0, [(1, 0.0), (200, 2.0)])
    reimported = []
    for _ in range(2):
        bpy.ops.pvp.import_channels(filepath=ARGS["clip_30fps"], start_frame=ARGS["start"])
        reimported.append(curves(third.name)['["expr_01"][0]']["keys"])
    result(before=before, imported=imported, undone=undone, read=read, renamed=renamed, reimported=reimported,
           undo_option="UNDO" in module("operators").PVP_OT_import_channels.bl_options)
""")


def clip_frames():
    clip = LAYOUT.defaults(4)
    for name, values in (("expr_00", [0.5, 0.9, -0.3, 0.2]), ("expr_01", [1.2, 1.0, 0.8, 0.6]),
                         ("expr_02", [-0.5, -0.4, -0.2, 0.0]), ("expr_05", [0.7, 0.1, 0.2, 0.3]),
                         ("head_yaw", [0.1, 0.2, 0.3, 0.25])):
        clip[:, LAYOUT.index(name)] = values
    return clip


@pytest.fixture(scope="module")
def blender_run(tmp_path_factory, blender_python):
    root = tmp_path_factory.mktemp("blender_clip")
    write_channel_file(root / "clip.csv", clip_frames(), LAYOUT)
    write_channel_file(root / "clip_30fps.json", clip_frames(), LAYOUT, fps=30)
    return run_blender_scenario(blender_python, root, SCENARIO, clip=str(root / "clip.csv"), start=START,
                                clip_30fps=str(root / "clip_30fps.json"), samples=SAMPLES.tolist())


def test_import_keeps_the_animation_outside_the_clip(blender_run):
    before, after = blender_run["before"], blender_run["imported"]
    first, last = START, START + 3
    for curve, old in before.items():
        old_keys = np.array(old["keys"])
        new = after[curve]
        new_keys = np.array(new["keys"])
        outside = (old_keys[:, 0] < first) | (old_keys[:, 0] > last)
        for frame, value in old_keys[outside]:  # every key outside the clip's frames is kept
            assert np.any(np.all(np.abs(new_keys - (frame, value)) < 1e-6, axis=1)), (curve, frame)
        # ... and the curve itself: unchanged up to a frame before the clip where it had keys
        # before it, and from a frame after the clip where it had keys after it.
        samples, old_samples = np.array(new["samples"]), np.array(old["samples"])
        kept = np.zeros(len(SAMPLES), dtype=bool)
        if np.any(old_keys[:, 0] < first):
            kept |= SAMPLES <= first - 1
        if np.any(old_keys[:, 0] > last):
            kept |= SAMPLES >= last + 1
        np.testing.assert_allclose(samples[kept], old_samples[kept], atol=1e-5, err_msg=curve)
    # The case: expr_00 keyed 0 at frame 1 and 1 at frame 20 still reads 1 at frame 20.
    assert abs(after['["expr_00"][0]']["samples"][list(SAMPLES).index(20.0)] - 1.0) < 1e-6
    assert after['["expr_04"][0]'] == before['["expr_04"][0]']  # a channel the clip leaves at rest
    # Keys only inside the clip's frames are replaced by the clip's (no hold keys without animation).
    assert [k[0] for k in after['["expr_02"][0]']["keys"]] == [100.0, 101.0, 102.0, 103.0]
    assert [k[0] for k in after['["expr_00"][0]']["keys"]] == [1.0, 20.0, 99.0, 100.0, 101.0, 102.0, 103.0]


def test_imported_clip_plays_on_its_frames(blender_run):
    # The channels the clip keys (a channel it leaves at rest, expr_04, keeps the animator's keys).
    keyed = [LAYOUT.index(name) for name in ("head_yaw", "head_pitch", "head_roll",
                                             "expr_00", "expr_01", "expr_02", "expr_05")]
    np.testing.assert_allclose(np.array(blender_run["read"])[:, keyed], clip_frames()[:, keyed], atol=2e-5)


def test_undo_restores_every_curve(blender_run):
    assert blender_run["undo_option"]
    assert blender_run["imported"] != blender_run["before"]
    assert set(blender_run["undone"]) == set(blender_run["before"])  # the curves the import made are gone
    for curve, old in blender_run["before"].items():
        np.testing.assert_allclose(blender_run["undone"][curve]["keys"], old["keys"], atol=1e-7, err_msg=curve)
        np.testing.assert_allclose(blender_run["undone"][curve]["samples"], old["samples"], atol=1e-7, err_msg=curve)


def test_reimporting_a_clip_between_frames_gives_the_same_keys(blender_run):
    once, twice = (np.array(keys) for keys in blender_run["reimported"])
    np.testing.assert_allclose(once[:, 0], [1.0, 99.0, 100.0, 100.8, 101.6, 102.4, 103.4, 200.0], atol=1e-4)
    np.testing.assert_allclose(twice, once, atol=1e-6)


def test_expression_curves_are_renamed_by_number_when_one_property_is_missing(blender_run):
    renamed = blender_run["renamed"]
    assert sorted(renamed) == [f'["expr_{i:03d}"]' for i in range(10)]
    for i in range(10):
        assert renamed[f'["expr_{i:03d}"]'] == pytest.approx(0.1 * i, abs=1e-6)


# --------------------------------------------------------------------------- without Blender

def bezier(p0, p1, p2, p3, t):
    t = np.asarray(t)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3


def value_at(points, frame):
    """A segment's value at ``frame``, by dense sampling (independent of the split's solver)."""
    curve = bezier(*points, np.linspace(0, 1, 200001))
    return np.interp(frame, curve[:, 0], curve[:, 1])


@pytest.mark.parametrize("right, left", [((40.0, 2.0), (70.0, -1.0)),   # ordinary handles
                                         ((90.0, 2.0), (20.0, -1.0))])  # overlapping: Blender shortens them
def test_split_halves_draw_the_segment(right, left):
    start, end = np.array([10.0, 0.0]), np.array([100.0, 1.0])
    corrected = key_splice.corrected_handles(start, right, left, end)
    whole = (start, *corrected, end)
    split = key_splice.split_segment(start, right, left, end, 47.0)
    point = split["point"]
    assert point[0] == pytest.approx(47.0, abs=1e-9)
    assert point[1] == pytest.approx(value_at(whole, 47.0), abs=1e-6)
    first = (start, split["start_right"], split["point_left"], point)
    second = (point, split["point_right"], split["end_left"], end)
    for half, frames in ((first, np.linspace(10, 47, 9)), (second, np.linspace(47, 100, 9))):
        np.testing.assert_allclose([value_at(half, f) for f in frames], [value_at(whole, f) for f in frames],
                                   atol=1e-6)

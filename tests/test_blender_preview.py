"""Scrubbing with the viewport preview on: one render in progress and the newest request, never a
queue, and no interpreter probed on Blender's UI thread.

A Blender process per Blender environment calls the viewport's ``update`` (what Blender calls on
the UI thread for every depsgraph change in Rendered shading) for frames 1..20 of a keyed rig,
while the first render is held inside interpreter autodetection.  The autodetection is replaced
by a stand-in that records its thread and finds nothing, so no runtime starts; the coalescing
itself is tested without Blender in ``test_blender_session.py``.
"""

import textwrap

import pytest

from blender_helpers import run_blender_scenario

SCENARIO = textwrap.dedent("""
    import threading
    viewport, interpreters = module("viewport"), module("interpreters")
    probes, started, release = [], threading.Event(), threading.Event()

    def autodetect(preference, extension_dir, source_dir="", env=None, probe=None):
        on_ui_thread = threading.current_thread() is threading.main_thread()
        probes.append(on_ui_thread)
        if not on_ui_thread:  # hold the first render here while the animator scrubs
            started.set()
            release.wait(timeout=120)
        return ""  # nothing found: the render fails with the missing-interpreter message

    interpreters.choose_interpreter = autodetect
    rendered = []
    render_native = viewport.render_native
    def counting_render(options, subject, frame, channels):
        rendered.append(frame)
        return render_native(options, subject, frame, channels)
    viewport.render_native = counting_render

    bpy.ops.pvp.add_head_rig(subject_path=ARGS["bundle"])  # no interpreter preference: autodetect
    head = bpy.context.object.pose.bones["head"]
    for frame, yaw in ((1, 0.0), (30, 0.6)):
        head.rotation_euler[1] = yaw
        head.keyframe_insert("rotation_euler", index=1, frame=frame)
    scene = bpy.context.scene

    def scrub(frame):
        scene.frame_set(frame)
        viewport.PREVIEW.update(bpy.context.evaluated_depsgraph_get())

    scrub(1)
    held = started.wait(timeout=120)
    for frame in range(2, 21):
        scrub(frame)
    probes_while_scrubbing = list(probes)
    release.set()
    error = viewport.PREVIEW.pending.exception(timeout=120)
    viewport.PREVIEW.stop()  # no timer left behind: the 4.x wheels crash at exit with one registered
    result(held=held, probes=probes, probes_while_scrubbing=probes_while_scrubbing, rendered=rendered,
           error=str(error))
""")


@pytest.fixture(scope="module")
def blender_run(tmp_path_factory, blender_python, tiny_bundle_path):
    return run_blender_scenario(blender_python, tmp_path_factory.mktemp("blender_preview"), SCENARIO,
                                bundle=str(tiny_bundle_path))


def test_scrubbing_renders_the_frame_in_progress_and_the_newest_only(blender_run):
    assert blender_run["held"]
    assert blender_run["rendered"] == [1, 20]
    assert "no runtime Python interpreter is set" in blender_run["error"]


def test_interpreters_are_probed_on_the_worker_never_on_the_ui_thread(blender_run):
    assert blender_run["probes_while_scrubbing"] == [False]  # one autodetection, on the worker
    assert blender_run["probes"] == [False]                  # and found once per session

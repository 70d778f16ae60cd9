"""The main job (scripts/demo.py) on the shipped demo subject, cut to a few frames.

Same path as the README's main command: build + install the extension into a private user
folder, write the keyed shot, render it headless through the PVP Avatar engine (bpy wheel),
encode the video and the contact sheet.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pvp_runtime.avatar import Avatar
from pvp_runtime.contract.subject_manifest import SubjectSummary
from pvp_runtime.contract.provenance import file_sha256, frame_metadata, pvp_fields
from pvp_runtime.image_io import read_metadata, read_png_rgba

pytest.importorskip("bpy", reason="the demo renders through Blender (the bpy wheel)")

REPO = Path(__file__).resolve().parents[1]
DEMO = [sys.executable, str(REPO / "scripts" / "demo.py")]
SUBJECT = REPO / "demo" / "demo.pvp"


def run_demo(*args):
    return subprocess.run([*DEMO, *map(str, args)], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("demo") / "out"
    first = run_demo("--output", output, "--frames", 4)
    assert first.returncode == 0, first.stdout + first.stderr
    return output, first


def test_shipped_subject_is_a_valid_bundle():
    avatar = Avatar.load(SUBJECT, device="cpu")
    assert avatar.layout.num_expressions >= 8
    assert SUBJECT.stat().st_size <= 25 * 1024 * 1024


def test_demo_renders_frames_video_and_contact_sheet(demo_run):
    output, first = demo_run
    summary = json.loads(first.stdout[first.stdout.index("{"):first.stdout.rindex("}") + 1])
    frames = sorted((output / "frames").glob("frame_*.png"))
    assert [f.name for f in frames] == [f"frame_{i:04d}.png" for i in range(1, 5)]
    assert summary["count"] == 4 and Path(summary["video"]).is_file() and Path(summary["contact_sheet"]).is_file()
    images = [read_png_rgba(f) for f in frames]
    assert images[0].shape == (256, 256, 4)
    # The avatar is there (opaque in the middle) and the keyed head turn moves it.
    assert images[0][96:160, 96:160, 3].min() > 200
    assert np.abs(images[3].astype(int) - images[0].astype(int)).mean() > 1.0
    # Every frame of the shot says that it is synthetic, whose likeness it is and where it came from.
    for frame in frames:
        assert pvp_fields(read_metadata(frame)[1]) == frame_metadata("demo", file_sha256(SUBJECT))
    video = cv2.VideoCapture(summary["video"])
    count = 0
    while video.read()[0]:
        count += 1
    assert count == 4
    sheet = read_png_rgba(Path(summary["contact_sheet"]))
    assert sheet.shape[0] == 256 and sheet.shape[1] == 4 * 256


def test_rerun_skips_what_is_built(demo_run):
    output, _ = demo_run
    again = run_demo("--output", output, "--frames", 4)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("(unchanged)") == 3, again.stdout


def test_missing_subject_is_one_line_and_exit_1(tmp_path):
    missing = run_demo("--output", tmp_path / "out", "--subject", tmp_path / "nope.pvp")
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0 and "nope.pvp" in missing.stderr, missing.stderr


# Inside the bpy wheel: where the shot's camera puts the avatar's crop (its centre and width in
# output pixels) on each frame, placed as the engine places it (the eye midpoint of the moved
# rig, the subject's framing), and the shot's own Cycles render with the compositor off.
PROBE_COMPOSITE_SHOT = """
import json, sys
import bpy
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector
blend, reference, head_centre, eye_fraction, frames = sys.argv[1:6]
head_centre, eye_fraction, frames = json.loads(head_centre), float(eye_fraction), int(frames)
bpy.ops.wm.open_mainfile(filepath=blend)
scene = bpy.context.scene
rig = next(obj for obj in scene.objects if obj.type == "ARMATURE")
w, h = scene.render.resolution_x, scene.render.resolution_y
def pixel(point):
    v = world_to_camera_view(scene, scene.camera, point)
    return [v.x * w, (1 - v.y) * h]
crops = []
for frame in range(1, frames + 1):
    scene.frame_set(frame)
    bones = rig.pose.bones
    rest = [bones[name].bone.head_local for name in ("eye.L", "eye.R")]
    eyes = rig.matrix_world @ (bones["head"].head + (rest[0] + rest[1]) / 2 - bones["head"].bone.head_local)
    side = (rig.matrix_world.to_3x3() @ (rest[0] - rest[1])).length / eye_fraction
    centre = eyes + Vector(((0.5 - head_centre[0]) * side, 0.0, (head_centre[1] - 0.5) * side))
    left, right = pixel(centre - Vector((side / 2, 0, 0))), pixel(centre + Vector((side / 2, 0, 0)))
    crops.append({"centre": pixel(centre), "width": right[0] - left[0]})
scene.frame_set(1)
scene.render.use_compositing = False
scene.render.filepath = reference
bpy.ops.render.render(write_still=True)
print(json.dumps({"engine": scene.render.engine, "crops": crops}))
"""


@pytest.fixture(scope="module")
def composite_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("composite") / "out"
    run = run_demo("--output", output, "--frames", 3, "--over-background")
    assert run.returncode == 0, run.stdout + run.stderr
    summary = SubjectSummary.read(SUBJECT)
    reference = output / "background_only.png"
    probe = subprocess.run([sys.executable, "-c", PROBE_COMPOSITE_SHOT, output / "composite_shot.blend", reference,
                            json.dumps(summary.head_centre), str(summary.eye_distance), "3"],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "XDG_CACHE_HOME": str(output / "cache")})
    assert probe.returncode == 0, probe.stdout + probe.stderr
    placed = json.loads(probe.stdout.strip().splitlines()[-1])
    return output, placed, read_png_rgba(reference)


def test_demo_over_background_composites_the_placed_avatar_over_cycles(composite_run):
    output, placed, background = composite_run
    assert placed["engine"] == "CYCLES"
    frames = sorted((output / "composite_frames").glob("frame_*.png"))
    assert [f.name for f in frames] == [f"frame_{i:04d}.png" for i in range(1, 4)]
    assert (output / "composite_contact_sheet.png").is_file() and (output / "composite.mp4").is_file()
    rows, columns = np.mgrid[0:background.shape[0], 0:background.shape[1]]
    for frame, crop in zip(frames, placed["crops"]):
        image = read_png_rgba(frame)
        assert image.shape == background.shape and image[..., 3].min() == 255  # the set fills the frame
        (x, y), side = crop["centre"], crop["width"]
        assert 40 < side < 0.6 * image.shape[1]  # pulled back: the set shows around the head
        # Away from the avatar's crop the frame is the Cycles render of the set, pixel for pixel.
        away = np.maximum(np.abs(columns - x), np.abs(rows - y)) > 0.5 * side + 2
        assert np.abs(image[away].astype(int) - background[away].astype(int)).max() <= 3
        # The avatar is over it where the rig's head is seen through the camera: what differs
        # from the set is centred on the placed crop (its alpha decides its outline).
        differs = np.abs(image[..., :3].astype(int) - background[..., :3].astype(int)).max(axis=-1) > 12
        assert differs[int(y) - 4:int(y) + 5, int(x) - 4:int(x) + 5].mean() > 0.5
        assert abs(columns[differs].mean() - x) < 0.15 * side and abs(rows[differs].mean() - y) < 0.2 * side
        # The frames say what the avatar in them is, in the shot's Note.
        assert pvp_fields(read_metadata(frame)[1]) == frame_metadata("demo", file_sha256(SUBJECT))
    # The rig drifts sideways over the shot, and the avatar with it.
    assert placed["crops"][2]["centre"][0] < placed["crops"][0]["centre"][0] - 0.5

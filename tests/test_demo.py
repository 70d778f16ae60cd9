"""The main job (scripts/demo.py) on the shipped demo subject, cut to a few frames.

Same path as the README's main command: build + install the extension into a private user
folder, write the keyed shot, render it headless through the PVP Avatar engine (bpy wheel),
encode the video and the contact sheet.
"""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pvp_runtime.avatar import Avatar
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

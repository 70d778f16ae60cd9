"""DECA / EMOCA / SMIRK / feats.json outputs -> rig channel frames, and the commands that read them."""

import json
import logging

import numpy as np
import pytest

from pvp_runtime.cli.main import main
from pvp_runtime.contract.channel_files import read_channel_file
from pvp_runtime.contract.channels import ChannelLayout, head_rotation_matrix, matrix_to_axis_angle
from pvp_runtime.contract.errors import ChannelError
from pvp_runtime.formats.channel_sources import detect_source, read_any_channels

from asset_builders import one_torch_thread

LAYOUT = ChannelLayout(50)
# (yaw, pitch, roll) per frame; the tracker sees them as FLAME global axis-angles.
ANGLES = np.array([[0.0, 0.0, 0.0], [0.4, 0.0, 0.0], [0.0, -0.2, 0.0], [0.3, 0.15, -0.1]])


def tracker_clip(num_expressions=50, seed=0):
    rng = np.random.default_rng(seed)
    global_pose = np.stack([matrix_to_axis_angle(head_rotation_matrix(*a)) for a in ANGLES])
    jaw = np.zeros((len(ANGLES), 3))
    jaw[:, 0] = [0.0, 0.1, 0.3, 0.05]
    expression = rng.normal(scale=0.8, size=(len(ANGLES), num_expressions))
    return global_pose, jaw, expression


def assert_frames_match(frames, layout, jaw, expression):
    np.testing.assert_allclose(frames[:, layout.slice("head")], ANGLES, atol=1e-5)
    np.testing.assert_allclose(frames[:, layout.slice("jaw")], jaw, atol=1e-6)
    count = min(expression.shape[1], layout.num_expressions)
    np.testing.assert_allclose(frames[:, layout.slice("expression")][:, :count], expression[:, :count], atol=1e-6)
    assert not frames[:, layout.slice("neck")].any() and not frames[:, layout.slice("eyes")].any()


def write_deca(path, global_pose, jaw, expression, frames_in_cam=None):
    count = len(global_pose)
    np.savez(path, pose=np.concatenate([global_pose, jaw], 1).astype(np.float32),
             exp=expression.astype(np.float32), cam=np.tile([[9.0, 0.01, -0.02]], (frames_in_cam or count, 1)),
             shape=np.zeros((count, 100), np.float32), tex=np.zeros((count, 50), np.float32),
             light=np.zeros((count, 9, 3), np.float32))


def write_emoca(folder, global_pose, jaw, expression, names=None):
    names = names or [f"{i + 1:05d}_000" for i in range(len(global_pose))]
    for name, g, j, e in zip(names, global_pose, jaw, expression):
        sample = folder / name
        sample.mkdir(parents=True)
        np.save(sample / "pose.npy", np.concatenate([g, j]).astype(np.float32))
        np.save(sample / "exp.npy", e.astype(np.float32))
        for extra, size in (("shape", 100), ("tex", 50), ("detail", 128)):
            np.save(sample / f"{extra}.npy", np.zeros(size, np.float32))
    return names


def test_deca_codes(tmp_path):
    global_pose, jaw, expression = tracker_clip()
    path = tmp_path / "deca_codes.npz"
    write_deca(path, global_pose, jaw, expression)
    assert detect_source(path) == "deca"
    clip = read_any_channels(path, LAYOUT)
    assert clip.fps is None
    assert_frames_match(clip.frames, LAYOUT, jaw, expression)


def test_emoca_video_folder_takes_one_face_per_frame(tmp_path, caplog):
    global_pose, jaw, expression = tracker_clip()
    folder = tmp_path / "EMOCA_v2_lr_mse_20"
    write_emoca(folder, global_pose, jaw, expression)
    write_emoca(folder, global_pose[:1] * 0, jaw[:1] * 0, expression[:1] * 0, names=["00002_001"])  # 2nd face
    assert detect_source(folder) == "emoca"
    with caplog.at_level(logging.WARNING):
        clip = read_any_channels(folder, LAYOUT)
    assert "several faces" in caplog.text
    assert_frames_match(clip.frames, LAYOUT, jaw, expression)


def test_emoca_gaps_and_missing_files_are_errors(tmp_path):
    global_pose, jaw, expression = tracker_clip()
    folder = tmp_path / "gap"
    write_emoca(folder, global_pose, jaw, expression, names=["00001_000", "00002_000", "00004_000", "00005_000"])
    with pytest.raises(ChannelError, match="no codes for frames 3 "):
        read_any_channels(folder, LAYOUT)
    folder = tmp_path / "images"
    write_emoca(folder, global_pose, jaw, expression, names=["anna", "bob", "carl", "dora"])
    assert len(read_any_channels(folder, LAYOUT).frames) == 4  # image folders: name order, no gap check
    (folder / "bob" / "pose.npy").unlink()
    with pytest.raises(ChannelError, match="bob/pose.npy: missing"):
        read_any_channels(folder, LAYOUT)


def test_smirk_outputs_drop_eyelids(tmp_path, caplog):
    global_pose, jaw, expression = tracker_clip()
    path = tmp_path / "smirk.npz"
    count = len(global_pose)
    np.savez(path, pose_params=global_pose, jaw_params=jaw, expression_params=expression,
             eyelid_params=np.full((count, 2), 0.5), cam=np.zeros((count, 3)), shape_params=np.zeros((count, 300)))
    assert detect_source(path) == "smirk"
    with caplog.at_level(logging.INFO):
        clip = read_any_channels(path, LAYOUT)
    assert "eyelid_params" in caplog.text
    assert_frames_match(clip.frames, LAYOUT, jaw, expression)


def test_feats_json(tmp_path):
    global_pose, jaw, expression = tracker_clip()
    path = tmp_path / "feats.json"
    records = [{"pose": list(np.concatenate([g, j])), "expr": list(e), "lmks": [[0.0, 0.0]] * 68}
               for g, j, e in zip(global_pose, jaw, expression)]
    path.write_text(json.dumps(records))
    assert detect_source(path) == "feats"
    assert_frames_match(read_any_channels(path, LAYOUT).frames, LAYOUT, jaw, expression)
    records[2]["pose"] = records[2]["pose"][:3]
    path.write_text(json.dumps(records))
    with pytest.raises(ChannelError, match="frame 2: 'pose' has 3 values, expected 6"):
        read_any_channels(path, LAYOUT)


def test_expression_counts_adapt_to_the_subject(tmp_path):
    global_pose, jaw, expression = tracker_clip(num_expressions=100)
    path = tmp_path / "deca.npz"
    write_deca(path, global_pose, jaw, expression)
    few = ChannelLayout(10)
    assert_frames_match(read_any_channels(path, few).frames, few, jaw, expression)
    global_pose, jaw, expression = tracker_clip(num_expressions=20)
    write_deca(path, global_pose, jaw, expression)
    frames = read_any_channels(path, LAYOUT).frames
    assert_frames_match(frames, LAYOUT, jaw, expression)
    assert not frames[:, LAYOUT.slice("expression")][:, 20:].any()


def test_frame_counts_and_values_are_checked(tmp_path):
    global_pose, jaw, expression = tracker_clip()
    path = tmp_path / "deca.npz"
    write_deca(path, global_pose, jaw, expression[:3])
    with pytest.raises(ChannelError, match="frame counts differ .*'pose' 4, 'exp' 3"):
        read_any_channels(path, LAYOUT)
    write_deca(path, global_pose, jaw, expression, frames_in_cam=5)
    with pytest.raises(ChannelError, match="frame counts differ"):
        read_any_channels(path, LAYOUT)
    write_deca(path, global_pose, jaw, expression)
    with pytest.raises(ChannelError, match="holds 4 frames, expected 5"):
        read_any_channels(path, LAYOUT, expected_frames=5)
    expression[1, 4] = 40.0  # a unit mix-up, far outside FLAME's range
    write_deca(path, global_pose, jaw, expression)
    with pytest.raises(ChannelError, match="frame 1, channel 'expr_04'"):
        read_any_channels(path, LAYOUT)
    np.savez(path, pose=np.zeros((4, 5)), exp=np.zeros((4, 50)))
    with pytest.raises(ChannelError, match=r"'pose' has shape \[4, 5\], expected \[frames, 6\]"):
        read_any_channels(path, LAYOUT)
    np.savez(path, pose=np.array([None] * 4, dtype=object), exp=np.zeros((4, 50)))
    with pytest.raises(ChannelError, match="plain arrays"):
        read_any_channels(path, LAYOUT, source="deca")


def test_convert_channels_command(tmp_path, capsys):
    global_pose, jaw, expression = tracker_clip(num_expressions=50)
    source = tmp_path / "deca.npz"
    write_deca(source, global_pose, jaw, expression)
    out = tmp_path / "clip.csv"
    assert main(["convert-channels", str(source), "-o", str(out), "--fps", "30"]) == 0
    assert "4 frames (deca, 50 expressions)" in capsys.readouterr().out
    clip = read_channel_file(out, LAYOUT)
    assert_frames_match(clip.frames, LAYOUT, jaw, expression)
    assert main(["convert-channels", str(source), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    broken = tmp_path / "broken.npz"
    broken.write_bytes(source.read_bytes()[:200])
    assert main(["convert-channels", str(broken), "-o", str(tmp_path / "x.csv")]) == 2
    assert str(broken) in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_render_reads_tracker_output_directly(tmp_path, tiny_bundle_path, capsys):
    global_pose, jaw, expression = tracker_clip(num_expressions=10)
    folder = tmp_path / "emoca"
    write_emoca(folder, global_pose[:2], jaw[:2], expression[:2])
    out = tmp_path / "frames"
    with one_torch_thread():
        assert main(["render", str(tiny_bundle_path), str(folder), "-o", str(out), "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["frame_0000.png", "frame_0001.png"]

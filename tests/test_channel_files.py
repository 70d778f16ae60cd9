import json

import numpy as np
import pytest

from pvp_runtime.contract.channel_files import read_channel_file, write_channel_file
from pvp_runtime.contract.errors import ChannelError
from pvp_runtime.example_clips import head_turn_clip


@pytest.mark.parametrize("suffix", [".csv", ".json", ".npz"])
def test_round_trip(tmp_path, layout, suffix):
    clip = head_turn_clip(layout, 12, expression_channels=3)
    path = tmp_path / f"clip{suffix}"
    write_channel_file(path, clip, layout, fps=30)
    read = read_channel_file(path, layout)
    assert read.frames.shape == clip.shape
    assert np.allclose(read.frames, clip, atol=1e-6)
    assert read.fps == (None if suffix == ".csv" else 30)


def test_partial_files_take_defaults(tmp_path, layout):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"channels": {"jaw_x": [0.1, 0.2, 0.3]}}))
    frames = read_channel_file(path, layout).frames
    assert frames.shape == (3, layout.size) and np.count_nonzero(frames) == 3


@pytest.mark.parametrize("name, content, words", [
    ("a.csv", "head_yaw,jaw_x\n0.1\n", "line 2 has 1 values"),
    ("b.csv", "head_yaw\nleft\n", "line 2, channel 'head_yaw': 'left'"),
    ("c.csv", "", "empty CSV"),
    ("d.json", "{", "not valid JSON"),
    ("e.json", "[1, 2]", "'frames' list"),
    ("f.json", json.dumps({"frames": [{"jaw_x": 0.1}, 5]}), "frame 1 is not a mapping"),
    ("g.json", json.dumps({"fps": "fast", "frames": [{}]}), "'fps' must be a number"),
    ("h.txt", "x", "unsupported channel file type"),
    ("i.npz", b"PK\x03\x04garbage", "not a readable .npz"),
    ("j.json", json.dumps({"frames": []}), "holds no frames"),
])
def test_bad_files(tmp_path, layout, name, content, words):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ChannelError) as info:
        read_channel_file(path, layout)
    assert words in str(info.value) and name in str(info.value)


def test_npz_with_pickled_objects_is_refused(tmp_path, layout):
    path = tmp_path / "evil.npz"
    np.savez(path, head_yaw=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ChannelError, match="evil.npz"):
        read_channel_file(path, layout)

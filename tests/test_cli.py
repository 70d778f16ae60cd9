import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pvp_runtime.avatar import Avatar
from pvp_runtime.cli.main import main

from cli_helpers import fails
from pvp_runtime.contract.channel_files import read_channel_file, write_channel_file
from pvp_runtime.example_clips import head_turn_clip
from pvp_runtime.image_io import read_png_rgba


@pytest.fixture
def clip_csv(tmp_path, layout):
    path = tmp_path / "clip.csv"
    assert main(["example-channels", str(path), "--frames", "6", "--expressions", "10"]) == 0
    return path


def test_info(capsys, tiny_bundle_path):
    assert main(["info", str(tiny_bundle_path)]) == 0
    out = capsys.readouterr().out
    assert "32 x 32" in out and "pivots         4" in out and "expressions    10" in out
    assert main(["info", "--json", str(tiny_bundle_path)]) == 0
    assert json.loads(capsys.readouterr().out)["num_ws"] == 8


def test_render_end_to_end_matches_avatar(tmp_path, tiny_bundle_path, clip_csv):
    out = tmp_path / "frames"
    assert main(["render", str(tiny_bundle_path), str(clip_csv), "-o", str(out), "--device", "cpu",
                 "--batch-size", "4", "--video"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"frame_{i:04d}.png" for i in range(6)] + ["render.mp4"]
    assert (out / "render.mp4").stat().st_size > 0
    avatar = Avatar.load(tiny_bundle_path, device="cpu")
    # Same batching as the CLI: batch composition may move a value by one 8-bit step.
    expected = avatar.render(read_channel_file(clip_csv, avatar.layout).frames, batch_size=4).srgb8
    for i in range(6):
        assert np.array_equal(read_png_rgba(out / f"frame_{i:04d}.png"), expected[i])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_render_frame_range_and_formats(tmp_path, tiny_bundle_path, layout):
    clip = head_turn_clip(layout, 10)
    for suffix in (".json", ".npz"):
        path = tmp_path / f"clip{suffix}"
        write_channel_file(path, clip, layout, fps=24)
        out = tmp_path / f"out{suffix[1:]}"
        assert main(["render", str(tiny_bundle_path), str(path), "-o", str(out), "--frames", "3:7", "--reenact"]) == 0
        assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:04d}.png" for i in range(3, 7)]


def test_bad_inputs_fail_cleanly_and_write_nothing(tmp_path, capsys, tiny_bundle_path, clip_csv, layout):
    out = tmp_path / "out"
    bundle = str(tiny_bundle_path)
    fails(capsys, ["render", str(tmp_path / "missing.pvp"), str(clip_csv), "-o", str(out)], "missing.pvp")
    corrupt = tmp_path / "corrupt.pvp"
    corrupt.write_bytes(tiny_bundle_path.read_bytes()[:5000])
    fails(capsys, ["render", str(corrupt), str(clip_csv), "-o", str(out)], "corrupt.pvp")
    fails(capsys, ["render", bundle, str(tmp_path / "nope.csv"), "-o", str(out)], "nope.csv", "not found")
    nan_clip = tmp_path / "nan.csv"
    text = clip_csv.read_text().splitlines()
    row = next(i for i, line in enumerate(text) if line.startswith("2,"))  # frame 2 (after a marker and header)
    cells = text[row].split(",")
    cells[1] = "nan"
    nan_clip.write_text("\n".join(text[:row] + [",".join(cells)] + text[row + 1:]))
    fails(capsys, ["render", bundle, str(nan_clip), "-o", str(out)], "frame 2", "head_yaw")
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"frames": [{"head_yw": 0.1}]}))
    fails(capsys, ["render", bundle, str(typo), "-o", str(out)], "typo.json", "head_yw")
    wrong = tmp_path / "degrees.csv"
    wrong.write_text("head_yaw\n0\n75\n")
    fails(capsys, ["render", bundle, str(wrong), "-o", str(out)], "frame 1", "head_yaw", "outside")
    fails(capsys, ["render", bundle, str(clip_csv), "-o", str(out), "--frames", "9:12"], "selects no frames")
    fails(capsys, ["render", bundle, str(clip_csv), "-o", str(out), "--frames", "a-b"], "--frames")
    fails(capsys, ["render", bundle, str(clip_csv), "-o", str(out), "--batch-size", "0"], "--batch-size")
    fails(capsys, ["render", bundle, str(clip_csv), "-o", str(tmp_path / "no" / "dir")], "does not exist")
    fails(capsys, ["render", bundle, str(clip_csv), "-o", str(out), "--device", "tpu"], "unknown device")
    pickled = tmp_path / "evil.npz"
    np.savez(pickled, head_yaw=np.array([object()], dtype=object))
    fails(capsys, ["render", bundle, str(pickled), "-o", str(out)], "evil.npz")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_existing_output_is_kept_unless_overwrite(tmp_path, capsys, tiny_bundle_path, clip_csv):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    fails(capsys, ["render", str(tiny_bundle_path), str(clip_csv), "-o", str(out)], "not empty", "--overwrite")
    assert (out / "keep.txt").read_text() == "precious"
    assert main(["render", str(tiny_bundle_path), str(clip_csv), "-o", str(out), "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and len(list(out.iterdir())) == 6


def test_console_script_help_and_exit_codes(tmp_path, tiny_bundle_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    run = lambda *args: subprocess.run([sys.executable, "-m", "pvp_runtime.cli.main", *args],
                                       capture_output=True, text=True, env=env)
    helped = run("render", "--help")
    assert helped.returncode == 0 and "--frames" in helped.stdout and "--video" in helped.stdout
    missing = run("info", str(tmp_path / "x.pvp"))
    assert missing.returncode == 2 and missing.stderr.strip() == f"pvp: error: {tmp_path / 'x.pvp'}: bundle not found"
    typo = run("rendr")
    assert typo.returncode == 2 and "invalid choice" in typo.stderr


def test_random_subject_command(tmp_path, capsys):
    path = tmp_path / "r.pvp"
    assert main(["random-subject", str(path), "--resolution", "16", "--width", "8", "--pivots", "3",
                 "--expressions", "5"]) == 0
    assert Avatar.load(path, device="cpu").resolution == 16
    fails(capsys, ["random-subject", str(tmp_path / "bad.pvp"), "--resolution", "20"], "power of two")

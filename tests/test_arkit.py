"""ARKit -> FLAME maps (our file, EMAGE, mediapipe-blendshapes-to-flame), Live Link Face captures,
`pvp convert-channels/render --arkit-map` and `pvp learn-arkit-map`."""

import numpy as np
import pytest

from arkit_helpers import LIVE_LINK_HEADER, known_map, pascal, timecode, write_live_link_csv
from cli_helpers import fails
from pvp_runtime.cli.main import main
from pvp_runtime.contract.arkit import ARKIT_NAMES, ArkitMap, read_map_npz, write_arkit_map
from pvp_runtime.contract.channel_files import read_channel_file, write_channel_file
from pvp_runtime.contract.channels import ChannelLayout
from pvp_runtime.contract.errors import ChannelError
from pvp_runtime.formats.arkit_maps import ALPHABETICAL_51, read_arkit_map
from pvp_runtime.formats.channel_sources import read_any_channels
from pvp_runtime.formats.live_link import capture_frames, read_live_link_csv


def weights(rng, count):
    # Smooth motion in 0..1, like a face: sums of slow sines per blendshape.
    t = np.arange(count)[:, None] / 60.0
    phase, speed = rng.uniform(0, 6, 52), rng.uniform(0.3, 2.0, 52)
    return 0.5 + 0.5 * np.sin(speed * 2 * np.pi * t + phase)


# --------------------------------------------------------------------------- Live Link Face captures

def test_live_link_csv_in_the_apps_layout_imports_with_its_timing(tmp_path, rng):
    w = weights(rng, 90)
    turns = np.zeros((90, 9))
    turns[:, 0] = np.linspace(-0.3, 0.3, 90)   # HeadYaw
    turns[:, 4] = 0.1                          # LeftEyePitch
    recorded = [i for i in range(90) if i != 40]  # the phone dropped frame 40
    path = write_live_link_csv(tmp_path / "take.csv", w[recorded], turns[recorded], frames=recorded)
    assert path.read_text().splitlines()[0].startswith("Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,")
    assert path.read_text().splitlines()[1].startswith("14:03:52:28.000,61,")
    capture = read_live_link_csv(path)
    # 60 fps timecode (frame numbers reach 59 before the second turns), rows 1/60 s apart
    assert capture.timecode_rate == 60 and capture.fps == 60
    assert len(capture.arkit) == 90 and len(capture.row_arkit) == 89
    assert np.allclose(capture.arkit[39], w[39]) and np.allclose(capture.arkit[41], w[41])
    assert np.allclose(capture.arkit[40], (w[39] + w[41]) / 2)  # the dropped frame, not a shift of the rest
    assert np.allclose(capture.arkit[89], w[89])
    layout = ChannelLayout(10)
    frames = capture_frames(capture, known_map(rng), layout)
    assert np.allclose(frames[:, layout.index("head_yaw")], turns[:, 0], atol=1e-6)
    assert np.allclose(frames[:, layout.index("eye_l_x")], 0.1, atol=1e-6)  # pitch about +x
    assert np.allclose(frames[:, layout.index("eye_r_x")], 0.0)


def test_thirty_fps_take_on_sixty_fps_timecode(tmp_path, rng):
    w = weights(rng, 40)
    path = write_live_link_csv(tmp_path / "take.csv", w, frames=range(0, 80, 2))
    capture = read_live_link_csv(path)
    assert (capture.timecode_rate, capture.fps, len(capture.arkit)) == (60, 30, 40)
    assert np.allclose(capture.arkit, w)


def test_sub_frame_timecode_and_case_insensitive_names(tmp_path, rng):
    w = weights(rng, 31)
    lines = [",".join(name.lower() if i > 1 else name for i, name in enumerate(LIVE_LINK_HEADER))]
    for i, row in enumerate(w):
        lines.append(",".join([timecode(i, 30, start=(0, 0, 0, 0), fraction="500"), "61",
                               *map(str, row), *["0"] * 9]))
    (tmp_path / "t.csv").write_text("\n".join(lines))
    capture = read_live_link_csv(tmp_path / "t.csv")
    assert capture.fps == 30 and np.allclose(capture.arkit, w)


@pytest.mark.parametrize("edit, words", [
    (lambda lines: [lines[0].replace("JawOpen", "JawOpenish")] + lines[1:], "column 'JawOpenish'"),
    (lambda lines: [lines[0].replace(",TongueOut", "")] + [l.rsplit(",", 1)[0] for l in lines[1:]],
     "lacks 1 column(s): tongueOut"),
    (lambda lines: lines[:3] + [lines[3].replace("14:03:52:", "14:03:5x:", 1)] + lines[4:], "line 4: timecode"),
    (lambda lines: lines[:3] + [lines[2]] + lines[3:], "line 4: timecode does not advance"),
    (lambda lines: lines[:2] + [lines[2].replace(",61,", ",61,1.5,", 1).rsplit(",", 1)[0]] + lines[3:],
     "line 3, column 'EyeBlinkLeft' = 1.5 is outside ARKit's 0..1"),
    (lambda lines: lines[:2] + [lines[2].rsplit(",", 9)[0] + ",12.0" + ",0" * 8] + lines[3:],
     "column 'HeadYaw' = 12 is past +-pi"),
    (lambda lines: lines[:2] + [lines[2] + ",0"] + lines[3:], "line 3 has 64 values"),
    (lambda lines: lines[:1], "holds no frames"),
])
def test_bad_live_link_files_get_one_line_errors(tmp_path, rng, edit, words):
    path = write_live_link_csv(tmp_path / "bad.csv", weights(rng, 70))
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    with pytest.raises(ChannelError) as info:
        read_live_link_csv(path)
    message = str(info.value)
    assert words in message and "bad.csv" in message and "\n" not in message


def test_less_than_a_second_of_timecode_is_refused(tmp_path, rng):
    path = write_live_link_csv(tmp_path / "short.csv", weights(rng, 10), frames=range(0, 10))
    path.write_text(path.read_text().replace("14:03:52:", "14:03:53:"))
    with pytest.raises(ChannelError, match="less than a second"):
        read_live_link_csv(path)


# --------------------------------------------------------------------------- map files

def test_map_file_round_trip_and_layout(tmp_path, rng):
    arkit_map = known_map(rng, expressions=12, eyes=True)
    write_arkit_map(tmp_path / "m.npz", arkit_map)
    read = read_map_npz(tmp_path / "m.npz")
    assert read.arkit_names == ARKIT_NAMES and read.targets == arkit_map.targets
    assert np.array_equal(read.matrix, arkit_map.matrix) and np.array_equal(read.bias, arkit_map.bias)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        assert str(data["format"]) == "pvp-arkit-map/1"
    layout = ChannelLayout(10)  # a subject with fewer expressions than the map: expr_10, expr_11 dropped
    weights_, bias, dropped = read.on_layout(layout)
    assert dropped == ["expr_10", "expr_11"]
    assert np.array_equal(weights_[layout.index("jaw_x")], arkit_map.matrix[12])
    assert bias[layout.index("eye_r_z")] == arkit_map.bias[-1]


def test_emage_mat_final_layout(tmp_path, rng):
    mat = rng.normal(size=(51, 103)).astype(np.float32)
    np.save(tmp_path / "mat_final.npy", mat)
    arkit_map = read_arkit_map(tmp_path / "mat_final.npy")
    assert arkit_map.targets[:2] == ("expr_00", "expr_01") and arkit_map.targets[-3:] == ("jaw_x", "jaw_y", "jaw_z")
    # Used as arkit51 @ mat: row "jawOpen" (alphabetical position 24) is jawOpen's effect on each column.
    assert ALPHABETICAL_51[24] == "jawOpen" and "tongueOut" not in ALPHABETICAL_51
    full = arkit_map.full_matrix()
    assert np.allclose(full[:, ARKIT_NAMES.index("jawOpen")], mat[24])
    assert np.all(full[:, ARKIT_NAMES.index("tongueOut")] == 0)


def test_mediapipe_mappings_layout(tmp_path, rng):
    folder = tmp_path / "mappings"
    folder.mkdir()
    exp, jaw, eye = rng.normal(size=(52, 100)), rng.normal(size=(52, 3)), rng.normal(size=(52, 6))
    for name, array in (("bs2exp", exp), ("bs2jaw", jaw), ("bs2eye", eye)):
        np.save(folder / f"{name}.npy", array.astype(np.float32))
    for path in (folder, folder / "bs2exp.npy"):
        arkit_map = read_arkit_map(path)
        full = arkit_map.full_matrix()
        # MediaPipe row 0 is "_neutral"; row 1 + i is the i-th ARKit name alphabetically
        smile = ARKIT_NAMES.index("mouthSmileLeft")
        assert np.allclose(full[:100, smile], exp[1 + ALPHABETICAL_51.index("mouthSmileLeft")], atol=1e-6)
        assert arkit_map.targets[100:] == ("jaw_x", "jaw_y", "jaw_z", "eye_l_x", "eye_l_y", "eye_l_z",
                                           "eye_r_x", "eye_r_y", "eye_r_z")
        assert np.allclose(full[100:103, smile], jaw[1 + ALPHABETICAL_51.index("mouthSmileLeft")], atol=1e-6)


@pytest.mark.parametrize("make, words", [
    (lambda p: np.save(p / "mat_final.npy", np.zeros((103, 51))), "shape (103, 51) is not EMAGE's mat_final layout"),
    (lambda p: np.save(p / "mat_final.npy", np.zeros((51, 103), dtype=object)), "mat_final.npy"),
    (lambda p: np.savez(p / "m.npz", matrix=np.zeros((3, 52))), "not an ARKit map (no format"),
    (lambda p: np.savez(p / "m.npz", format=np.array("pvp-arkit-map/1"), arkit_names=np.array(["jawOpen"]),
                        targets=np.array(["jaw_x", "head_yaw"]), matrix=np.zeros((2, 1)), bias=np.zeros(2)),
     "target 'head_yaw' is not"),
    (lambda p: np.savez(p / "m.npz", format=np.array("pvp-arkit-map/1"), arkit_names=np.array(["jawOpen"]),
                        targets=np.array(["jaw_x"]), matrix=np.zeros((1, 2)), bias=np.zeros(1)),
     "matrix has shape (1, 2), expected (1, 1)"),
    (lambda p: np.savez(p / "m.npz", format=np.array("pvp-arkit-map/1"), arkit_names=np.array(["jawOpn"]),
                        targets=np.array(["jaw_x"]), matrix=np.zeros((1, 1)), bias=np.zeros(1)),
     "'jawOpn' is not an ARKit blendshape name"),
    (lambda p: np.savez(p / "m.npz", format=np.array("pvp-arkit-map/1"), arkit_names=np.array(["jawOpen"]),
                        targets=np.array(["jaw_x"]), matrix=np.full((1, 1), np.nan), bias=np.zeros(1)),
     "matrix holds NaN"),
    (lambda p: (p / "mappings").mkdir() or np.save(p / "mappings" / "bs2exp.npy", np.zeros((51, 100))),
     "bs2exp.npy: shape (51, 100), expected (52, 50) or (52, 100)"),
    (lambda p: (p / "m.txt").write_text("x"), "unsupported ARKit map file"),
])
def test_bad_maps_get_one_line_errors(tmp_path, make, words):
    make(tmp_path)
    path = next(p for p in tmp_path.iterdir())
    path = path / "bs2exp.npy" if path.is_dir() else path
    with pytest.raises(ChannelError) as info:
        read_arkit_map(path)
    message = str(info.value)
    assert words in message and path.name in message and "\n" not in message


# --------------------------------------------------------------------------- convert-channels / render

def test_convert_channels_through_a_map(tmp_path, rng):
    w = weights(rng, 70)
    take = write_live_link_csv(tmp_path / "take.csv", w)
    arkit_map = known_map(rng)
    write_arkit_map(tmp_path / "map.npz", arkit_map)
    assert main(["convert-channels", str(take), "--arkit-map", str(tmp_path / "map.npz"),
                 "-o", str(tmp_path / "clip.csv")]) == 0
    layout = ChannelLayout(10)
    frames = read_channel_file(tmp_path / "clip.csv", layout).frames
    expected = w @ arkit_map.matrix.T + arkit_map.bias
    assert frames.shape == (70, layout.size)
    assert np.allclose(frames[:, layout.slice("expression")], expected[:, :10], atol=1e-4)
    assert np.allclose(frames[:, layout.slice("jaw")], expected[:, 10:], atol=1e-5)
    assert read_any_channels(take, layout, arkit_map=tmp_path / "map.npz").fps == 60


def test_live_link_without_a_map_says_how_to_get_one(tmp_path, capsys, rng, tiny_bundle_path):
    take = write_live_link_csv(tmp_path / "take.csv", weights(rng, 70))
    for argv in (["convert-channels", str(take), "-o", str(tmp_path / "c.csv")],
                 ["render", str(tiny_bundle_path), str(take), "-o", str(tmp_path / "frames")]):
        fails(capsys, argv, "take.csv", "Live Link Face capture", "--arkit-map", "pvp learn-arkit-map")
    assert not (tmp_path / "c.csv").exists() and not (tmp_path / "frames").exists()
    write_channel_file(tmp_path / "plain.csv", ChannelLayout(50).defaults(3), ChannelLayout(50))
    np.save(tmp_path / "mat_final.npy", np.zeros((51, 103)))
    fails(capsys, ["convert-channels", str(tmp_path / "plain.csv"), "--arkit-map", str(tmp_path / "mat_final.npy"),
                   "-o", str(tmp_path / "c.csv")], "plain.csv", "not a Live Link Face capture")


def test_render_reads_a_capture_through_a_map(tmp_path, rng, tiny_bundle_path):
    from pvp_runtime.avatar import Avatar
    from pvp_runtime.image_io import read_png_rgba
    take = write_live_link_csv(tmp_path / "take.csv", weights(rng, 64))
    write_arkit_map(tmp_path / "map.npz", known_map(rng))
    assert main(["render", str(tiny_bundle_path), str(take), "--arkit-map", str(tmp_path / "map.npz"),
                 "-o", str(tmp_path / "frames"), "--frames", "60:62", "--device", "cpu"]) == 0
    avatar = Avatar.load(tiny_bundle_path, device="cpu")
    frames = read_any_channels(take, avatar.layout, arkit_map=tmp_path / "map.npz").frames
    expected = avatar.render(frames[60:62], batch_size=8).srgb8
    assert np.array_equal(read_png_rgba(tmp_path / "frames" / "frame_0060.png"), expected[0])


# --------------------------------------------------------------------------- learn-arkit-map

def _paired_take(tmp_path, rng, count=600, noise=0.002, arkit_map=None):
    arkit_map = arkit_map or known_map(rng)
    w = weights(rng, count)
    w = np.clip(w + rng.normal(0, 0.05, w.shape), 0, 1)  # independent jitter: blendshapes not collinear
    take = write_live_link_csv(tmp_path / "take.csv", w)
    layout = ChannelLayout(10)
    frames = layout.defaults(count)
    mapped = w @ arkit_map.matrix.T + arkit_map.bias
    columns = [layout.index(t) for t in arkit_map.targets]
    frames[:, columns] = mapped + rng.normal(0, noise, mapped.shape)
    return take, frames, layout, arkit_map


def test_learn_arkit_map_recovers_a_known_map(tmp_path, capsys, rng):
    take, frames, layout, truth = _paired_take(tmp_path, rng)
    write_channel_file(tmp_path / "tracked.csv", frames, layout)
    assert main(["learn-arkit-map", str(take), str(tmp_path / "tracked.csv"), "-o", str(tmp_path / "map.npz")]) == 0
    out = capsys.readouterr().out
    assert "frame by frame" in out and "expr_00" in out and "jaw_x" in out
    learnt = read_arkit_map(tmp_path / "map.npz")
    assert learnt.targets == truth.targets
    assert np.all(learnt.r2 > 0.99), learnt.r2
    assert np.allclose(learnt.matrix, truth.matrix, atol=0.05)
    assert np.allclose(learnt.bias, truth.bias, atol=0.05)


def test_learn_arkit_map_aligns_by_timecode_when_counts_differ(tmp_path, capsys, rng):
    take, frames, layout, truth = _paired_take(tmp_path, rng, count=600)
    # The tracker's clip runs at 30 fps (every other capture frame) and goes on past the take's end.
    tracked = np.concatenate([frames[::2], frames[-1:].repeat(7, axis=0)])
    write_channel_file(tmp_path / "tracked.npz", tracked, layout, fps=30)
    assert main(["learn-arkit-map", str(take), str(tmp_path / "tracked.npz"), "-o", str(tmp_path / "map.npz")]) == 0
    assert "by time: 300 frames at 30 fps" in capsys.readouterr().out
    learnt = read_arkit_map(tmp_path / "map.npz")
    assert np.all(learnt.r2 > 0.99) and np.allclose(learnt.matrix, truth.matrix, atol=0.1)
    write_channel_file(tmp_path / "nofps.csv", tracked, layout)
    fails(capsys, ["learn-arkit-map", str(take), str(tmp_path / "nofps.csv"), "-o", str(tmp_path / "m2.npz")],
          "nofps.csv", "--channels-fps")


def test_learn_arkit_map_refuses_a_poor_fit_unless_forced(tmp_path, capsys, rng):
    take, frames, layout, _ = _paired_take(tmp_path, rng)
    frames[:, layout.slice("expression")] = rng.normal(size=(len(frames), 10))  # not the same take
    write_channel_file(tmp_path / "other.csv", frames, layout)
    argv = ["learn-arkit-map", str(take), str(tmp_path / "other.csv"), "-o", str(tmp_path / "map.npz")]
    fails(capsys, argv, "take.csv", "held-out R^2", "--force")
    assert not (tmp_path / "map.npz").exists()
    assert main(argv + ["--force"]) == 0 and (tmp_path / "map.npz").is_file()

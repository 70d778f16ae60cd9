"""Placement on the runtime side: the subject's framing in the bundle, what the fit measures, the
similarity warp onto the canvas, the protocol field and ``pvp render``'s ``place_*`` columns."""

import math

import numpy as np
import pytest
import torch

from pvp_runtime.bundle import Framing, load_bundle, save_bundle
from pvp_runtime.canvas import place_on_canvas, similarity, warp_on_canvas
from pvp_runtime.contract import protocol
from pvp_runtime.contract.errors import BundleError
from pvp_runtime.contract.subject_manifest import DEFAULT_EYE_DISTANCE, DEFAULT_HEAD_CENTRE, SubjectSummary
from pvp_runtime.fit.head_framing import measure_head_framing
from pvp_runtime.server import RuntimeServer

from bundle_helpers import rewrite_bundle


# --------------------------------------------------------------------------- the bundle

def test_framing_round_trips_through_the_bundle(tmp_path, tiny_bundle_path):
    bundle = load_bundle(tiny_bundle_path)
    bundle.framing = Framing(roll_center=(0.5, 0.6), head_centre=(0.45, 0.4), eye_distance=0.3)
    save_bundle(bundle, tmp_path / "framed.pvp")
    again = load_bundle(tmp_path / "framed.pvp")
    assert again.framing == bundle.framing
    summary = SubjectSummary.read(tmp_path / "framed.pvp")  # what the Blender extension reads
    assert summary.head_centre == (0.45, 0.4) and summary.eye_distance == 0.3


def test_bundles_from_before_placement_get_the_default(tmp_path, tiny_bundle_path):
    old = tmp_path / "old.pvp"
    rewrite_bundle(tiny_bundle_path, old, edit_manifest=lambda m: m.update(framing={"roll_center": [0.5, 0.55]}))
    assert load_bundle(old).framing == Framing(roll_center=(0.5, 0.55))
    summary = SubjectSummary.read(old)
    assert (summary.head_centre, summary.eye_distance) == (DEFAULT_HEAD_CENTRE, DEFAULT_EYE_DISTANCE)


@pytest.mark.parametrize("framing, problem", [
    ({"head_centre": [0.5, 1.5]}, "framing.head_centre is [0.5, 1.5], expected two numbers in 0..1"),
    ({"head_centre": "middle"}, "framing.head_centre is 'middle', expected two numbers in 0..1"),
    ({"eye_distance": 0.0}, "framing.eye_distance is 0.0, expected a number in 0.02..1.0"),
    ({"eye_distance": float("nan")}, "framing.eye_distance is nan, expected a number in 0.02..1.0"),
])
def test_framing_outside_its_range_is_named(tmp_path, tiny_bundle_path, framing, problem):
    crafted = tmp_path / "crafted.pvp"
    rewrite_bundle(tiny_bundle_path, crafted, edit_manifest=lambda m: m["framing"].update(framing))
    for read in (load_bundle, SubjectSummary.read):
        with pytest.raises(BundleError) as error:
            read(crafted)
        assert str(error.value).startswith(f"{crafted}: corrupt bundle, manifest {problem}")


# --------------------------------------------------------------------------- what the fit measures

def test_fit_measures_where_the_head_sits_in_the_crop():
    landmarks = np.zeros((5, 68, 2))
    yaw = np.array([0.0, 0.1, -0.2, 0.9, 0.0])  # one frame turned far: its eyes look closer together
    for i, turn in enumerate(yaw):
        half = 0.15 * 64 * math.cos(turn) / 2
        landmarks[i, 36:42] = [32 - half, 28]
        landmarks[i, 42:48] = [32 + half, 28]
    centre, distance = measure_head_framing(landmarks, 64, yaw)
    assert centre == pytest.approx((0.5, 28 / 64))
    assert distance == pytest.approx(0.15)
    assert measure_head_framing(None, 64) == (DEFAULT_HEAD_CENTRE, DEFAULT_EYE_DISTANCE)  # pass-through crops


# --------------------------------------------------------------------------- the canvas

def crop(size=8, seed=0):
    rng = np.random.default_rng(seed)
    rgba = rng.uniform(0.1, 1.0, (1, size, size, 4)).astype(np.float32)
    rgba[..., 3] = 1.0
    rgba[..., :3] *= rgba[..., 3:]
    return rgba


def test_identity_and_whole_pixel_shifts_keep_the_pixels():
    frames = crop()
    assert np.allclose(warp_on_canvas(frames, [similarity(4, 4, 1.0, 0.0, (4, 4))], 8, 8), frames, atol=1e-6)
    shifted = warp_on_canvas(frames, [similarity(7, 6, 1.0, 0.0, (4, 4))], 12, 10)
    assert np.allclose(shifted[0, 2:10, 3:11], frames[0], atol=1e-6)
    assert shifted[0, :2, :, 3].max() == 0 and shifted[0, :, :3, 3].max() == 0  # transparent outside


def test_similarity_turns_counter_clockwise_as_seen():
    frames = np.zeros((1, 9, 9, 4), dtype=np.float32)
    frames[0, 4, 6:9] = 1.0  # a bar pointing right of the centre
    turned = warp_on_canvas(frames, [similarity(4.5, 4.5, 1.0, math.pi / 2, (4.5, 4.5))], 9, 9)
    assert turned[0, 0:3, 4, 3].min() > 0.99 and turned[0, 6:9, 4, 3].max() < 1e-6  # now pointing up


def test_shrinking_is_antialiased():
    checker = np.indices((64, 64)).sum(axis=0) % 2
    frames = np.repeat(checker[None, ..., None], 4, axis=-1).astype(np.float32)
    frames[..., 3] = 1.0
    small = warp_on_canvas(frames, [similarity(8, 8, 0.25, 0.1, (32, 32))], 16, 16)
    inside = small[0, 4:12, 4:12, 0]
    assert np.abs(inside - 0.5).max() < 0.1  # a fine checker shrinks to grey, not to a moire


def test_head_behind_the_camera_is_transparent_and_bad_affines_are_refused():
    assert not warp_on_canvas(crop(), np.zeros((1, 2, 3)), 8, 8).any()
    with pytest.raises(ValueError, match="placement"):
        warp_on_canvas(crop(), np.full((1, 2, 3), np.nan), 8, 8)


def test_centred_similarity_matches_todays_canvas():
    frames = crop(16)
    scale = 32 / 16
    placed = warp_on_canvas(frames, [similarity(24, 16, scale, 0.0, (8, 8))], 48, 32)
    assert np.abs(placed - place_on_canvas(frames, 48, 32)).max() < 1e-5  # hard edges where they were


def test_edges_are_antialiased_where_the_affine_puts_them():
    frames = np.ones((1, 4, 4, 4), dtype=np.float32)
    placed = warp_on_canvas(frames, [similarity(5.25, 4.0, 2.0, 0.0, (2, 2))], 12, 8)
    # The crop spans x 1.25 .. 9.25: pixel 1 is three quarters covered, pixel 9 a quarter.
    assert placed[0, 4, :, 3] == pytest.approx([0, 0.75, 1, 1, 1, 1, 1, 1, 1, 0.25, 0, 0])


# --------------------------------------------------------------------------- the protocol

def test_runtime_places_frames_when_the_request_carries_placement(tiny_bundle_path):
    server = RuntimeServer()
    server.load(protocol.Message(protocol.LOAD, {"bundle": str(tiny_bundle_path), "device": "cpu"}))
    channels = np.zeros((2, len(server.avatar.layout.names)), dtype=np.float32)
    affines = np.stack([similarity(20, 12, 0.5, 0.0, (16, 15)), similarity(10, 12, 0.5, 0.0, (16, 15))])

    def render(**fields):
        message = protocol.Message(protocol.RENDER, {"frames": 2, "channels": channels.shape[1], "width": 40,
                                                     "height": 24, **fields}, protocol.array_to_payload(channels))
        kind, reply, payload = server.render(message)
        return reply, protocol.array_from_payload(bytes(payload), (2, 24, 40, 4), "reply")

    reply, pixels = render(**protocol.placement_fields(affines))
    assert reply["placement"] == protocol.PLACED
    centroids = [np.average(np.indices((24, 40))[1], weights=p[..., 3]) for p in pixels]
    assert centroids[0] - centroids[1] == pytest.approx(10, abs=0.01)  # moved by the placements' difference
    reply, centred = render()
    assert "placement" not in reply and np.allclose(centred, place_on_canvas(
        server.avatar.render(channels, outputs=("linear",)).linear, 40, 24))
    with pytest.raises(protocol.ProtocolError, match="placement"):
        render(placement=[[1, 0, 0, 0, 1]] * 2)


# --------------------------------------------------------------------------- pvp render's place_* columns

def write_placed_clip(path, layout, **columns):
    names = ["frame", *layout.names[:3], *columns]
    rows = [[i, 0.0, 0.0, 0.0, *(values[i] for values in columns.values())] for i in range(2)]
    path.write_text("# head_rotation: Rz(roll) Ry(yaw) Rx(pitch)\n" + "\n".join(
        ",".join(str(v) for v in row) for row in [names, *rows]) + "\n")


def test_render_places_frames_by_their_columns(tmp_path, tiny_bundle_path, layout, capsys):
    from pvp_runtime.cli.main import main
    from pvp_runtime.image_io import read_png_rgba
    clip = tmp_path / "placed.csv"
    write_placed_clip(clip, layout, place_x=[20.0, 44.0], place_y=[30.0, 18.0], place_scale=[1.0, 0.5])
    assert main(["render", str(tiny_bundle_path), str(clip), "-o", str(tmp_path / "out"), "--width", "64",
                 "--height", "48", "--device", "cpu"]) == 0
    for i, (x, y, scale) in enumerate(((20.0, 30.0, 1.0), (44.0, 18.0, 0.5))):
        alpha = read_png_rgba(tmp_path / "out" / f"frame_{i:04d}.png")[..., 3].astype(np.float64)
        assert alpha.shape == (48, 64)
        rows, columns = np.indices(alpha.shape) + 0.5
        centroid = np.array([(columns * alpha).sum(), (rows * alpha).sum()]) / alpha.sum()
        # The crop's centre sits (0.5 - 0.47) of the crop below the head centre (the default framing).
        assert centroid == pytest.approx([x, y + 0.03 * 32 * scale], abs=0.05)
        assert alpha.sum() / 255 == pytest.approx((32 * scale) ** 2, rel=0.02)


def test_render_on_a_larger_canvas_without_columns_is_centred(tmp_path, tiny_bundle_path):
    from pvp_runtime.avatar import Avatar
    from pvp_runtime.canvas import to_srgb8
    from pvp_runtime.cli.main import main
    from pvp_runtime.contract.channel_files import read_channel_file
    from pvp_runtime.image_io import read_png_rgba
    clip_csv = tmp_path / "clip.csv"
    assert main(["example-channels", str(clip_csv), "--frames", "3", "--expressions", "10"]) == 0
    assert main(["render", str(tiny_bundle_path), str(clip_csv), "-o", str(tmp_path / "out"), "--width", "48",
                 "--height", "32", "--frames", "0:1", "--device", "cpu"]) == 0
    avatar = Avatar.load(tiny_bundle_path, device="cpu")
    frames = read_channel_file(clip_csv, avatar.layout).frames[:1]
    expected = to_srgb8(place_on_canvas(avatar.render(frames).linear, 48, 32))[0]
    got = read_png_rgba(tmp_path / "out" / "frame_0000.png")
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize("columns, words", [
    ({"place_x": [1.0, 2.0], "place_scale": [1.0, -1.0]}, ["frame 1", "place_scale", "> 0"]),
    ({"place_y": [1.0, float("nan")]}, ["frame 1", "place_y", "finite"]),
])
def test_bad_placement_columns_are_refused(tmp_path, tiny_bundle_path, layout, capsys, columns, words):
    from cli_helpers import fails
    clip = tmp_path / "bad.csv"
    write_placed_clip(clip, layout, **columns)
    fails(capsys, ["render", str(tiny_bundle_path), str(clip), "-o", str(tmp_path / "out"), "--device", "cpu"],
          str(clip), *words)
    assert not (tmp_path / "out").exists()

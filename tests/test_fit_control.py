"""Does a fit follow its rig?  The measures of issue 10: sweeps and the control sheet, eyes-and-mouth
metrics, the pose-only baseline, pass-through roll, gaze."""

import numpy as np
import pytest
import torch

from pvp_runtime.avatar import roll_about
from pvp_runtime.bundle import load_bundle, random_bundle, save_bundle
from pvp_runtime.contract.channels import ChannelLayout
from pvp_runtime.fit.control import PERCENTILES, control_sheet, moved, neutral_frame, sweeps, swept_channels
from pvp_runtime.fit.data import Split
from pvp_runtime.fit.evaluate import NO_LANDMARKS, evaluate_held_out, render_channels
from pvp_runtime.fit.frame_roll import FrameRoll
from pvp_runtime.fit.pixel_loss import covered_mse
from pvp_runtime.fit.metrics import psnr, ssim
from pvp_runtime.fit.pivots import head_pose_features, nearest_frames
from pvp_runtime.fit.prepared import PreparedClip
from pvp_runtime.fit.synthetic import synthetic_clip
from pvp_runtime.imaging import srgb_to_uint8
from pvp_runtime.model.pvp import MapperConfig, PVPModel
from pvp_runtime.model.stylegan2 import tiny_config

LAYOUT = ChannelLayout(6)


def _training_channels(count=200, seed=0):
    rng = np.random.default_rng(seed)
    frames = LAYOUT.defaults(count).astype(np.float32)
    frames[:, LAYOUT.index("head_yaw")] = rng.uniform(-0.8, 0.8, count)
    frames[:, LAYOUT.index("jaw_x")] = np.clip(rng.normal(0.1, 0.15, count), 0, None)
    frames[:, LAYOUT.index("expr_01")] = rng.uniform(0, 2, count)
    frames[:, LAYOUT.index("eye_l_y")] = frames[:, LAYOUT.index("eye_r_y")] = rng.uniform(-0.3, 0.3, count)
    return frames


# --------------------------------------------------------------------------- sweeps

def test_sweeps_cover_exactly_the_channels_that_moved():
    train = _training_channels()
    # Pitch, expr_00 and expr_02..05 never moved: nothing to learn about them, so no row.
    assert swept_channels(train, LAYOUT) == ["head_yaw", "jaw_x", "expr_01", "eye_l_y"]
    median = neutral_frame(train)
    for sweep in sweeps(train, LAYOUT, steps=5):
        column = LAYOUT.index(sweep.channel)
        low, high = np.percentile(train[:, column], PERCENTILES)
        assert sweep.values[0] == pytest.approx(low, abs=1e-6) and sweep.values[-1] == pytest.approx(high, abs=1e-6)
        np.testing.assert_allclose(sweep.frames[:, column], sweep.values)
        others = [c for c in range(LAYOUT.size) if c != column and not (
            sweep.channel.startswith("eye_") and LAYOUT.names[c] == "eye_r_y")]
        np.testing.assert_array_equal(sweep.frames[:, others], np.repeat(median[None, others], 5, axis=0))
        if sweep.channel == "eye_l_y":  # the eyes look together
            np.testing.assert_array_equal(sweep.frames[:, LAYOUT.index("eye_r_y")], sweep.values)
    assert moved(train, LAYOUT.slice("eyes")) and not moved(train, LAYOUT.slice("neck"))


def _sheet_rows(bundle, train):
    all_sweeps = sweeps(train, LAYOUT, steps=4)
    renders = [srgb_to_uint8(render_channels(bundle.generator, bundle.model, s.frames, LAYOUT, "cpu"))
               .permute(0, 2, 3, 1).numpy() for s in all_sweeps]
    return all_sweeps, renders


def test_control_sheet_shows_a_channel_the_model_follows_and_one_it_ignores():
    bundle = random_bundle(tiny_config(32, 16), num_pivots=4, num_expressions=6, seed=1, expression_scale=0.5)
    with torch.no_grad():  # the model ignores expr_01: its column of every expression MLP's input is cut
        for mlp in bundle.model.expression_mapper.layers:
            mlp[0].weight[:, 3 + 1] = 0
    train = _training_channels()
    all_sweeps, renders = _sheet_rows(bundle, train)
    by_channel = dict(zip((s.channel for s in all_sweeps), renders))
    spread = lambda images: np.abs(images.astype(int) - images[:1].astype(int)).max()
    assert spread(by_channel["expr_01"]) == 0           # ignored: a row of identical faces
    assert spread(by_channel["jaw_x"]) > 0 and spread(by_channel["head_yaw"]) > 0
    sheet = control_sheet(all_sweeps, renders)
    assert sheet.dtype == np.uint8 and sheet.shape[0] == 32 * len(all_sweeps)
    assert sheet.shape[1] > 4 * 32  # a label column, then the renders


def test_control_sheet_needs_a_channel_that_moved():
    with pytest.raises(ValueError, match="nothing to sweep"):
        control_sheet([], [])


# --------------------------------------------------------------------------- metrics

def test_region_psnr_and_ssim_are_taken_inside_the_region_only():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 32, 32, generator=gen), torch.rand(2, 3, 32, 32, generator=gen)
    region = torch.zeros(2, 1, 32, 32)
    region[..., 8:20, 4:30] = 1
    inside = psnr(a[..., 8:20, 4:30], b[..., 8:20, 4:30])
    torch.testing.assert_close(psnr(a, b, region), inside)
    # Differences outside the region do not count.
    c = b.clone()
    c[..., :8, :] = 0.0
    torch.testing.assert_close(psnr(a, c, region), inside)
    assert not torch.allclose(psnr(a, c), psnr(a, b))
    torch.testing.assert_close(ssim(a, b, torch.ones(2, 1, 32, 32)), ssim(a, b))


def test_pose_only_baseline_ignores_the_face():
    frames = LAYOUT.defaults(4).astype(np.float32)
    yaw, expr = LAYOUT.index("head_yaw"), LAYOUT.index("expr_00")
    frames[:, yaw] = [0.0, 0.5, 0.52, -0.6]
    frames[:, expr] = [2.0, 0.0, 2.0, 2.0]
    train, query = np.array([0, 1]), np.array([2])
    # Nearest by pose and expression: frame 0 (same smile); by pose alone: frame 1 (same yaw, no smile).
    reference = np.array([0, 1, 3])
    assert nearest_frames(frames, LAYOUT, train, query, reference)[0] == 0
    assert nearest_frames(frames, LAYOUT, train, query, reference, features=head_pose_features)[0] == 1


@pytest.fixture(scope="module")
def small_clip():
    return synthetic_clip(tiny_config(32, 16), num_frames=20, num_expressions=6, seed=3)


def test_evaluation_measures_eyes_and_mouth_with_landmarks_and_says_why_not_without(small_clip):
    subject = small_clip.subject
    split = Split(np.arange(14), np.arange(14, 20))
    pivots = np.array([0, 5, 10])
    for landmarks in (small_clip.landmarks, None):
        clip = PreparedClip(small_clip.crops, np.zeros((20, 2, 3)), landmarks, None)
        evaluation = evaluate_held_out(subject.generator, subject.model, clip, small_clip.channels, small_clip.layout,
                                       split, pivots, None, "cpu")
        summary = evaluation.summary()
        assert set(summary) == {"pvp", "nearest_training_frame", "nearest_pose_frame", "nearest_pivot"}
        if landmarks is not None:
            assert evaluation.eyes_mouth == "measured"
            assert summary["pvp"]["psnr_eyes_mouth"] > 40  # the subject rendered these frames itself
            assert np.isfinite(summary["nearest_pose_frame"]["ssim_eyes_mouth"])
        else:
            assert evaluation.eyes_mouth == NO_LANDMARKS
            assert "psnr_eyes_mouth" not in summary["pvp"]
    assert evaluation.to_dict()["baseline_sources"]["nearest_pose_frame"]


# --------------------------------------------------------------------------- pass-through roll

def _blob(size=32):
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    blob = torch.exp(-(((x - 20.0) / 4) ** 2 + ((y - 10.0) / 6) ** 2))
    return torch.stack([blob, blob.flip(0), blob.flip(1)])[None] * 2 - 1


def test_renders_of_pass_through_crops_are_rolled_like_the_frames_and_the_pivot_is_learnt():
    images = _blob().repeat(4, 1, 1, 1)
    roll = torch.tensor([0.25, -0.2, 0.15, -0.1])
    truth_center = (0.45, 0.7)
    targets = roll_about(torch.cat([images, torch.ones_like(images[:, :1])], 1), roll, truth_center)[:, :3]
    frame_roll = FrameRoll(True)  # starts at the default centre, (0.5, 0.55)
    optimizer = torch.optim.Adam([frame_roll.center], lr=5e-3)
    for _ in range(300):
        rolled, coverage = frame_roll(images, roll)
        loss = covered_mse(rolled, targets, coverage)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert frame_roll.framing().roll_center == pytest.approx(truth_center, abs=0.01)
    # Aligned crops: the alignment took the roll out, so nothing is rolled or learnt.
    aligned = FrameRoll(False)
    assert aligned(images, roll)[0] is images and aligned.parameter_groups() == []


# --------------------------------------------------------------------------- gaze

def test_a_gaze_subject_reads_the_eyes_and_others_do_not():
    frames = LAYOUT.defaults(2).astype(np.float32)
    frames[1, LAYOUT.slice("eyes")] = [0.2, 0.3, 0.0, 0.2, 0.3, 0.0]
    for gaze in (False, True):
        torch.manual_seed(0)
        model = PVPModel(MapperConfig(num_pivots=3, num_expressions=6, hidden=8, gaze=gaze), 6, 8)
        with torch.no_grad():
            for mlp in model.expression_mapper.layers:
                mlp[2].weight.normal_()
        ws, _ = model(model.inputs(frames, LAYOUT))
        assert torch.equal(ws[0], ws[1]) != gaze


def test_gaze_flag_survives_the_bundle_and_old_bundles_have_none(tmp_path):
    bundle = random_bundle(tiny_config(32, 16), num_pivots=3, num_expressions=6, seed=0)
    assert bundle.model.config.gaze is False
    config = MapperConfig.from_dict({**bundle.model.config.to_dict(), "gaze": True})
    gaze_model = PVPModel(config, bundle.generator.num_ws, 16)
    bundle.model = gaze_model
    loaded = load_bundle(save_bundle(bundle, tmp_path / "gaze.pvp"))
    assert loaded.model.config.gaze is True
    old = {k: v for k, v in config.to_dict().items() if k != "gaze"}
    assert MapperConfig.from_dict(old).gaze is False


def test_a_subject_without_gaze_says_once_that_keyed_eyes_do_nothing(tmp_path, caplog):
    from pvp_runtime.avatar import Avatar
    from pvp_runtime.cli.main import main
    from pvp_runtime.contract.subject_manifest import SubjectSummary

    path = save_bundle(random_bundle(tiny_config(32, 16), num_pivots=3, num_expressions=6, seed=0),
                       tmp_path / "plain.pvp")
    assert SubjectSummary.read(path).gaze is False  # what the Blender rig shows as "no effect"
    avatar = Avatar.load(path, device="cpu")
    frames = LAYOUT.defaults(2).astype(np.float32)
    with caplog.at_level("WARNING"):
        avatar.render(frames, outputs=("srgb8",))
        assert "eye channels" not in caplog.text  # eyes at rest: nothing to say
        frames[:, LAYOUT.index("eye_l_y")] = 0.3
        avatar.render(frames, outputs=("srgb8",))
        avatar.render(frames, outputs=("srgb8",))
    assert caplog.text.count("the eye channels have no effect on subject") == 1
    assert main(["info", str(path)]) == 0


def test_standardized_mappers_see_every_channel_in_the_clip_s_own_units(tmp_path):
    train = _training_channels()
    config = MapperConfig(num_pivots=3, num_expressions=6, hidden=8, standardized=True)
    torch.manual_seed(0)
    model = PVPModel(config, 6, 8)
    model.standardize_like(train, LAYOUT)
    raw = model.inputs(train, LAYOUT).jaw_expression
    jaw = 0  # jaw_x: a few tenths of a radian become unit variance; never-moving channels keep scale 1
    assert model.expression_input_scale[jaw] == pytest.approx(1 / raw[:, jaw].std().item(), rel=1e-5)
    assert model.expression_input_scale[1].item() == 1.0 and model.expression_input_scale[3 + 0].item() == 1.0
    # The same mapper on standardised inputs, computed by hand.
    plain = PVPModel(MapperConfig(num_pivots=3, num_expressions=6, hidden=8), 6, 8)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("expression_input")})
    with torch.no_grad():
        for mlp in (*model.expression_mapper.layers, *plain.expression_mapper.layers):
            mlp[2].weight.fill_(0.1)
    inputs = model.inputs(train[:4], LAYOUT)
    scaled = (inputs.jaw_expression - model.expression_input_mean) * model.expression_input_scale
    expected, _ = plain(type(inputs)(inputs.pitch_yaw, scaled, inputs.roll))
    torch.testing.assert_close(model(inputs)[0], expected)
    # The statistics travel with the bundle.
    bundle = random_bundle(tiny_config(32, 16), num_pivots=3, num_expressions=6, seed=0)
    bundle.model = PVPModel(config, bundle.generator.num_ws, 16)
    bundle.model.standardize_like(train, LAYOUT)
    loaded = load_bundle(save_bundle(bundle, tmp_path / "standardized.pvp")).model
    torch.testing.assert_close(loaded.expression_input_scale, bundle.model.expression_input_scale)

"""A fit with mattes learns an alpha: on the scratch prior and the paper's path, without touching the RGB fit.

The synthetic subject (``fit.synthetic``) is a random generator, so its crops have no silhouette;
here its mattes are a function of each crop's appearance (the lightly blurred luminance above the
clip's median), which differs from frame to frame and which a render that resembles its frame
carries.  A constant matte, the training frames' mean, cannot follow it; the learnt alpha should.
"""

import copy
import json

import cv2
import numpy as np
import pytest
import torch

from pvp_runtime.avatar import Avatar
from pvp_runtime.bundle import load_bundle
from pvp_runtime.cli.main import main
from pvp_runtime.fit.config import FitConfig
from pvp_runtime.fit.frame_roll import FrameRoll
from pvp_runtime.fit.lpips import LPIPS
from pvp_runtime.fit.mapper_training import MapperStage
from pvp_runtime.fit.matte_eval import matte_scores
from pvp_runtime.fit.matte_loss import MatteTerm, matte_head_for, rolled_alpha
from pvp_runtime.fit.pipeline import FitRequest, FitRun
from pvp_runtime.fit.prepared import PreparedClip
from pvp_runtime.fit.encoders import FitNetworks
from pvp_runtime.fit.scratch_prior import ScratchPriorStage, initial_codes
from pvp_runtime.fit.synthetic import synthetic_clip
from pvp_runtime.loaders.generator_file import save_generator_file
from pvp_runtime.model.pvp import MapperConfig, PVPModel
from pvp_runtime.model.stylegan2 import Generator, tiny_config

from fit_helpers import pretrained_generator

FRAMES, HELD_OUT = 24, 6


def appearance_mattes(crops):
    luma = crops.astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    threshold = np.median(luma)
    return np.stack([(cv2.GaussianBlur(frame, (0, 0), 1.0) > threshold).astype(np.float32) * 255
                     for frame in luma]).round().astype(np.uint8)


@pytest.fixture(scope="module")
def clip():
    clip = synthetic_clip(tiny_config(32, 32), num_frames=FRAMES, num_expressions=6, seed=4)
    clip.mattes[:] = appearance_mattes(clip.crops)
    return clip


@pytest.fixture(scope="module")
def files(clip, tmp_path_factory):
    root = tmp_path_factory.mktemp("alpha_fit")
    paths = clip.write(root)
    generator = pretrained_generator(clip.subject.generator)
    paths["generator"] = root / "generator.safetensors"
    save_generator_file(generator, paths["generator"])
    return paths


def assert_learnt_alpha_beats_a_constant_matte(report):
    matte = report["matte"]
    assert matte["alpha"].startswith("learnt") and matte["threshold"] == 0.5
    learnt, constant = matte["summary"]["learnt"], matte["summary"]["constant_baseline"]
    assert len(matte["per_frame"]["learnt"]["iou"]) == HELD_OUT
    assert learnt["iou"] > constant["iou"] + 0.02, matte["summary"]
    assert learnt["mae"] < constant["mae"], matte["summary"]


def test_scratch_fit_with_mattes_learns_an_alpha_that_beats_a_constant_matte(files, tmp_path, capsys):
    out = tmp_path / "subject"
    assert main(["fit", str(files["frames"]), str(files["channels"]), "-o", str(out), "--expressions", "6",
                 "--landmarks", str(files["landmarks"]), "--mattes", str(files["mattes"]), "--device", "cpu",
                 "--pivots", "3", "--held-out", str(HELD_OUT), "--resolution", "32", "--width", "16",
                 "--scratch-steps", "60", "--mapper-steps", "0", "--seed", "1", "--set", "lpips.net=\"alex\"",
                 "--set", "scratch.lpips_weight=0", "--set", "eval.contact_sheet_frames=0"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert_learnt_alpha_beats_a_constant_matte(report)
    assert "alpha (held out): IoU" in printed and "constant mean matte: IoU" in printed
    assert "matte" in report["stages"]["scratch_prior"]["loss_history"][-1]
    bundle = load_bundle(out / "subject.pvp")
    assert bundle.matte is not None
    assert bundle.provenance["fit"]["matte"] == report["matte"]["summary"]
    # The runtime renders the alpha the evaluation measured.
    held = np.arange(FRAMES - HELD_OUT, FRAMES)
    channels = np.loadtxt(files["channels"], delimiter=",", skiprows=2, dtype=np.float32)[held, 1:]
    alpha = Avatar(bundle, device="cpu").render(channels).linear[..., 3]
    truth = torch.from_numpy(np.stack([cv2.imread(str(files["mattes"] / f"matte_{i:04d}.png"), 0) for i in held]))
    scores = matte_scores(torch.from_numpy(alpha)[:, None], truth[:, None].float() / 255)
    assert float(scores["iou"].mean()) == pytest.approx(report["matte"]["summary"]["learnt"]["iou"], abs=1e-4)
    assert main(["info", str(out / "subject.pvp")]) == 0
    assert "alpha          learnt" in capsys.readouterr().out


def test_paper_path_fit_with_mattes_learns_an_alpha_in_pti_and_the_mapper_stage(files, tmp_path):
    config = FitConfig().with_overrides({
        "pivots.count": 3, "data.held_out_frames": HELD_OUT, "projector.steps": 6, "projector.batch_size": 3,
        "projector.w_avg_samples": 300, "pti.max_epochs": 2, "pti.lpips_threshold": 0.0, "mapper.steps": 12,
        "mapper.batch_size": 2, "mapper.lr": 5e-3, "mapper.loss_resolution": None, "lpips.net": "alex",
        "eval.contact_sheet_frames": 0})
    request = FitRequest(frames=str(files["frames"]), channels=str(files["channels"]), config=config,
                         num_expressions=6, landmarks=str(files["landmarks"]), mattes=str(files["mattes"]),
                         generator=str(files["generator"]), name="tiny")
    result = FitRun.start(request, request.inspect(), tmp_path / "fit", device="cpu").run()
    assert_learnt_alpha_beats_a_constant_matte(result.report)
    stages = result.report["stages"]
    assert "matte" in stages["pti"]["loss_history"][-1] and "matte" in stages["mapper"]["loss_history"][-1]
    assert "matte" in stages["mapper"]["losses"]


# --------------------------------------------------------------------------- the RGB fit is untouched


@pytest.fixture(scope="module")
def prepared(clip):
    return PreparedClip(frames=clip.crops, transforms=np.zeros((FRAMES, 2, 3)), landmarks=None, mattes=clip.mattes)


def _state(*modules):
    return {f"{i}.{k}": v.detach().clone() for i, m in enumerate(modules) for k, v in m.state_dict().items()}


def _scratch_run(clip, prepared, lpips, with_matte, frame_roll):
    torch.manual_seed(0)
    generator = Generator(tiny_config(32, 16))
    config = FitConfig().scratch
    config.steps, config.batch_size = 4, 3
    model = PVPModel(MapperConfig(num_pivots=3, num_expressions=6, hidden=16), generator.num_ws, 16)
    with torch.no_grad():
        model.pivots.copy_(initial_codes(generator, 3, seed=0, device="cpu"))
    head = matte_head_for(generator, prepared, np.arange(18))
    before = _state(head)
    matte = MatteTerm(head, prepared, frame_roll) if with_matte else None
    stage = ScratchPriorStage(generator, model, frame_roll, prepared, clip.channels, np.arange(18),
                              np.array([0, 8, 16]), clip.layout, lpips, config, seed=0, device="cpu", matte=matte)
    records = [stage.step(i) for i in range(stage.total_steps)]
    changed = any(not torch.equal(v, _state(head)[k]) for k, v in before.items())
    return _state(generator, model, frame_roll), records, changed


@pytest.mark.parametrize("shows_roll", [False, True], ids=["aligned", "pass-through"])
def test_the_matte_loss_changes_nothing_in_the_rgb_fit(clip, prepared, shows_roll):
    lpips = LPIPS("alex")
    plain, plain_records, _ = _scratch_run(clip, prepared, lpips, False, FrameRoll(shows_roll))
    matted, records, head_trained = _scratch_run(clip, prepared, lpips, True, FrameRoll(shows_roll))
    assert head_trained and "matte" in records[-1] and "pivot_matte" in records[-1]
    assert plain.keys() == matted.keys()
    assert [k for k in plain if not torch.equal(plain[k], matted[k])] == []
    assert [r["pixel"] for r in plain_records] == [r["pixel"] for r in records]


def test_mapper_stage_trains_the_matte_with_the_generator_frozen(clip, prepared):
    config = FitConfig().with_overrides({"mapper.loss_resolution": None, "mapper.steps": 6, "mapper.batch_size": 4,
                                         "mapper.lpips_weight": 0.0})
    generator = copy.deepcopy(clip.subject.generator)
    torch.manual_seed(0)
    model = PVPModel(MapperConfig(num_pivots=6, num_expressions=6), generator.num_ws, 32)
    with torch.no_grad():
        model.pivots.copy_(clip.subject.model.pivots)
    head = matte_head_for(generator, prepared, np.arange(18))
    weights = _state(generator.synthesis)
    stage = MapperStage(generator, model, FrameRoll(False), prepared, clip.channels, np.arange(18), clip.layout,
                        LPIPS("alex"), FitNetworks(), config.mapper, config.mask, tune_generator=False, seed=0,
                        device="cpu", matte=MatteTerm(head, prepared))
    assert "matte" in stage.active_losses()
    losses = [stage.step(i)["matte"] for i in range(stage.total_steps)]
    assert losses[-1] < losses[0]
    frozen = {k: v for k, v in _state(generator.synthesis).items() if not k.endswith("noise_const")}
    assert all(torch.equal(v, weights[k]) for k, v in frozen.items())


def test_rolled_alpha_turns_with_the_frame_and_reports_its_coverage():
    alpha = torch.zeros(1, 1, 16, 16)
    alpha[..., 4:12, 6:10] = 1.0  # an upright bar
    rolled, coverage = rolled_alpha(alpha, torch.tensor([np.pi / 2]), FrameRoll(True, (0.5, 0.5)))
    assert coverage is not None and coverage.min() > 0.99  # a quarter turn about the centre covers the crop
    assert torch.allclose(rolled, alpha.transpose(2, 3).flip(2), atol=1e-5)  # the bar now lies flat
    same, none = rolled_alpha(alpha, torch.tensor([0.3]), FrameRoll(False))
    assert same is alpha and none is None

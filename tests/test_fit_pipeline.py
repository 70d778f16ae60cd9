"""``pvp fit`` end to end on a tiny synthetic clip: resume exactness, outputs, refusals, help."""

import dataclasses
import json
import os
import re
import shutil
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pvp_runtime.avatar import Avatar
from pvp_runtime.bundle import load_bundle
from pvp_runtime.cli.main import main
from pvp_runtime.fit.checkpoint import CheckpointError, load_checkpoint
from pvp_runtime.fit.config import FitConfig
from pvp_runtime.fit.data import FrameSource
from pvp_runtime.fit.finite import FitDiverged
from pvp_runtime.fit.lpips import alexnet_features
from pvp_runtime.fit.pipeline import FitRequest, FitRun
from pvp_runtime.loaders.generator_file import save_generator_file
from pvp_runtime.fit.projector import noise_layers
from pvp_runtime.fit.stage import FitInterrupted
from pvp_runtime.fit.synthetic import synthetic_clip
from pvp_runtime.model.stylegan2 import tiny_config

from fit_helpers import pretrained_generator

TINY = {"pivots.count": 3, "data.held_out_frames": 4, "projector.steps": 6, "projector.batch_size": 3,
        "projector.w_avg_samples": 300, "pti.max_epochs": 3, "pti.lpips_threshold": 0.0, "mapper.steps": 12,
        "mapper.batch_size": 2, "mapper.lr": 5e-3, "mapper.loss_resolution": None, "lpips.net": "alex",
        "checkpoint.every_steps": 4, "eval.batch_size": 4}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit_inputs")
    clip = synthetic_clip(tiny_config(32, 32), num_frames=16, num_expressions=6, seed=4, in_the_wild=True)
    paths = clip.write(root)
    generator = pretrained_generator(clip.subject.generator)
    with torch.no_grad():
        for layer in noise_layers(generator):
            layer.noise_strength.fill_(0.05)
    paths["generator"] = root / "generator.safetensors"
    save_generator_file(generator, paths["generator"])
    return paths


@pytest.fixture(scope="module")
def uninterrupted(files, tmp_path_factory):
    request = _request(files)
    return FitRun.start(request, request.inspect(), tmp_path_factory.mktemp("uninterrupted") / "a", device="cpu").run()


def _request(files, **overrides):
    return FitRequest(frames=str(files["frames"]), channels=str(files["channels"]),
                      config=FitConfig().with_overrides({**TINY, **overrides}), num_expressions=6,
                      landmarks=str(files["landmarks"]), mattes=str(files["mattes"]),
                      generator=str(files["generator"]), name="tiny")


class SimulatedKill(Exception):
    """Stands in for SIGKILL: the process dies mid-stage without writing anything more."""


def _tensors(path):
    bundle = load_bundle(path)
    return {**{f"g.{k}": v for k, v in bundle.generator.state_dict().items()},
            **{f"m.{k}": v for k, v in bundle.model.state_dict().items()}}


def test_interrupted_and_killed_run_resumes_to_the_same_result(files, uninterrupted, tmp_path):
    # Whatever Ctrl-C did before (a shell's background job ignores it) must be what it does after.
    handler_before = signal.getsignal(signal.SIGINT)
    request = _request(files)

    def interrupt_at(stage, step):
        def hook(name, done):
            if (name, done) == (stage, step):
                signal.raise_signal(signal.SIGINT)  # a real Ctrl-C, delivered to the running fit
        return hook

    out = tmp_path / "b"
    with pytest.raises(FitInterrupted) as info:
        FitRun.start(request, request.inspect(), out, device="cpu", on_step=interrupt_at("projection", 4)).run()
    assert (info.value.stage, info.value.step) == ("projection", 4)
    _, meta = load_checkpoint(out / "work" / "checkpoint.safetensors")
    assert meta["current"]["stage"] == "projection" and meta["current"]["step"] == 4
    assert meta["current"]["meta"]["in_batch"]  # stopped inside a batch of pivots: its latents were saved
    assert not (out / "tiny.pvp").exists() and not (out / "report.json").exists()
    with pytest.raises(FitInterrupted):
        FitRun.resume(out, device="cpu", on_step=interrupt_at("pti", 5)).run()

    def kill(name, done):
        if (name, done) == ("mapper", 7):
            raise SimulatedKill
    with pytest.raises(SimulatedKill):
        FitRun.resume(out, device="cpu", on_step=kill).run()
    _, meta = load_checkpoint(out / "work" / "checkpoint.safetensors")
    assert meta["current"]["stage"] == "mapper" and meta["current"]["step"] == 4  # the last periodic checkpoint
    assert meta["completed"] == ["prepare", "pivots", "projection", "pti"]
    assert signal.getsignal(signal.SIGINT) is handler_before  # the guard put Ctrl-C back
    resumed = FitRun.resume(out, device="cpu").run()

    _assert_same_fit(resumed, uninterrupted)


def _assert_same_fit(resumed, uninterrupted):
    expected, actual = _tensors(uninterrupted.bundle), _tensors(resumed.bundle)
    assert expected.keys() == actual.keys()
    different = [k for k in expected if not torch.equal(expected[k], actual[k])]
    assert not different, different[:5]
    assert resumed.evaluation.summary() == uninterrupted.evaluation.summary()
    assert resumed.report["pivots"] == uninterrupted.report["pivots"]


def _last_checkpoint(out) -> tuple[str, int]:
    tensors, meta = load_checkpoint(out / "work" / "checkpoint.safetensors")
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    return meta["current"]["stage"], meta["current"]["step"]


def test_a_fit_that_goes_non_finite_stops_and_resumes_from_the_last_finite_checkpoint(files, uninterrupted, tmp_path):
    request = _request(files)  # mapper: 12 steps, a checkpoint every 4
    out = tmp_path / "run"

    def poison_after(step):
        def hook(name, done):
            if (name, done) == ("mapper", step):
                with torch.no_grad():
                    run.model.pivots.fill_(float("nan"))
        return hook
    # After step 8: its losses were finite, so only the parameter check before its checkpoint sees it.
    run = FitRun.start(request, request.inspect(), out, device="cpu", on_step=poison_after(8))
    with pytest.raises(FitDiverged, match=r"in stage mapper at step 8: tensor 'model\.pivots' holds NaN"):
        run.run()
    assert _last_checkpoint(out) == ("mapper", 4)
    # After step 6: step 7's losses are NaN, and the run stops there, before its next checkpoint.
    run = FitRun.resume(out, device="cpu", on_step=poison_after(6))
    with pytest.raises(FitDiverged, match=r"in stage mapper at step 7: loss '\w+' is nan"):
        run.run()
    assert _last_checkpoint(out) == ("mapper", 4)
    assert not (out / "tiny.pvp").exists() and not (out / "report.json").exists()
    _assert_same_fit(FitRun.resume(out, device="cpu").run(), uninterrupted)


def _stop_at_once(name, done):
    signal.raise_signal(signal.SIGINT)


def test_resume_works_from_another_folder_and_names_a_moved_input(files, tmp_path, monkeypatch, capsys):
    root = files["channels"].parent
    monkeypatch.chdir(root)
    request = _request({key: Path(os.path.relpath(path, root)) for key, path in files.items()},
                       **{"projector.steps": 2})
    assert Path(request.frames).is_absolute() and Path(request.landmarks).is_absolute()
    out = tmp_path / "run"
    with pytest.raises(FitInterrupted):
        FitRun.start(request, request.inspect(), out, device="cpu", on_step=_stop_at_once).run()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    moved = files["landmarks"].with_name("moved.npy")
    files["landmarks"].rename(moved)
    try:
        code = main(["fit", "--resume", "-o", "../run", "--device", "cpu"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and f"{files['landmarks']} (landmarks of this fit) is gone" in err, err
    finally:
        moved.rename(files["landmarks"])
    assert main(["fit", "--resume", "-o", "../run", "--device", "cpu"]) == 0
    assert (out / "tiny.pvp").is_file()


def _write_alexnet_trunk(path, offset: float) -> None:
    state = {f"features.{k}": v + offset for k, v in alexnet_features().state_dict().items()}
    torch.save(state, path)


@pytest.mark.parametrize("option", ["arcface", "deca", "lpips.backbone"])
def test_resume_refuses_a_changed_network_file(files, tmp_path, option):
    weights = tmp_path / "weights.pth"
    if option == "lpips.backbone":
        _write_alexnet_trunk(weights, 0.0)
        request = _request(files, **{"projector.steps": 2, "lpips.backbone": str(weights)})
    else:  # FitRun only fingerprints these (the CLI loads them), so any bytes will do
        weights.write_bytes(b"weights, first version")
        request = dataclasses.replace(_request(files, **{"projector.steps": 2}), **{option: str(weights)})
    with pytest.raises(FitInterrupted):
        FitRun.start(request, request.inspect(), tmp_path / "run", device="cpu", on_step=_stop_at_once).run()
    if option == "lpips.backbone":
        _write_alexnet_trunk(weights, 0.5)
    else:
        weights.write_bytes(b"weights, second version")
    expected = f"the {option} input changed since this fit started ({weights})"
    with pytest.raises(CheckpointError, match=re.escape(expected)):
        FitRun.resume(tmp_path / "run", device="cpu")


def test_resume_refuses_changed_inputs_and_a_missing_checkpoint(files, tmp_path):
    changed = dict(files)
    changed["channels"] = tmp_path / "channels.csv"
    shutil.copy(files["channels"], changed["channels"])
    request = _request(changed, **{"projector.steps": 2})

    def stop(name, done):
        signal.raise_signal(signal.SIGINT)
    with pytest.raises(FitInterrupted):
        FitRun.start(request, request.inspect(), tmp_path / "run", device="cpu", on_step=stop).run()
    text = changed["channels"].read_text().splitlines()
    cells = text[2].split(",")
    cells[1] = "0.25"
    changed["channels"].write_text("\n".join(text[:2] + [",".join(cells)] + text[3:]) + "\n")
    with pytest.raises(CheckpointError, match="channels input changed"):
        FitRun.resume(tmp_path / "run", device="cpu")
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        FitRun.resume(tmp_path / "nothing", device="cpu")


def _cli(files, out, *extra):
    return ["fit", str(files["frames"]), str(files["channels"]), "-o", str(out), "--expressions", "6",
            "--landmarks", str(files["landmarks"]), "--mattes", str(files["mattes"]), "--device", "cpu", *extra]


def test_cli_scratch_fit_writes_report_sheet_and_bundle(files, tmp_path, capsys):
    out = tmp_path / "subject"
    settings = ["--pivots", "3", "--held-out", "4", "--resolution", "32", "--width", "16", "--scratch-steps", "12",
                "--mapper-steps", "10", "--loss-resolution", "32", "--checkpoint-every", "5", "--seed", "3",
                "--set", "lpips.net=\"alex\"", "--set", "mapper.batch_size=2", "--set", "scratch.batch_size=3",
                "--edits", "2"]
    assert main(_cli(files, out, *settings)) == 0
    printed = capsys.readouterr().out
    assert "nearest_training_frame" in printed and "nearest_pivot" in printed and "RANDOM backbone" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["prior"] == "scratch"
    assert set(report["evaluation"]["summary"]) == {"pvp", "nearest_training_frame", "nearest_pose_frame",
                                                         "nearest_pivot"}
    assert report["evaluation"]["held_out_frames"] == [12, 13, 14, 15] and report["evaluation"]["masked_by_matte"]
    for method in report["evaluation"]["summary"].values():
        assert set(method) == {"psnr", "ssim", "lpips", "psnr_eyes_mouth", "ssim_eyes_mouth"}
        assert all(np.isfinite(list(method.values())))
    assert report["evaluation"]["eyes_mouth"] == "measured" and "PSNR e+m" in printed
    # The control sheet: one row per channel that moved in the training clip.
    control = report["control"]
    assert control["file"] == "control_sheet.png" and {"head_yaw", "jaw_x"} <= set(control["sweeps"])
    rows = cv2.imread(str(out / "control_sheet.png"))
    assert rows.shape[0] == 32 * len(control["sweeps"])
    # Aligned by landmarks: the roll is taken out of the crops, the default roll centre kept.
    assert report["framing"]["roll"] == "taken out by the alignment"
    assert report["stages"]["scratch_prior"]["mode"] == "joint"
    assert len(report["pivots"]["frames"]) == 3 and all(f < 12 for f in report["pivots"]["frames"])
    assert report["stages"]["mapper"]["tune_generator"] is True
    assert "consistency" in report["stages"]["mapper"]["losses"]
    assert report["stages"]["mapper"]["loss_history"][-1]["step"] == 10
    assert "RANDOM" in report["lpips"]["eval"]["backbone"] and report["lpips"]["eval"]["net"] == "alex"
    assert report["alignment"]["method"] == "ffhq-landmarks" and report["alignment"]["roll_removed_deg"]["max_abs"] > 1
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet.shape == (4 * 32, 3 * 32, 3)
    with np.load(out / "alignment.npz") as alignment:
        assert alignment["frame_to_crop"].shape == (16, 2, 3) and alignment["crop_landmarks"].shape == (16, 68, 2)
    assert (out / "fit.log").read_text().count("scratch_prior step") >= 2
    bundle = load_bundle(out / "subject.pvp")
    fit = bundle.provenance["fit"]
    assert fit["config"]["scratch"]["steps"] == 12 and fit["config"]["seed"] == 3 and fit["prior"] == "scratch"
    assert FitConfig.from_dict(fit["config"]).mapper.steps == 10  # the saved config loads back
    # The bundle names its footage: the SHA-256 of the frames it was fitted to.
    assert bundle.provenance["source_video_sha256"] == FrameSource.open(files["frames"]).content_sha256()
    assert bundle.channel_stats.mean.shape == (9 + 6 + 6,)
    # Where the head sits in the crop (placement in a shot), measured from the crop landmarks.
    with np.load(out / "alignment.npz") as alignment:
        eyes = alignment["crop_landmarks"][:, 36:48].reshape(-1, 2, 6, 2).mean(axis=2) / 32
    assert bundle.framing.head_centre == pytest.approx(np.median(eyes.mean(axis=1), axis=0), abs=1e-6)
    assert 0.1 < bundle.framing.eye_distance < 0.4 and report["framing"]["eye_distance"] == bundle.framing.eye_distance
    # --edits 2: GANSpace over the scratch subject's own codes, as edit channels after the rig's.
    assert [spec.name for spec in bundle.edits.specs] == ["pc00", "pc01"]
    assert "3 pivots + mappers over" in bundle.edits.specs[0].source
    assert bundle.layout.names[-2:] == ("edit_pc00", "edit_pc01")
    avatar = Avatar(bundle, device="cpu")
    frames = avatar.render(np.zeros((2, avatar.layout.size), np.float32)).srgb8
    assert frames.shape == (2, 32, 32, 4)
    # A fit folder is not silently reused; --overwrite starts again, --resume of a finished fit re-emits.
    code = main(_cli(files, out, *settings))
    assert code == 2 and "not empty" in capsys.readouterr().err
    assert main(["fit", "--resume", "-o", str(out), "--device", "cpu"]) == 0
    assert torch.equal(load_bundle(out / "subject.pvp").model.pivots, bundle.model.pivots)


def test_cli_fit_with_an_absurd_learning_rate_stops_with_one_line(files, tmp_path, capsys):
    out = tmp_path / "subject"
    code = main(_cli(files, out, "--pivots", "3", "--held-out", "4", "--resolution", "32", "--width", "16",
                     "--scratch-steps", "12", "--mapper-steps", "4", "--checkpoint-every", "1",
                     "--set", "lpips.net=\"alex\"", "--set", "scratch.batch_size=3",
                     "--set", "scratch.generator_lr=1e30"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert re.fullmatch(r"pvp: error: fit diverged in stage scratch_prior at step \d+: (loss|tensor) '[\w.]+' .*", err)
    step = int(re.search(r"at step (\d+)", err).group(1))
    tensors, meta = load_checkpoint(out / "work" / "checkpoint.safetensors")
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    current = meta["current"] or {"stage": meta["completed"][-1], "step": 0}
    assert (current["stage"], current["step"]) in (("pivots", 0), ("scratch_prior", step - 1))
    assert not (out / "subject.pvp").exists() and not (out / "report.json").exists()


def _refused(capsys, argv, out, *words):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0, argv
    assert err.startswith("pvp: error: ") and "\n" not in err, err
    for word in words:
        assert word in err, err
    assert not out.exists(), f"{out} was created for a refused fit"


def test_bad_inputs_are_refused_before_any_work(files, tmp_path, capsys):
    out = tmp_path / "never"
    frames, channels = str(files["frames"]), str(files["channels"])
    # Tiny settings, so that a case that wrongly got through would end quickly (and then fail the test).
    base = lambda *extra: ["fit", frames, channels, "-o", str(out), "--expressions", "6", "--device", "cpu",
                           "--pivots", "3", "--scratch-steps", "1", "--mapper-steps", "1", "--resolution", "32",
                           "--width", "8", "--set", 'lpips.net="alex"', *extra]
    short = tmp_path / "short.csv"
    short.write_text("\n".join(files["channels"].read_text().splitlines()[:-1]) + "\n")
    _refused(capsys, ["fit", frames, str(short), "-o", str(out), "--expressions", "6"], out,
             "short.csv", "15 frames", "16 frames")
    broken = tmp_path / "broken"
    shutil.copytree(files["frames"], broken)
    (broken / "frame_0005.png").write_bytes(b"garbage")
    _refused(capsys, ["fit", str(broken), channels, "-o", str(out), "--expressions", "6"], out,
             "frame_0005.png", "unreadable")
    resized = tmp_path / "resized"
    shutil.copytree(files["frames"], resized)
    cv2.imwrite(str(resized / "frame_0009.png"), np.zeros((40, 64, 3), np.uint8))
    _refused(capsys, ["fit", str(resized), channels, "-o", str(out), "--expressions", "6"], out,
             "frame_0009.png", "64x40")
    wide = tmp_path / "wide"
    wide.mkdir()
    for i in range(16):
        cv2.imwrite(str(wide / f"f{i}.png"), np.zeros((32, 48, 3), np.uint8))
    _refused(capsys, ["fit", str(wide), channels, "-o", str(out), "--expressions", "6"], out, "48x32",
             "--landmarks")
    np.save(tmp_path / "lm.npy", np.load(files["landmarks"])[:10])
    _refused(capsys, base("--landmarks", str(tmp_path / "lm.npy")), out, "lm.npy", "10 frames")
    mattes = tmp_path / "mattes"
    shutil.copytree(files["mattes"], mattes)
    (mattes / "matte_0015.png").unlink()
    _refused(capsys, base("--mattes", str(mattes)), out, "15 mattes")
    typo = tmp_path / "typo.csv"
    typo.write_text(files["channels"].read_text().replace("jaw_x", "jaw_open", 1))
    _refused(capsys, ["fit", frames, str(typo), *base()[3:]], out, "typo.csv", "unknown channel 'jaw_open'")
    _refused(capsys, base("--pivots", "20"), out, "20 pivots")
    _refused(capsys, base("--set", "pti.lrr=1"), out, "pti.lrr")
    _refused(capsys, base("--set", "pti.max_epochs=\"ten\""), out, "pti.max_epochs")
    (tmp_path / "bad.json").write_text("{")
    _refused(capsys, base("--config", str(tmp_path / "bad.json")), out, "bad.json")
    _refused(capsys, base("--generator", str(tmp_path / "none.safetensors")), out, "none.safetensors", "not found")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    _refused(capsys, base("--generator", str(tmp_path / "junk.safetensors")), out, "junk.safetensors")
    _refused(capsys, base("--arcface", str(tmp_path / "model_ir_se50.pth")), out, "--arcface", "model_ir_se50.pth")
    (tmp_path / "e4e.pt").write_bytes(b"x")
    _refused(capsys, base("--e4e", str(tmp_path / "e4e.pt")), out, "e4e.pt")
    _refused(capsys, base("--deca", str(tmp_path / "e4e.pt")), out, "e4e.pt", "expected a DECA checkpoint")
    _refused(capsys, base("--deca", str(tmp_path / "deca_model.tar")), out, "--deca", "deca_model.tar", "not found")
    _refused(capsys, base("--device", "tpu"), out, "unknown device")
    _refused(capsys, base("--lpips-backbone", str(tmp_path / "vgg.pth")), out, "vgg.pth")
    _refused(capsys, ["fit", "--resume", "-o", str(out)], out, "no checkpoint")
    _refused(capsys, ["fit", "--resume", "-o", str(out), "--pivots", "4"], out, "--resume", "--pivots")
    _refused(capsys, ["fit", "-o", str(out)], out, "FRAMES and CHANNELS")
    _refused(capsys, base("--bundle", str(tmp_path / "no" / "s.pvp")), out, "does not exist")
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    code = main(["fit", frames, channels, "-o", str(keep), "--expressions", "6", "--pivots", "3", "--overwrite"])
    assert code == 2 and "not one" in capsys.readouterr().err and (keep / "notes.txt").exists()


def test_help_documents_every_stage_and_option(capsys):
    with pytest.raises(SystemExit) as done:
        main(["fit", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for stage in ("prepare", "pivots", "projection", "pti", "scratch_prior", "mapper", "evaluate", "bundle"):
        assert f"\n  {stage}" in text, stage
    from pvp_runtime.cli.main import build_parser
    fit_parser = build_parser()._subparsers._group_actions[0].choices["fit"]
    for action in fit_parser._actions:
        for option in action.option_strings:
            assert option in text, option
        if action.help and action.dest != "help":
            assert action.help.split()[0] in text
    for word in ("--resume", "checkpoint", "Ctrl-C", "LPIPS", "RANDOM", "report.json", "contact_sheet.png"):
        assert word in text


def test_pass_through_fit_learns_gaze_and_roll_and_says_it_has_no_eye_mouth_mask(tmp_path, capsys):
    """An unseen capture as issue 10 describes it: pass-through crops showing their roll, no landmarks
    or mattes, 50 expression channels of which few move, and eyes that look around."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("capture", Path(__file__).parents[1] / "scripts" /
                                                  "make_synthetic_capture.py")
    capture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capture)
    capture.write_capture(tmp_path / "cap", num_frames=30, size=32, seed=2, gaze=True, num_expressions=50,
                          landmarks=False, mattes=False)
    out = tmp_path / "subject"
    settings = ["fit", str(tmp_path / "cap" / "frames"), str(tmp_path / "cap" / "channels.csv"), "-o", str(out),
                "--expressions", "50", "--device", "cpu", "--pivots", "3", "--held-out", "6", "--resolution", "32",
                "--width", "16", "--scratch-steps", "6", "--mapper-steps", "0", "--seed", "1",
                "--set", "lpips.net=\"alex\"", "--set", "scratch.lpips_weight=0", "--set", "scratch.pose_warp_grid=4",
                "--set", "scratch.expression_warp_grid=4"]
    assert main(settings) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["evaluation"]["eyes_mouth"].startswith("no landmarks") and "no landmarks" in printed
    assert report["framing"]["roll"].startswith("learnt")
    bundle = load_bundle(out / "subject.pvp")
    assert list(bundle.framing.roll_center) == pytest.approx(report["framing"]["roll_center"])
    assert bundle.model.config.gaze is True
    warp = bundle.model.config
    assert (warp.pose_warp_grid, warp.pose_warp_resolution, warp.expression_warp_grid) == (4, 8, 4)
    assert "eye_l_y" in report["control"]["sweeps"] and "expr_20" not in report["control"]["sweeps"]
    # No mattes: no alpha learnt, and the report and the bundle say so.
    assert report["matte"] == {"alpha": "none: fitted without --mattes, so alpha is 1 everywhere"}
    assert bundle.matte is None and "alpha: none: fitted without --mattes" in printed

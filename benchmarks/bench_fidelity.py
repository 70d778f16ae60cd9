"""Does a fit follow its rig?  Fidelity of `pvp fit` on synthetic captures with ground truth.

    python benchmarks/bench_fidelity.py [--looks demo,ada,bao,cyd] [--seeds 1] \
        [--config demo/fit_config.json] [--frames 720] [--size 128] [--expressions 50] [--gaze] [--jobs 2]

For each look (an identity of the procedural head, pvp_runtime/synthetic_head.py) and seed it
writes a fresh capture the way an unseen one arrives (pass-through crops, no landmarks, no
mattes, 50 expression channels of which only the head's visible ones move), fits it with
`pvp fit --config CONFIG` in a child process (wall time and the child's peak memory), then
scores the fit against the procedural ground truth:

* held-out PSNR/SSIM, full frame and inside the eyes and mouth (the mask of fit/masks.py from
  the capture's true landmarks, which the fit never saw), for the fit and the three baselines of
  the fit's evaluation (nearest training frame by channels, by head pose alone, nearest pivot),
  plus an oracle that renders the exact head pose with a neutral face;
* a sweep score per channel (the control sheet's sweeps, fit/control.py): the mean PSNR of each
  sweep render to its own ground truth minus the mean PSNR of the all-neutral render to the same
  ground truths.  PSNR is taken where the ground truth changes along the sweep (its effect
  region: for a blink, the eyelids), so a small feature counts as much as a head turn.  A fit
  that ignores a channel scores 0; a cross-fade of pivots scores a few dB on yaw.
* for each sweep, how the fit's change agrees with the truth's: their cosine, and the share of
  the fit's change inside the truth's effect region (an entangled channel paints elsewhere).
* for each sweep, its ceiling at the fit's sharpness: the score of a render that follows the
  channel exactly but is as far from the truth on the resting face as the fit is (the truth
  blurred until it is; the blur, in pixels, is printed too).  The score compares renders to the
  truth pixel by pixel, so a small feature needs a sharp render: at 128 px the truth blurred by
  one pixel scores only about +1 to +2 dB on the visible expressions while following them exactly.
  The share of its ceiling a sweep reaches says how much of the channel the fit follows.

Prints one table per capture and the pass/fail of issue 10's bars; writes OUT/results.json and,
per capture, OUT/fits/<capture>/sweeps_vs_truth.png (each sweep's ground truth above the fit).
Nothing is cached between runs except the captures (same look+seed+size+frames).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pvp_runtime import synthetic_head  # noqa: E402
from pvp_runtime.synthetic_looks import look_from_spec  # noqa: E402
from pvp_runtime.bundle import load_bundle  # noqa: E402
from pvp_runtime.contract.channel_files import write_channel_file  # noqa: E402
from pvp_runtime.contract.channels import ChannelLayout  # noqa: E402
from pvp_runtime.fit.alignment import passthrough_transform, warp  # noqa: E402
from pvp_runtime.fit.config import FitConfig  # noqa: E402
from pvp_runtime.fit.control import Sweep, control_sheet, neutral_frame, sweeps  # noqa: E402
from pvp_runtime.fit.data import split_frames  # noqa: E402
from pvp_runtime.fit.frame_roll import FrameRoll  # noqa: E402
from pvp_runtime.fit.evaluate import evaluate_held_out, render_channels  # noqa: E402
from pvp_runtime.fit.masks import batch_masks  # noqa: E402
from pvp_runtime.fit.metrics import psnr, ssim  # noqa: E402
from pvp_runtime.fit.prepared import open_prepared  # noqa: E402
from pvp_runtime.imaging import srgb_to_uint8  # noqa: E402

EFFECT_THRESHOLD = 4.0 / 255  # a ground-truth pixel that moves less than this is outside the channel's effect
EFFECT_DILATION = 3
CEILING_MAX_BLUR = 4.0  # pixels: a fit softer than this on the resting face has no useful ceiling
BARS = {"sweep_db": 2.0, "yaw_sweep_db": 5.0, "eyes_mouth_over_pose_db": 3.0}


# --------------------------------------------------------------------------- captures

def _synthetic_kwargs(look: str, gaze: bool, expressions: int) -> tuple[dict, dict]:
    """Keyword arguments for the procedural head's performance() and render_frame()."""
    render = {"look": look_from_spec(look)}
    motion = {}
    if gaze:
        motion["gaze"] = True
    if expressions != synthetic_head.NUM_EXPRESSIONS:
        motion["num_expressions"] = expressions
    return motion, render


def write_capture(folder: Path, look: str, seed: int, frames: int, size: int, expressions: int,
                  gaze: bool) -> tuple[ChannelLayout, np.ndarray, np.ndarray]:
    motion, render = _synthetic_kwargs(look, gaze, expressions)
    layout, channels = synthetic_head.performance(frames, 25.0, seed, **motion)
    done = folder / "landmarks.npy"
    if not done.exists():
        (folder / "frames").mkdir(parents=True, exist_ok=True)
        landmarks = np.zeros((frames, 68, 2), np.float32)
        for i in range(frames):
            rgb, _matte, landmarks[i] = synthetic_head.render_frame(channels[i], layout, size, **render)
            cv2.imwrite(str(folder / "frames" / f"frame_{i:05d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        write_channel_file(folder / "channels.csv", channels, layout, fps=25.0)
        np.save(done, landmarks)  # last: marks a finished capture (the fit never reads it)
    return layout, channels, np.load(done)


def truth_images(channels: np.ndarray, layout: ChannelLayout, look: str, size: int, resolution: int) -> torch.Tensor:
    """Ground-truth renders at the fit's resolution, cropped exactly as `pvp fit` crops frames."""
    _, render = _synthetic_kwargs(look, False, layout.num_expressions)
    transform = passthrough_transform(size, resolution)
    images = [warp(synthetic_head.render_frame(frame, layout, size, **render)[0], transform, resolution)
              for frame in channels]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


# --------------------------------------------------------------------------- the fit

def run_fit(capture: Path, out: Path, config: Path, expressions: int, device: str, threads: int | None) -> dict:
    """`pvp fit` in a child process: its wall time and peak resident memory (wait4's rusage).
    ``threads``: the child's torch/OpenMP threads (None: inherited)."""
    if (out / "report.json").exists():
        return json.loads((out / "bench_fit.json").read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pvp_runtime.cli.main", "fit", str(capture / "frames"),
               str(capture / "channels.csv"), "-o", str(out), "--config", str(config),
               "--expressions", str(expressions), "--device", device, "--overwrite"]
    began = time.monotonic()
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    child = subprocess.Popen(command, cwd=REPO, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"pvp fit failed on {capture} (exit {os.waitstatus_to_exitcode(status)})")
    result = {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "threads": threads}
    (out / "bench_fit.json").write_text(json.dumps(result))
    return result


# --------------------------------------------------------------------------- scores

def effect_region(truth: torch.Tensor, neutral_truth: torch.Tensor) -> torch.Tensor:
    """``[1, 1, H, W]`` where the ground truth changes along a sweep (dilated), else everything."""
    moved = (truth - neutral_truth).abs().amax(dim=(0, 1)) > EFFECT_THRESHOLD
    if not moved.any():
        return torch.ones(1, 1, *truth.shape[-2:])
    kernel = np.ones((2 * EFFECT_DILATION + 1,) * 2, np.uint8)
    region = cv2.dilate(moved.numpy().astype(np.uint8), kernel)
    return torch.from_numpy(region.astype(np.float32))[None, None]


def change_agreement(render, truth, neutral_render, neutral_truth, region) -> dict:
    """How the fit's change along a sweep (each render minus the all-neutral render) compares with
    the truth's: the share of its energy inside the truth's effect region (an entangled channel
    paints elsewhere), and the cosine of the two changes (1: same change; 0: unrelated)."""
    fit_change = render - neutral_render
    true_change = truth - neutral_truth
    energy = fit_change.square().sum(dim=1, keepdim=True)
    inside = float((energy * region).sum() / energy.sum().clamp(min=1e-12))
    cosine = float((fit_change * true_change).sum()
                   / (fit_change.norm() * true_change.norm()).clamp(min=1e-12))
    return {"change_inside_region": inside, "change_cosine": cosine}


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return images
    channels_last = images.permute(0, 2, 3, 1).contiguous().numpy()
    blurred = [cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE) for image in channels_last]
    return torch.from_numpy(np.stack(blurred).reshape(channels_last.shape)).permute(0, 3, 1, 2)


def matched_blur(neutral_render, neutral_truth, region) -> float:
    """The Gaussian blur (pixels) that takes the resting face's truth as far from itself, inside
    ``region``, as the fit's resting-face render is: the fit's softness, as one number."""
    target = psnr(neutral_render, neutral_truth, region).item()
    low, high = 0.0, CEILING_MAX_BLUR
    if psnr(gaussian_blur(neutral_truth, high), neutral_truth, region).item() > target:
        return high
    for _ in range(20):  # PSNR falls as the blur grows
        middle = 0.5 * (low + high)
        if psnr(gaussian_blur(neutral_truth, middle), neutral_truth, region).item() > target:
            low = middle
        else:
            high = middle
    return high


def sharpness_ceiling(truth, neutral_truth, neutral_render, region) -> dict:
    """The sweep score of the truth itself, softened to the fit's sharpness (see the module's doc)."""
    blur = matched_blur(neutral_render, neutral_truth, region[:1])
    followed = psnr(gaussian_blur(truth, blur), truth, region).mean().item()
    ignored = psnr(gaussian_blur(neutral_truth, blur).expand_as(truth), truth, region).mean().item()
    return {"ceiling_db": followed - ignored, "matched_blur_px": blur}


def sweep_scores(bundle, layout, train_channels, look, size, device, frame_roll, sheet_path: Path) -> dict:
    """Each sweep's score; writes ``sheet_path``: per channel, a truth row above the fit's row."""
    resolution = bundle.generator.config.resolution
    rows, images = [], []
    as_uint8 = lambda x: srgb_to_uint8(x).permute(0, 2, 3, 1).numpy()
    neutral = neutral_frame(train_channels)
    neutral_render = render_channels(bundle.generator, bundle.model, neutral[None], layout, device, frame_roll).cpu()
    neutral_truth = truth_images(neutral[None], layout, look, size, resolution)
    scores = {}
    for sweep in sweeps(train_channels, layout):
        truth = truth_images(sweep.frames, layout, look, size, resolution)
        render = render_channels(bundle.generator, bundle.model, sweep.frames, layout, device, frame_roll).cpu()
        region = effect_region(truth, neutral_truth).expand(len(truth), 1, -1, -1)
        followed = psnr(render, truth, region).mean().item()
        ignored = psnr(neutral_render.expand_as(truth), truth, region).mean().item()
        scores[sweep.channel] = {"score_db": followed - ignored, "psnr_sweep": followed, "psnr_neutral": ignored,
                                 "region_fraction": float(region[0].mean()),
                                 **change_agreement(render, truth, neutral_render, neutral_truth, region[:1]),
                                 **sharpness_ceiling(truth, neutral_truth, neutral_render, region)}
        rows += [Sweep(f"{sweep.channel} truth", sweep.values, sweep.frames), Sweep("fit", sweep.values, sweep.frames)]
        images += [as_uint8(truth), as_uint8(render)]
    sheet_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(sheet_path), cv2.cvtColor(control_sheet(rows, images), cv2.COLOR_RGB2BGR))
    return scores


def oracle_neutral_face(channels, layout, held, look, size, resolution, landmarks) -> dict:
    """The exact head pose with jaw, expression and gaze at rest, scored like the fit."""
    neutral = channels[held].copy()
    for group in ("jaw", "expression", "eyes"):
        neutral[:, layout.slice(group)] = 0
    render = truth_images(neutral, layout, look, size, resolution)
    truth = truth_images(channels[held], layout, look, size, resolution)
    region = torch.from_numpy(batch_masks(landmarks[held], resolution, resolution))
    return {"psnr": psnr(render, truth).mean().item(), "ssim": ssim(render, truth).mean().item(),
            "psnr_eyes_mouth": psnr(render, truth, region).mean().item(),
            "ssim_eyes_mouth": ssim(render, truth, region).mean().item()}


def score_fit(capture: Path, out: Path, layout, channels, landmarks, look, size, device) -> dict:
    bundle = load_bundle(next(out.glob("*.pvp")))
    bundle.generator.to(device).eval()
    bundle.model.to(device).eval()
    resolution = bundle.generator.config.resolution
    report = json.loads((out / "report.json").read_text())
    # Only the split is needed: reading just that keeps fits made before an option was removed scorable.
    config = FitConfig.from_dict({"data": report["config"]["data"]}, "report config")
    split = split_frames(len(channels), config.data)
    crop_landmarks = (landmarks + 0.5) * resolution / size - 0.5
    clip = open_prepared(out / "work", len(channels), resolution, False, False)
    pivots = np.asarray(report["pivots"]["frames"])
    frame_roll = FrameRoll(True, bundle.framing.roll_center).to(device)  # the captures show their roll
    evaluation = evaluate_held_out(bundle.generator, bundle.model, clip, channels, layout, split, pivots, None,
                                   device, region_landmarks=crop_landmarks, frame_roll=frame_roll)
    held_out = {method: {k: v for k, v in values.items() if k != "lpips"}
                for method, values in evaluation.summary().items()}
    held_out["oracle_pose_neutral_face"] = oracle_neutral_face(channels, layout, split.held_out, look, size,
                                                               resolution, crop_landmarks)
    return {"held_out": held_out,
            "roll_center": list(bundle.framing.roll_center),
            "sweeps": sweep_scores(bundle, layout, channels[split.train], look, size, device, frame_roll,
                                   out / "sweeps_vs_truth.png")}


# --------------------------------------------------------------------------- report

def verdict(result: dict) -> list[str]:
    """Issue 10's bars; each failure as one line."""
    failures = []
    for channel, score in result["sweeps"].items():
        bar = BARS["yaw_sweep_db"] if channel == "head_yaw" else BARS["sweep_db"]
        if score["score_db"] < bar:
            failures.append(f"sweep {channel}: {score['score_db']:+.2f} dB < +{bar:g}")
    held = result["held_out"]
    margin = held["pvp"]["psnr_eyes_mouth"] - held["nearest_pose_frame"]["psnr_eyes_mouth"]
    if margin < BARS["eyes_mouth_over_pose_db"]:
        failures.append(f"eyes+mouth PSNR {margin:+.2f} dB over the pose-only baseline < +3")
    for baseline in ("nearest_training_frame", "nearest_pose_frame", "nearest_pivot"):
        for metric in ("psnr", "ssim"):
            if held["pvp"][metric] <= held[baseline][metric]:
                failures.append(f"full-frame {metric} {held['pvp'][metric]:.4g} <= "
                                f"{baseline} {held[baseline][metric]:.4g}")
    return failures


def print_result(name: str, result: dict) -> None:
    fit = result["fit"]
    side_by_side = f" ({fit['threads']} thread(s), beside other fits)" if fit.get("threads") else ""
    print(f"\n== {name}: fit {fit['seconds'] / 60:.1f} min{side_by_side}, peak {fit['peak_rss_mb']:.0f} MB")
    print(f"{'held-out':<26}{'PSNR':>8}{'SSIM':>8}{'PSNR e+m':>10}{'SSIM e+m':>10}")
    for method, v in result["held_out"].items():
        print(f"{method:<26}{v['psnr']:>8.2f}{v['ssim']:>8.4f}"
              f"{v['psnr_eyes_mouth']:>10.2f}{v['ssim_eyes_mouth']:>10.4f}")
    print("sweep scores (dB; PSNR in the channel's effect region, followed minus all-neutral):")
    print("  " + "  ".join(f"{c}:{s['score_db']:+.1f}" for c, s in result["sweeps"].items()))
    print("change cosine with the truth's / share inside its effect region:")
    print("  " + "  ".join(f"{c}:{s['change_cosine']:.2f}/{s['change_inside_region']:.2f}"
                           for c, s in result["sweeps"].items() if "change_cosine" in s))
    print("ceiling at the fit's sharpness: exact following, blurred as far from the truth as the fit's "
          "resting face (dB, blur px):")
    print("  " + "  ".join(f"{c}:{s['ceiling_db']:+.1f}({s['matched_blur_px']:.1f})"
                           for c, s in result["sweeps"].items() if "ceiling_db" in s))
    failures = verdict(result)
    print("PASS all bars" if not failures else "FAIL: " + "; ".join(failures))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--looks", default="demo,ada,bao,cyd,random:11",
                        help="comma-separated looks: names (pvp_runtime/synthetic_looks.py) or random:SEED")
    parser.add_argument("--seeds", default="1", help="comma-separated performance seeds")
    parser.add_argument("--config", type=Path, default=REPO / "demo" / "fit_config.json")
    parser.add_argument("--frames", type=int, default=720)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--expressions", type=int, default=50)
    parser.add_argument("--gaze", action="store_true", help="the captures' eyes look around")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "fidelity")
    parser.add_argument("--jobs", type=int, default=1,
                        help="fits run side by side, each with cores/JOBS threads (fit times then include "
                             "the contention)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    captures = {}
    for look in args.looks.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            name = f"{look.replace(':', '')}-s{seed}"
            capture = args.out / "captures" / f"{name}-{args.frames}f-{args.size}px-{args.expressions}e" \
                                             f"{'-gaze' if args.gaze else ''}"
            captures[name] = (look, capture, write_capture(capture, look, seed, args.frames, args.size,
                                                           args.expressions, args.gaze))

    def fit(name):
        _, capture, _ = captures[name]
        return run_fit(capture, args.out / "fits" / f"{name}-{args.config.stem}", args.config, args.expressions,
                       args.device, threads)

    results = {}
    with ThreadPoolExecutor(args.jobs) as pool:  # threads only wait on the fit processes
        for name, fitted in zip(captures, pool.map(fit, captures)):  # in order, as each is ready
            look, capture, (layout, channels, landmarks) = captures[name]
            out = args.out / "fits" / f"{name}-{args.config.stem}"
            result = {"fit": fitted, **score_fit(capture, out, layout, channels, landmarks, look, args.size,
                                                 args.device)}
            result["failures"] = verdict(result)
            results[name] = result
            print_result(name, result)
            (args.out / "results.json").write_text(json.dumps(results, indent=2))  # after every capture
    failed = [name for name, r in results.items() if r["failures"]]
    print(f"\n{len(results) - len(failed)}/{len(results)} captures meet every bar"
          + (f" (failed: {', '.join(failed)})" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

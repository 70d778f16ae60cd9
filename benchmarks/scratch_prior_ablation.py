"""Measure the "pivots" scratch prior's deviation from the paper: tuning the generator in stage 2.

    python benchmarks/scratch_prior_ablation.py [--frames 60] [--pivots 8] [--steps 400]

The paper freezes the generator in stage 2.  With the scratch prior in its
"pivots" mode (``scratch.mode``; the default "joint" mode trains the mappers with
the generator from the start, see ``benchmarks/bench_fidelity.py``) the generator
has seen only the pivot frames, so ``pvp fit`` also tunes it on every training
frame in stage 2 (``mapper.tune_generator = "auto"``).  This script fits
the same synthetic subject twice from the same seed, with generator tuning
``off`` and ``on``, and prints the held-out PSNR / SSIM / LPIPS of both next
to the two baselines, all measured in one run.  (LPIPS runs on a random
backbone unless a pretrained one is installed; PSNR and SSIM are exact.)
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pvp_runtime.fit.config import FitConfig  # noqa: E402
from pvp_runtime.fit.pipeline import FitRequest, FitRun  # noqa: E402
from pvp_runtime.fit.synthetic import synthetic_clip  # noqa: E402
from pvp_runtime.model.stylegan2 import tiny_config  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--pivots", type=int, default=8)
    parser.add_argument("--steps", type=int, default=400, help="scratch-prior steps and mapper steps")
    parser.add_argument("--resolution", type=int, default=32)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        clip = synthetic_clip(tiny_config(args.resolution, 32), num_frames=args.frames, num_expressions=10, seed=0)
        paths = clip.write(Path(tmp) / "inputs")
        results = {}
        for tune in ("off", "on"):
            config = FitConfig().with_overrides({
                "pivots.count": args.pivots, "scratch.resolution": args.resolution, "scratch.width": 32,
                "scratch.steps": args.steps, "scratch.mode": "pivots",
                "mapper.steps": args.steps, "mapper.batch_size": 4,
                "mapper.lr": 2e-3, "mapper.tune_generator": tune, "lpips.net": "alex",
                "checkpoint.every_steps": 10 ** 6})
            request = FitRequest(frames=str(paths["frames"]), channels=str(paths["channels"]), config=config,
                                 num_expressions=10, landmarks=str(paths["landmarks"]), name=f"tune-{tune}")
            run = FitRun.start(request, request.inspect(), Path(tmp) / f"tune-{tune}", device="cpu")
            results[tune] = run.run().evaluation.summary()
    print(f"synthetic subject: {args.frames} frames at {args.resolution}px, {args.pivots} pivots, "
          f"{args.steps} scratch + {args.steps} mapper steps; held-out = last 20%")
    print(f"{'run':<34}{'PSNR':>8}{'SSIM':>8}{'LPIPS':>8}")
    for tune, summary in results.items():
        for method, values in summary.items():
            if method == "pvp" or tune == "on":
                label = f"tune_generator={tune}" if method == "pvp" else method
                print(f"{label:<34}{values['psnr']:>8.2f}{values['ssim']:>8.4f}{values['lpips']:>8.4f}")


if __name__ == "__main__":
    main()

"""Time per step of every ``pvp fit`` stage, and what a full fit costs at the paper's settings.

    python benchmarks/bench_fit.py [--device cpu|cuda] [--steps 2] [--quick]

For a small demo config (the scratch prior's default, 64 px, width 64) and for
256 config-f it times a few steps of each stage on random weights and frames
(the cost of a step does not depend on the values): projection (batch 4
pivots), pivotal tuning (batch 1, locality regulariser on), the scratch prior
(batch 4) and mapper training (batch 1, with the masked RGB consistency loss,
so two renders per step).  Training LPIPS is VGG16, as in the paper.  The
machine's fp32 matmul rate is measured in the same run, so figures from
different machines can be compared by ratio.  The last table multiplies the
step times by the paper's step counts (K = 200 pivots, 450 projector steps,
at most 350 PTI passes, 3000 scratch steps, 50k mapper steps).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pvp_runtime.contract.channels import ChannelLayout  # noqa: E402
from pvp_runtime.example_clips import head_turn_clip  # noqa: E402
from pvp_runtime.fit.config import FitConfig  # noqa: E402
from pvp_runtime.fit.encoders import FitNetworks  # noqa: E402
from pvp_runtime.fit.lpips import LPIPS  # noqa: E402
from pvp_runtime.fit.mapper_training import MapperStage  # noqa: E402
from pvp_runtime.fit.prepared import PreparedClip  # noqa: E402
from pvp_runtime.fit.projector import ProjectionStage  # noqa: E402
from pvp_runtime.fit.pti import PTIStage  # noqa: E402
from pvp_runtime.fit.frame_roll import FrameRoll  # noqa: E402
from pvp_runtime.fit.scratch_prior import ScratchPriorStage  # noqa: E402
from pvp_runtime.fit.synthetic import canonical_landmarks  # noqa: E402
from pvp_runtime.model.pvp import MapperConfig, PVPModel  # noqa: E402
from pvp_runtime.model.stylegan2 import Generator, GeneratorConfig, tiny_config  # noqa: E402

PIVOTS = 8
FRAMES = 16
PAPER = FitConfig()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measured_matmul_flops(device, n=2048):
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def time_stage(stage, steps, device) -> float:
    """Median seconds per step after one warm-up step."""
    stage.step(0)
    _sync(device)
    times = []
    for i in range(1, steps + 1):
        start = time.perf_counter()
        stage.step(i)
        _sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_config(name: str, config: GeneratorConfig, steps: int, device) -> dict:
    r = config.resolution
    rng = np.random.default_rng(0)
    clip = PreparedClip(frames=rng.integers(0, 255, (FRAMES, r, r, 3), dtype=np.uint8),
                        transforms=np.zeros((FRAMES, 2, 3)),
                        landmarks=np.repeat(canonical_landmarks(r)[None], FRAMES, axis=0), mattes=None)
    layout = ChannelLayout(50)
    channels = head_turn_clip(layout, FRAMES)
    torch.manual_seed(0)
    generator = Generator(config).to(device)
    lpips = LPIPS("vgg").to(device)
    pivots = np.arange(PIVOTS)
    results = {}

    projector = copy.deepcopy(PAPER.projector)
    projector.w_avg_samples = 1000
    stage = ProjectionStage(generator, clip, pivots, lpips, projector, 0, device)
    results["projection"] = time_stage(stage, steps, device) / projector.batch_size  # per pivot-step

    ws = generator.mapping(torch.randn(PIVOTS, config.z_dim, device=device)).detach()
    tuned = copy.deepcopy(generator)
    stage = PTIStage(tuned, generator, ws, clip, pivots, lpips, PAPER.pti, 0, device)
    results["pti"] = time_stage(stage, steps, device)
    del tuned, stage

    def mappers():
        model = PVPModel(MapperConfig(num_pivots=PIVOTS, num_expressions=50), config.num_ws, config.w_dim).to(device)
        with torch.no_grad():
            model.pivots.copy_(ws)
        return model

    scratch = copy.deepcopy(PAPER.scratch)  # joint mode: a pivot batch and a frame batch per step
    stage = ScratchPriorStage(copy.deepcopy(generator), mappers(), FrameRoll(False), clip, channels,
                              np.arange(FRAMES), pivots, layout, lpips, scratch, 0, device)
    results["scratch_prior"] = time_stage(stage, steps, device)
    del stage

    model = mappers()
    stage = MapperStage(generator, model, FrameRoll(False), clip, channels, np.arange(FRAMES), layout, lpips,
                        FitNetworks(),
                        PAPER.mapper, PAPER.mask, tune_generator=False, seed=0, device=device)
    results["mapper"] = time_stage(stage, steps, device)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per stage (after one warm-up)")
    parser.add_argument("--quick", action="store_true", help="the demo config only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the random LPIPS backbone warning is expected here
    device = torch.device(args.device)
    gflops = measured_matmul_flops(device) / 1e9
    print(f"device {device} ({torch.get_num_threads()} threads), fp32 matmul {gflops:.0f} GFLOP/s (this run)")
    configs = [("demo 64px w64", tiny_config(64, 64))]
    if not args.quick:
        configs.append(("256 config-f", GeneratorConfig(resolution=256)))
    counts = {"projection": PAPER.pivots.count * PAPER.projector.steps,
              "pti": PAPER.pivots.count * PAPER.pti.max_epochs,
              "scratch_prior": PAPER.scratch.steps,
              "mapper": PAPER.mapper.steps}
    print(f"\n{'config':<16}{'stage':<15}{'s/step':>10}{'paper steps':>13}{'full stage':>13}")
    for name, config in configs:
        times = bench_config(name, config, args.steps, device)
        for stage, seconds in times.items():
            total = seconds * counts[stage]
            unit = "pivot-step" if stage == "projection" else "step"
            print(f"{name:<16}{stage:<15}{seconds:>10.3f}{counts[stage]:>13,}{total / 3600:>11.1f} h"
                  f"   ({unit})")
        pretrained = sum(times[s] * counts[s] for s in ("projection", "pti", "mapper")) / 3600
        scratch = sum(times[s] * counts[s] for s in ("scratch_prior", "mapper")) / 3600
        print(f"{name:<16}{'full fit':<15}{'':>10}{'':>13}{pretrained:>11.1f} h   (pretrained prior; PTI at "
              f"its 350-pass cap)\n{name:<16}{'full fit':<15}{'':>10}{'':>13}{scratch:>11.1f} h   (scratch prior)")


if __name__ == "__main__":
    main()

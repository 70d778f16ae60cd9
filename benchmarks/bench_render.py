"""Render throughput against the machine's own FLOP rate, measured in one run.

    python benchmarks/bench_render.py [--device cpu|cuda] [--batches 1 8 32] [--quick] [--half] [--compare-allocator]

For each generator config and batch size it prints frames/s of ``Avatar.render``
(mappers + synthesis + colour conversion), the synthesis FLOPs per frame, and
the ratio of the achieved FLOP rate to the FLOP rate this machine reaches on a
plain fp32 matmul and on a plain 3x3 convolution, both measured in this run.
``floor`` is the time one frame would take at the measured convolution rate.
``faults/frame`` counts the process's minor page faults per rendered frame: the renderer keeps
freed host memory (``pvp_runtime.host_memory``) as ``pvp`` and the runtime process do;
``--compare-allocator`` first runs every row with the OS-default allocator behaviour.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pvp_runtime.avatar import Avatar  # noqa: E402
from pvp_runtime.example_clips import head_turn_clip  # noqa: E402
from pvp_runtime.host_memory import keep_freed_memory  # noqa: E402
from pvp_runtime.model.stylegan2 import GeneratorConfig, synthesis_macs, tiny_config  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _best_time(fn, device, repeats=5, min_seconds=0.5):
    fn()
    _sync(device)
    best = float("inf")
    start_all = time.perf_counter()
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
        if i >= 1 and time.perf_counter() - start_all > min_seconds * repeats:
            break
    return best


@torch.inference_mode()
def measured_matmul_flops(device, n=2048):
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    seconds = _best_time(lambda: a @ b, device)
    return 2 * n ** 3 / seconds


@torch.inference_mode()
def measured_conv_flops(device, channels=256, size=32, batch=8, dtype=torch.float32):
    x = torch.randn(batch, channels, size, size, device=device, dtype=dtype)
    w = torch.randn(channels, channels, 3, 3, device=device, dtype=dtype)
    seconds = _best_time(lambda: F.conv2d(x, w, padding=1), device)
    return 2 * batch * size * size * channels * channels * 9 / seconds


def _minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def bench_config(name, config, batches, device, frames_per_batch_size, half=False):
    avatar = Avatar.random(config, num_pivots=16, num_expressions=50, device=device)
    if half:
        avatar = Avatar(avatar.bundle, device=device, half=True)
    flops = 2 * synthesis_macs(config)
    rows = []
    for batch in batches:
        count = frames_per_batch_size(batch)
        clip = head_turn_clip(avatar.layout, count)
        avatar.render(clip[:batch], batch_size=batch, outputs=("linear",))  # warm-up
        _sync(device)
        faults = _minor_faults()
        start = time.perf_counter()
        avatar.render(clip, batch_size=batch, outputs=("linear",))
        _sync(device)
        seconds = time.perf_counter() - start
        rows.append((name, config.resolution, batch, count, count / seconds, flops,
                     (_minor_faults() - faults) / count))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--quick", action="store_true", help="skip config-f 256 (a smoke run)")
    parser.add_argument("--half", action="store_true",
                        help="CUDA: also run every row in half precision (Avatar half=True), "
                             "against the fp16 conv floor")
    parser.add_argument("--compare-allocator", action="store_true",
                        help="also run every row with the OS-default allocator behaviour, first")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}")
    matmul = measured_matmul_flops(device)
    conv = measured_conv_flops(device)
    print(f"measured fp32 matmul {matmul / 1e9:8.1f} GFLOP/s")
    print(f"measured fp32 conv3x3 {conv / 1e9:7.1f} GFLOP/s")
    half = args.half and device.type == "cuda"
    conv_half = measured_conv_flops(device, dtype=torch.float16) if half else None
    if half:
        print(f"measured fp16 conv3x3 {conv_half / 1e9:7.1f} GFLOP/s")

    configs = [("small-cpu", tiny_config(128, 64))]
    if not args.quick:
        configs.append(("config-f", GeneratorConfig(resolution=256)))
    slow = device.type == "cpu"

    def run_all(label, in_half=False):
        rows = []
        for name, config in configs:
            heavy = config.channel_max >= 512 and slow
            rows += [(label, *row) for row in bench_config(name, config, args.batches, device,
                                                           (lambda b: b) if heavy else (lambda b: max(b, 32)),
                                                           half=in_half)]
        return rows

    # mallopt cannot be undone cleanly, so the OS-default rows must come first.
    rows = run_all("default") if args.compare_allocator else []
    keep_freed_memory()
    rows += run_all("kept")
    if half:
        rows += run_all("fp16", in_half=True)
    print()
    print(f"{'memory':<8} {'config':<10} {'res':>4} {'batch':>5} {'frames':>6} {'frames/s':>9} {'GFLOP/frame':>11} "
          f"{'floor ms':>9} {'actual ms':>9} {'floor/actual':>12} {'vs matmul':>9} {'faults/frame':>12}")
    for label, name, res, batch, count, fps, flops, faults in rows:
        floor_s = flops / (conv_half if label == "fp16" else conv)
        actual_s = 1 / fps
        print(f"{label:<8} {name:<10} {res:>4} {batch:>5} {count:>6} {fps:>9.2f} {flops / 1e9:>11.2f} "
              f"{floor_s * 1e3:>9.1f} {actual_s * 1e3:>9.1f} {floor_s / actual_s:>12.2f} "
              f"{flops * fps / matmul:>9.2f} {faults:>12.0f}")
    print("\nfloor/actual = achieved synthesis FLOP rate / measured conv FLOP rate (1.0 = at the floor); "
          "fp16 rows against the fp16 conv rate.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

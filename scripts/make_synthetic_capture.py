"""Write a labelled synthetic capture of the procedural CG head (see pvp_runtime/synthetic_head.py).

    python scripts/make_synthetic_capture.py OUT_DIR [--frames 720] [--size 128] [--seed 7]

Writes, all or nothing:
  OUT_DIR/frames/frame_NNNNN.png   sRGB RGB over a dark backdrop (the "video")
  OUT_DIR/mattes/frame_NNNNN.png   the head's coverage (for masked evaluation)
  OUT_DIR/channels.csv             the exact rig channels of every frame (10 expressions)
  OUT_DIR/landmarks.npy            [frames, 68, 2] iBUG-68 landmarks in pixels (eye/mouth mask)

It stands in for a real person's video, which cannot be downloaded here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pvp_runtime.contract.channel_files import write_channel_file  # noqa: E402
from pvp_runtime.synthetic_head import performance, render_frame  # noqa: E402


def write_capture(output: Path, num_frames: int, size: int, seed: int, fps: float = 25.0) -> Path:
    layout, frames = performance(num_frames, fps, seed)
    staging = output.with_name(f".{output.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "frames").mkdir(parents=True)
    (staging / "mattes").mkdir()
    landmarks = np.zeros((num_frames, 68, 2), np.float32)
    for index in tqdm(range(num_frames), unit="frame", desc="capture", disable=None):
        rgb, matte, landmarks[index] = render_frame(frames[index], layout, size)
        cv2.imwrite(str(staging / "frames" / f"frame_{index:05d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(staging / "mattes" / f"frame_{index:05d}.png"), matte)
    write_channel_file(staging / "channels.csv", frames, layout, fps=fps)
    np.save(staging / "landmarks.npy", landmarks)
    if output.exists():
        shutil.rmtree(output)
    os.replace(staging, output)
    return output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--frames", type=int, default=720)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fps", type=float, default=25.0)
    args = parser.parse_args(argv)
    write_capture(args.output, args.frames, args.size, args.seed, args.fps)
    print(f"wrote {args.frames} frames to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write a labelled synthetic capture of the procedural CG head (see pvp_runtime/synthetic_head.py).

    python scripts/make_synthetic_capture.py OUT_DIR [--frames 720] [--size 128] [--seed 7]
        [--look demo|ada|bao|cyd|eve|random:SEED] [--gaze] [--expressions 10]
        [--no-landmarks] [--no-mattes]
    python scripts/make_synthetic_capture.py --preview-looks looks.png [--look ...]

Writes, all or nothing:
  OUT_DIR/frames/frame_NNNNN.png   sRGB RGB over a dark backdrop (the "video")
  OUT_DIR/mattes/frame_NNNNN.png   the head's coverage (for masked evaluation; not with --no-mattes)
  OUT_DIR/channels.csv             the exact rig channels of every frame (--expressions of them,
                                   10 by default; only the head's 10 visible ones move)
  OUT_DIR/landmarks.npy            [frames, 68, 2] iBUG-68 landmarks in pixels (eye/mouth mask;
                                   not with --no-landmarks)

--look picks the identity (default: the demo subject's head), --gaze makes the eyes look
around.  --preview-looks writes a contact sheet instead: one row per look (the named ones and
three random ones, or the --look ones), one column per pose, expression or gaze.

It stands in for a real person's video, which cannot be downloaded here.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pvp_runtime.contract.channel_files import write_channel_file  # noqa: E402
from pvp_runtime.contract.channels import MAX_EXPRESSIONS, ChannelLayout  # noqa: E402
from pvp_runtime.synthetic_head import (  # noqa: E402
    DEMO, LOOKS, NUM_EXPRESSIONS, Look, look_from_spec, performance, random_look, render_frame)


def write_capture(output: Path, num_frames: int, size: int, seed: int, fps: float = 25.0, look: Look = DEMO,
                  gaze: bool = False, num_expressions: int = NUM_EXPRESSIONS, landmarks: bool = True,
                  mattes: bool = True) -> Path:
    layout, frames = performance(num_frames, fps, seed, gaze=gaze, num_expressions=num_expressions)
    staging = output.with_name(f".{output.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        (staging / "frames").mkdir(parents=True)
        if mattes:
            (staging / "mattes").mkdir()
        points = np.zeros((num_frames, 68, 2), np.float32)
        for index in tqdm(range(num_frames), unit="frame", desc="capture", disable=None):
            rgb, matte, points[index] = render_frame(frames[index], layout, size, look=look)
            cv2.imwrite(str(staging / "frames" / f"frame_{index:05d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if mattes:
                cv2.imwrite(str(staging / "mattes" / f"frame_{index:05d}.png"), matte)
        write_channel_file(staging / "channels.csv", frames, layout, fps=fps)
        if landmarks:
            np.save(staging / "landmarks.npy", points)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # nothing half-written stays behind
        raise
    if output.exists():
        shutil.rmtree(output)
    os.replace(staging, output)
    return output


# One column of the contact sheet per entry: a caption and the channels it sets.
PREVIEW_POSES = (
    ("neutral", {}),
    ("yaw +35", {"head_yaw": math.radians(35)}),
    ("yaw -30 pitch +15", {"head_yaw": math.radians(-30), "head_pitch": math.radians(15)}),
    ("smile, jaw open", {"expr_00": 2.5, "jaw_x": 0.35}),
    ("brows up, blink", {"expr_01": 2.5, "expr_03": 3.0}),
    ("gaze to its left", {"eye_l_y": 0.35, "eye_r_y": 0.35}),
    ("gaze up, its right", {"eye_l_x": -0.2, "eye_r_x": -0.2, "eye_l_y": -0.35, "eye_r_y": -0.35}),
    ("landmarks", {}),
)


def preview_looks(output: Path, looks: list[Look], size: int = 128) -> Path:
    """A contact sheet: one row per look, one column per PREVIEW_POSES entry (to look at, not to test)."""
    layout = ChannelLayout(NUM_EXPRESSIONS)
    rows = []
    for look in looks:
        tiles = []
        for caption, values in PREVIEW_POSES:
            frame = layout.defaults(1)[0]
            for name, value in values.items():
                frame[layout.index(name)] = value
            rgb, _, points = render_frame(frame, layout, size, look=look)
            tile = np.ascontiguousarray(rgb)
            if caption == "landmarks":
                for x, y in points:
                    cv2.circle(tile, (int(round(x)), int(round(y))), 1, (80, 255, 80), -1)
            label = look.name if caption == "neutral" else caption
            cv2.putText(tile, label, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(tile)
        rows.append(np.concatenate(tiles, axis=1))
    sheet = np.concatenate(rows, axis=0)
    output.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(output), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {output}")
    return output


def _look(spec: str) -> Look:
    try:
        return look_from_spec(spec)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, nargs="?")
    parser.add_argument("--frames", type=int, default=720)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--look", type=_look, action="append",
                        help=f"identity: {', '.join(LOOKS)} or random:SEED (default demo; repeatable for "
                             f"--preview-looks)")
    parser.add_argument("--gaze", action="store_true", help="the eyes look around (eye_l_*, eye_r_* channels)")
    parser.add_argument("--expressions", type=int, default=NUM_EXPRESSIONS,
                        help=f"expression channels in channels.csv (only the first {NUM_EXPRESSIONS} move)")
    parser.add_argument("--no-landmarks", action="store_true", help="write no landmarks.npy")
    parser.add_argument("--no-mattes", action="store_true", help="write no mattes/")
    parser.add_argument("--preview-looks", type=Path, metavar="PNG",
                        help="write a contact sheet of the looks instead of a capture")
    args = parser.parse_args(argv)
    if args.preview_looks:
        looks = args.look or [*LOOKS.values(), *(random_look(seed) for seed in (1, 2, 3))]
        print(f"wrote {preview_looks(args.preview_looks, looks, args.size)}")
        return 0
    if args.output is None:
        parser.error("give OUT_DIR (or --preview-looks PNG)")
    if args.look and len(args.look) > 1:
        parser.error("a capture has one --look")
    if not 1 <= args.expressions <= MAX_EXPRESSIONS:
        parser.error(f"--expressions must be in 1..{MAX_EXPRESSIONS}, got {args.expressions}")
    if args.frames < 1 or args.size < 8:
        parser.error("--frames must be at least 1 and --size at least 8")
    look = args.look[0] if args.look else DEMO
    write_capture(args.output, args.frames, args.size, args.seed, args.fps, look=look, gaze=args.gaze,
                  num_expressions=args.expressions, landmarks=not args.no_landmarks, mattes=not args.no_mattes)
    print(f"wrote {args.frames} frames of look {look.name} to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``pvp learn-arkit-map ARKIT.csv CHANNELS -o MAP.npz``: an ARKit -> FLAME map from one paired take."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..arkit_learning import judged_score, learn_map, paired_frames, r2_table
from ..contract.arkit import write_arkit_map
from ..contract.channels import ChannelLayout, expression_name
from ..contract.errors import PVPError
from ..formats.channel_sources import SOURCES, detect_source, read_any_channels, read_tracker_params
from ..formats.live_link import read_live_link_csv

log = logging.getLogger("pvp.arkit")
DEFAULT_MIN_R2 = 0.5


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "learn-arkit-map", help="fit an ARKit -> FLAME map from a Live Link Face take and its tracked channels",
        description="Fit a linear map from ARKit blendshape weights (a Live Link Face CSV) to FLAME expression and "
                    "jaw channels (and eyes with --eyes) of the same take, tracked from its video (DECA/EMOCA/SMIRK "
                    "output or a channel file: anything pvp convert-channels reads). Ridge regression with its "
                    "penalty chosen by cross-validation; the last --held-out fraction of the take is kept out of "
                    "the fit and R^2 there is reported per channel. The two are paired frame by frame when their "
                    "counts agree, else by the capture's timecode and CHANNELS' frame rate. A map whose mean "
                    "held-out R^2 is below --min-r2 is refused unless --force.")
    parser.add_argument("arkit", type=Path, help="Live Link Face CSV of the take")
    parser.add_argument("channels", type=Path, help="the same take's FLAME channels (tracker output or channel file)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="map to write (.npz)")
    parser.add_argument("--channel-source", choices=[s for s in SOURCES if s != "live_link"], default="auto",
                        help="layout of CHANNELS (default: detected from its contents)")
    parser.add_argument("--channels-fps", type=float, help="frame rate of CHANNELS when the file has none")
    parser.add_argument("--expressions", type=int, help="expression channels to fit (default: all CHANNELS has)")
    parser.add_argument("--eyes", action="store_true", help="also fit the eye channels")
    parser.add_argument("--held-out", type=float, default=0.2, help="fraction of the take (its end) kept out of the "
                                                                    "fit to measure R^2 (default 0.2)")
    parser.add_argument("--min-r2", type=float, default=DEFAULT_MIN_R2,
                        help=f"refuse a map whose mean held-out R^2 is below this (default {DEFAULT_MIN_R2})")
    parser.add_argument("--force", action="store_true", help="write the map even when its R^2 is poor")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(run=run)


def run(args) -> int:
    if args.output.suffix.lower() != ".npz":
        raise PVPError(f"{args.output}: the map is written as .npz")
    if args.output.exists() and not args.overwrite:
        raise PVPError(f"{args.output}: already exists (pass --overwrite to replace it)")
    if not 0 < args.held_out < 0.9:
        raise PVPError(f"--held-out must be between 0 and 0.9, got {args.held_out}")
    if args.channels_fps is not None and not 0 < args.channels_fps < 1000:
        raise PVPError(f"--channels-fps must be between 0 and 1000, got {args.channels_fps}")
    capture = read_live_link_csv(args.arkit)
    source = detect_source(args.channels) if args.channel_source == "auto" else args.channel_source
    if source == "live_link":
        raise PVPError(f"{args.channels}: is a Live Link Face capture; CHANNELS must be FLAME channels of the take")
    count = args.expressions or (50 if source == "channels" else read_tracker_params(args.channels, source).num_expressions)
    layout = ChannelLayout(count)
    clip = read_any_channels(args.channels, layout, source)
    arkit, channels, pairing = paired_frames(capture, clip, args.channels_fps, str(args.channels))
    targets = [expression_name(i, count) for i in range(count)] + ["jaw_x", "jaw_y", "jaw_z"]
    if args.eyes:
        targets += [f"eye_{side}_{axis}" for side in "lr" for axis in "xyz"]
    still = [name for name in targets if np.ptp(channels[:, layout.index(name)]) == 0]
    if still:  # nothing to learn (a tracker without that channel, expressions past its count)
        log.info("%s: left out %d channel(s) that never move: %s", args.channels, len(still), ", ".join(still))
        targets = [name for name in targets if name not in still]
    if not targets:
        raise PVPError(f"{args.channels}: no expression, jaw or eye channel moves; nothing to map to")
    learnt = learn_map(arkit, channels, layout, targets, args.held_out, str(args.channels))
    table = r2_table(learnt)
    for line in table.splitlines()[1:]:
        log.debug("held-out R^2: %s", line)
    print(f"paired {pairing}; fitted on {learnt.frames - learnt.held_out} frames, held out the last "
          f"{learnt.held_out}; ridge penalty {learnt.alpha:g}")
    print(table)
    score = judged_score(learnt.r2)
    if score is None:
        raise PVPError(f"{args.channels}: no target channel moves in the held-out frames; nothing to judge the map by")
    worst = sorted((r2, name) for name, r2 in zip(targets, learnt.r2) if r2 == r2)[:3]
    log.info("mean held-out R^2 %.4f over %d moving channels (worst: %s)", score, sum(r2 == r2 for r2 in learnt.r2),
             ", ".join(f"{name} {r2:.3f}" for r2, name in worst))
    if score < args.min_r2 and not args.force:
        raise PVPError(f"{args.arkit}: the map's mean held-out R^2 is {score:.3f} (< --min-r2 {args.min_r2}; worst "
                       f"{', '.join(f'{name} {r2:.2f}' for r2, name in worst)}): the two files may not be the same "
                       "take or not in sync; pass --force to write it anyway")
    write_arkit_map(args.output, learnt.arkit_map)
    print(f"wrote {args.output}: {len(targets)} channels from 52 ARKit weights, mean held-out R^2 {score:.4f}")
    return 0

"""``pvp example-channels`` and ``pvp random-subject``: inputs to try the pipeline without a fit."""

from __future__ import annotations

from pathlib import Path

from ..contract.channel_files import SUPPORTED_SUFFIXES, write_channel_file
from ..contract.channels import ChannelLayout
from ..contract.errors import PVPError
from ..example_clips import head_turn_clip


def add_parser(subparsers) -> None:
    clip = subparsers.add_parser("example-channels", help="write an example channel file",
                                 description="Write a head turn with a jaw open and expression pulses as a "
                                             f"channel file ({', '.join(SUPPORTED_SUFFIXES)}).")
    clip.add_argument("output", type=Path, help="file to write; the suffix picks the layout")
    clip.add_argument("--frames", type=int, default=48, help="frame count (default 48)")
    clip.add_argument("--expressions", type=int, default=50, help="expression channels of the subject (default 50)")
    clip.add_argument("--fps", type=float, default=25.0)
    clip.set_defaults(run=run_example_channels)

    subject = subparsers.add_parser("random-subject", help="write a subject bundle with random weights",
                                    description="Build a subject with a random generator and mappers. It does "
                                                "not look like anyone; it exercises rendering end to end.")
    subject.add_argument("output", type=Path, help="bundle to write (.pvp)")
    subject.add_argument("--resolution", type=int, default=64)
    subject.add_argument("--width", type=int, default=64, help="w_dim and the widest layer (default 64)")
    subject.add_argument("--config-f", action="store_true", help="full config-f widths (512) instead of --width")
    subject.add_argument("--pivots", type=int, default=8)
    subject.add_argument("--expressions", type=int, default=50)
    subject.add_argument("--seed", type=int, default=0)
    subject.set_defaults(run=run_random_subject)


def run_example_channels(args) -> int:
    if args.frames < 1:
        raise PVPError(f"--frames must be at least 1, got {args.frames}")
    layout = ChannelLayout(args.expressions)
    write_channel_file(args.output, head_turn_clip(layout, args.frames), layout, fps=args.fps)
    print(f"wrote {args.frames} frames to {args.output}")
    return 0


def run_random_subject(args) -> int:
    from ..bundle import random_bundle, save_bundle
    from ..model.stylegan2 import GeneratorConfig, tiny_config

    try:
        config = GeneratorConfig(resolution=args.resolution) if args.config_f else tiny_config(args.resolution, args.width)
    except ValueError as exc:
        raise PVPError(str(exc)) from None
    if args.pivots < 1:
        raise PVPError(f"--pivots must be at least 1, got {args.pivots}")
    ChannelLayout(args.expressions)
    bundle = random_bundle(config, args.pivots, args.expressions, args.seed, name=args.output.stem,
                           expression_scale=0.05)
    save_bundle(bundle, args.output)
    print(f"wrote {args.output} ({config.resolution}x{config.resolution}, {args.pivots} pivots)")
    return 0

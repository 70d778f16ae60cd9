"""``pvp convert-channels SRC -o OUT``: tracker output (DECA/EMOCA/SMIRK/feats.json) or a Live Link Face
capture (through an ARKit map) -> a channel file."""

from __future__ import annotations

from pathlib import Path

from ..contract.channel_files import SUPPORTED_SUFFIXES, write_channel_file
from ..contract.channels import ChannelLayout
from ..contract.errors import PVPError
from ..formats.arkit_maps import read_arkit_map
from ..formats.channel_sources import SOURCES, detect_source, read_any_channels, read_tracker_params
from ..formats.trackers import params_to_frames


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert-channels", help="convert tracker output into a channel file",
        description="Read per-frame FLAME parameters (DECA codes .npz, an EMOCA --save_codes folder, SMIRK "
                    "outputs .npz, the PVP authors' feats.json, or one of our channel files) or a Live Link Face "
                    "capture (.csv, with --arkit-map) and write them as "
                    f"rig channels ({', '.join(SUPPORTED_SUFFIXES)}; the suffix picks the layout). Head yaw, "
                    "pitch and roll are derived from the global axis-angle by the rig's convention.")
    parser.add_argument("source", type=Path, help="tracker output file or folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help="channel file to write")
    parser.add_argument("--source-format", choices=SOURCES, default="auto",
                        help="layout of SOURCE (default: detected from its contents)")
    parser.add_argument("--expressions", type=int,
                        help="expression channels to write (default: as many as the source has)")
    parser.add_argument("--fps", type=float, help="frame rate to record in the file")
    parser.add_argument("--arkit-map", type=Path, metavar="MAP",
                        help="ARKit -> FLAME map for a Live Link Face capture: our .npz (pvp learn-arkit-map), "
                             "EMAGE's mat_final.npy or a mediapipe-blendshapes-to-flame mappings/ folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(run=run)


def run(args) -> int:
    if args.output.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise PVPError(f"{args.output}: output must be one of {', '.join(SUPPORTED_SUFFIXES)}")
    if args.output.exists() and not args.overwrite:
        raise PVPError(f"{args.output}: already exists (pass --overwrite to replace it)")
    if args.fps is not None and not 0 < args.fps < 1000:
        raise PVPError(f"--fps must be between 0 and 1000, got {args.fps}")
    source = detect_source(args.source) if args.source_format == "auto" else args.source_format
    if args.arkit_map and source != "live_link":
        raise PVPError(f"{args.source}: --arkit-map was given, but this is not a Live Link Face capture ({source})")
    if source == "live_link":
        arkit_map = read_arkit_map(args.arkit_map) if args.arkit_map else None
        layout = ChannelLayout(args.expressions or _map_expressions(arkit_map))
        clip = read_any_channels(args.source, layout, "live_link", arkit_map=arkit_map)
        frames, fps = clip.frames, args.fps or clip.fps
    elif source == "channels":
        layout = ChannelLayout(args.expressions or 50)
        clip = read_any_channels(args.source, layout, "channels")
        frames, fps = clip.frames, args.fps or clip.fps
    else:
        params = read_tracker_params(args.source, source)
        layout = ChannelLayout(args.expressions or params.num_expressions)
        frames, fps = params_to_frames(params, layout), args.fps
    write_channel_file(args.output, frames, layout, fps=fps)
    print(f"wrote {len(frames)} frames ({source}, {layout.num_expressions} expressions) to {args.output}")
    return 0


def _map_expressions(arkit_map) -> int:
    """As many expression channels as the map drives (50 without a map, or one that drives none)."""
    numbers = [int(t[len("expr_"):]) for t in (arkit_map.targets if arkit_map else ()) if t.startswith("expr_")]
    return max(numbers) + 1 if numbers else 50

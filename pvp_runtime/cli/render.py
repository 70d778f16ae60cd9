"""``pvp render BUNDLE CHANNELS -o OUTDIR``: a PNG or EXR sequence (and optionally an MP4) from a channel file."""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from ..avatar import Avatar, RenderedFrames
from ..canvas import MAX_CANVAS_SIDE, column_affines, place_on_canvas, to_srgb8, warp_on_canvas
from ..contract.channel_files import SUPPORTED_SUFFIXES
from ..contract.channels import ChannelStats, normalize_reenactment
from ..contract.errors import PVPError
from ..formats.channel_sources import SOURCES, read_any_channels
from ..contract.provenance import file_sha256, frame_metadata
from ..image_io import FRAME_FORMATS, VideoWriter, staged_directory, write_exr, write_png
from ..imaging import linear_to_srgb16

log = logging.getLogger("pvp.render")
DEFAULT_FPS = 25.0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "render", help="render a channel file to a PNG or EXR sequence",
        description="Render every frame of a channel file with a subject bundle. Frames are written as "
                    "OUTDIR/frame_NNNN.png (sRGB, RGBA, straight alpha; --format png16: 16 bit) or "
                    "OUTDIR/frame_NNNN.exr (--format exr: half float, scene-linear, premultiplied RGBA), "
                    "numbered by their index in the channel file, each carrying the PVP provenance keys "
                    f"(pvp verify shows them). Channel files: {', '.join(SUPPORTED_SUFFIXES)} (see README, 'Channel files'), or "
                    "tracker output read directly: DECA codes .npz, an EMOCA --save_codes folder, SMIRK "
                    "outputs .npz, feats.json. "
                    "Nothing is written unless every frame renders.")
    parser.add_argument("bundle", type=Path, help="subject bundle (.pvp)")
    parser.add_argument("channels", type=Path, help="per-frame channels (.npz, .json or .csv) or tracker output")
    parser.add_argument("--channel-source", choices=SOURCES, default="auto",
                        help="layout of CHANNELS (default: detected from its contents)")
    parser.add_argument("--arkit-map", type=Path, metavar="MAP",
                        help="ARKit -> FLAME map for a Live Link Face capture (see pvp convert-channels)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--frames", metavar="A:B", help="render frames A..B-1 only (Python slice, 0-based)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per synthesis pass (default 8)")
    parser.add_argument("--half", action="store_true", help="float16 synthesis on CUDA")
    parser.add_argument("--format", choices=FRAME_FORMATS, default="png",
                        help="png (8-bit sRGB, default), png16 (16-bit sRGB) or exr (half-float scene-linear)")
    parser.add_argument("--video", action="store_true", help="also write OUTDIR/render.mp4")
    parser.add_argument("--fps", type=float, help="video frame rate (default: the file's, else 25)")
    parser.add_argument("--reenact", action="store_true",
                        help="retarget jaw and expression to the subject's own range (PVP reenactment "
                             "normalisation with the clip's and the subject's statistics)")
    parser.add_argument("--width", type=int, help="output canvas width in pixels (default: the subject's resolution)")
    parser.add_argument("--height", type=int, help="output canvas height in pixels (default: the subject's resolution)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.set_defaults(run=run)


FRAME_WRITERS = {
    "png": lambda path, batch, i, metadata: write_png(path, batch.srgb8[i], metadata),
    "png16": lambda path, batch, i, metadata: write_png(path, linear_to_srgb16(batch.linear[i]), metadata),
    "exr": lambda path, batch, i, metadata: write_exr(path, batch.linear[i], metadata),
}


def parse_frame_range(text: str | None, count: int) -> range:
    if text is None:
        return range(count)
    parts = text.split(":")
    if len(parts) != 2:
        raise PVPError(f"--frames {text!r}: expected A:B, for example 0:48")
    try:
        start = int(parts[0]) if parts[0] else 0
        stop = int(parts[1]) if parts[1] else count
    except ValueError:
        raise PVPError(f"--frames {text!r}: A and B must be whole numbers") from None
    selected = range(count)[start:stop]
    if len(selected) == 0:
        raise PVPError(f"--frames {text!r} selects no frames (the file has {count})")
    return selected


def canvas_placer(columns: dict, selected: range, canvas: tuple[int, int], avatar: Avatar):
    """None (the subject's own square, as before), or ``(linear frames, first index) -> linear frames``
    on the canvas (premultiplied): placed by the clip's ``place_*`` columns, else centred and fitted."""
    width, height = canvas
    if not columns and canvas == (avatar.resolution, avatar.resolution):
        return None
    if not columns:
        return lambda linear, start: place_on_canvas(linear, width, height)
    picked = {name: values[selected.start:selected.stop:selected.step] for name, values in columns.items()}
    affines = column_affines(picked, len(selected), width, height, avatar.resolution,
                             avatar.bundle.framing.head_centre)
    return lambda linear, start: warp_on_canvas(linear, affines[start:start + len(linear)], width, height)


def run(args) -> int:
    if args.batch_size < 1:
        raise PVPError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.fps is not None and not 0 < args.fps < 1000:
        raise PVPError(f"--fps must be between 0 and 1000, got {args.fps}")
    for name in ("width", "height"):
        value = getattr(args, name)
        if value is not None and not 1 <= value <= MAX_CANVAS_SIDE:
            raise PVPError(f"--{name} must be between 1 and {MAX_CANVAS_SIDE}, got {value}")
    avatar = Avatar.load(args.bundle, device=args.device, half=args.half)
    clip = read_any_channels(args.channels, avatar.layout, args.channel_source, arkit_map=args.arkit_map)
    selected = parse_frame_range(args.frames, len(clip.frames))
    frames = clip.frames
    if args.reenact:
        frames = normalize_reenactment(frames, avatar.layout, avatar.bundle.channel_stats, ChannelStats.of(frames))
    frames = frames[selected.start:selected.stop:selected.step]
    fps = args.fps or clip.fps or DEFAULT_FPS
    canvas = (args.width or avatar.resolution, args.height or avatar.resolution)
    place = canvas_placer(clip.placement, selected, canvas, avatar)
    log.info("rendering %d frames of %s with %s on %s", len(frames), args.channels, avatar.name, avatar.device)
    width = max(4, len(str(selected[-1])))
    metadata = frame_metadata(avatar.name, file_sha256(args.bundle))
    write_frame = FRAME_WRITERS[args.format]
    outputs = ("srgb8",) if args.format == "png" else ("linear", "srgb8") if args.video else ("linear",)
    with staged_directory(args.output, overwrite=args.overwrite) as staging:
        video = VideoWriter(staging / "render.mp4", fps, canvas) if args.video else None
        try:
            with tqdm(total=len(frames), unit="frame", desc="render", disable=None) as progress:
                for start in range(0, len(frames), args.batch_size):
                    chunk = frames[start:start + args.batch_size]
                    if place is None:
                        batch = avatar.render(chunk, batch_size=args.batch_size, outputs=outputs)
                    else:
                        linear = place(avatar.render(chunk, batch_size=args.batch_size, outputs=("linear",)).linear,
                                       start)
                        batch = RenderedFrames(linear=linear, srgb8=to_srgb8(linear) if "srgb8" in outputs else None)
                    for offset in range(len(batch)):
                        index = selected[start + offset]
                        path = staging / f"frame_{index:0{width}d}{FRAME_FORMATS[args.format]}"
                        write_frame(path, batch, offset, metadata)
                        if video:
                            video.write(batch.srgb8[offset])
                    progress.update(len(batch))
        finally:
            if video:
                video.close()
    print(f"wrote {len(frames)} frames to {args.output}" + (f" and {args.output / 'render.mp4'}" if video else ""))
    return 0

"""Render a shot headless with the PVP Avatar engine: the bpy-wheel stand-in for ``blender -b``.

    python scripts/render_shot.py shot.blend                 # = blender -b shot.blend -a
    python scripts/render_shot.py shot.blend -s 1 -e 12      # = blender -b shot.blend -s 1 -e 12 -a

The .blend's own frame range, output path and format apply, as with ``blender -b``.  The
runtime interpreter comes from $PVP_PYTHON (the extension's autodetection), since the wheel
loads no saved preferences.  Exit status 0 when every frame was written, 1 with Blender's
error message when the render failed (nothing is written for a failed frame).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _headless_blender import ENGINE_ID, enable_extension, script_arguments  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(prog="render_shot.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("blend", type=Path)
    parser.add_argument("-s", "--frame-start", type=int, help="first frame (default: the file's)")
    parser.add_argument("-e", "--frame-end", type=int, help="last frame (default: the file's)")
    args = parser.parse_args(script_arguments())
    if not args.blend.is_file():
        print(f"render_shot: no such .blend: {args.blend}", file=sys.stderr)
        return 1
    enable_extension()
    bpy.ops.wm.open_mainfile(filepath=str(args.blend.resolve()))
    scene = bpy.context.scene
    # An unregistered engine would silently become EEVEE: the shot, or the overlay scene that
    # composites the avatar over it ("Composite Avatar Over Scene"), must render with ours.
    avatar_scenes = [s for s in bpy.data.scenes if s == scene or s.pvp.overlay_of == scene]
    if all(s.render.engine != ENGINE_ID for s in avatar_scenes):
        print(f"render_shot: {args.blend} renders with {scene.render.engine}, not {ENGINE_ID}, "
              "and has no avatar overlay scene", file=sys.stderr)
        return 1
    if args.frame_start is not None:
        scene.frame_start = args.frame_start
    if args.frame_end is not None:
        scene.frame_end = args.frame_end
    started = time.perf_counter()
    try:
        bpy.ops.render.render(animation=True)
    except RuntimeError as exc:
        print(f"render_shot: {args.blend}: {str(exc).strip()}", file=sys.stderr)
        return 1
    count = scene.frame_end - scene.frame_start + 1
    print(f"render_shot: {count} frames in {time.perf_counter() - started:.1f} s -> "
          f"{bpy.path.abspath(scene.render.filepath)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

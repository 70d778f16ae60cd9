"""Animation render through Blender vs the runtime's bare render of the same frames, in one run.

    python benchmarks/bench_blender_render.py [--frames 16] [--config f|mid] [--device cpu|cuda]

Needs the bpy wheel.  Builds the extension zip, installs it into a temporary
Blender user folder, keys a head-turn clip on the rig (with the add-on's import
operator) and renders it headless to PNGs at 256 x 256, exactly as
``blender -b shot.blend -a`` would: rig evaluation, prefetch, the protocol,
Render Result, compositor and PNG output included.  The bare render is
``Avatar.render`` of the same channels at the add-on's batch size.  Both skip
their first (warm-up) frame: the runtime process start and subject load are
reported separately.  The bare render runs before and after Blender (the
machine is shared and noisy); its mean is the reference.

Configs: ``f`` is StyleGAN2 config-f at 256 (about 45 GMAC per frame), ``mid``
halves the channels (about a quarter of the work) for quick runs on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pvp_runtime.avatar import Avatar  # noqa: E402
from pvp_runtime.bundle import random_bundle, save_bundle  # noqa: E402
from pvp_runtime.contract.channel_files import write_channel_file  # noqa: E402
from pvp_runtime.example_clips import head_turn_clip  # noqa: E402
from pvp_runtime.model.stylegan2 import GeneratorConfig  # noqa: E402

CONFIGS = {"f": GeneratorConfig(resolution=256),
           "mid": GeneratorConfig(resolution=256, channel_base=16384, channel_max=256)}
BATCH = 8  # the add-on's default prefetch

BLENDER_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import bpy, addon_utils
    args = json.loads(sys.argv[1])
    addon = "bl_ext.user_default.pvp_avatar"
    bpy.ops.extensions.package_install_files(filepath=args["zip"], repo="user_default", enable_on_install=True)
    addon_utils.enable(addon, default_set=True)
    prefs = bpy.context.preferences.addons[addon].preferences
    prefs.interpreter, prefs.source_dir, prefs.device, prefs.batch_size = (
        args["python"], args["source"], args["device"], args["batch"])
    prefs.frame_timeout = 600.0
    scene = bpy.context.scene
    for obj in list(bpy.data.objects):
        if obj.type != "CAMERA":  # Blender renders nothing without a camera, whatever the engine
            bpy.data.objects.remove(obj)
    scene.render.engine = "PVP_AVATAR"
    scene.render.resolution_x = scene.render.resolution_y = 256
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.view_settings.view_transform = "Standard"
    bpy.ops.pvp.add_head_rig(subject_path=args["bundle"])
    bpy.ops.pvp.import_channels(filepath=args["clip"], start_frame=0, match_fps=False)
    # Warm-up: start the runtime and load the subject (a farm pays this once per chunk).
    scene.frame_set(0)
    started = time.perf_counter()
    bpy.ops.render.render()
    warmup = time.perf_counter() - started
    scene.frame_start, scene.frame_end = 1, args["frames"]
    scene.render.filepath = args["out"] + "/f_####"
    started = time.perf_counter()
    bpy.ops.render.render(animation=True)
    seconds = time.perf_counter() - started
    print("RESULT " + json.dumps({"seconds": seconds, "warmup": warmup}), flush=True)
""")


def bare_seconds(avatar, frames) -> float:
    avatar.render(frames[:1], batch_size=1)  # warm-up
    started = time.perf_counter()
    for start in range(1, len(frames), BATCH):
        avatar.render(frames[start:start + BATCH], batch_size=BATCH, outputs=("linear",))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16, help="frames rendered after the warm-up frame")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="f")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    config = CONFIGS[args.config]
    with tempfile.TemporaryDirectory(prefix="pvp-bench-") as tmp:
        tmp = Path(tmp)
        bundle_path = tmp / "subject.pvp"
        save_bundle(random_bundle(config, num_pivots=8, num_expressions=50, seed=0, expression_scale=0.02),
                    bundle_path)
        avatar = Avatar.load(bundle_path, device=args.device)
        frames = head_turn_clip(avatar.layout, args.frames + 1)  # frame 0 warms up
        write_channel_file(tmp / "clip.npz", frames, avatar.layout)
        dist = tmp / "dist"
        subprocess.run([sys.executable, str(REPO / "scripts" / "build_extension.py"), "--output-dir", str(dist)],
                       check=True, capture_output=True)
        bare_before = bare_seconds(avatar, frames)
        script = tmp / "render.py"
        script.write_text(BLENDER_SCRIPT)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.update(BLENDER_USER_RESOURCES=str(tmp / "user"), XDG_CACHE_HOME=str(tmp / "cache"))
        blender_args = {"zip": str(next(dist.glob("*.zip"))), "python": sys.executable, "source": str(REPO),
                        "device": args.device, "batch": BATCH, "bundle": str(bundle_path),
                        "clip": str(tmp / "clip.npz"), "frames": args.frames, "out": str(tmp / "frames")}
        process = subprocess.run([sys.executable, str(script), json.dumps(blender_args)], env=env, cwd=tmp,
                                 capture_output=True, text=True)
        lines = [line[7:] for line in process.stdout.splitlines() if line.startswith("RESULT ")]
        if process.returncode or not lines:
            print(process.stdout[-3000:], process.stderr[-3000:], file=sys.stderr)
            return 1
        blender = json.loads(lines[-1])
        written = len(list((tmp / "frames").glob("f_*.png")))
        bare_after = bare_seconds(avatar, frames)
    bare = (bare_before + bare_after) / 2 / args.frames
    through_blender = blender["seconds"] / args.frames
    print(f"config {args.config} at 256 x 256, {args.frames} frames, device {args.device}, batch {BATCH}, "
          f"torch threads {__import__('torch').get_num_threads()}")
    print(f"bare Avatar.render         {bare:8.3f} s/frame   (before {bare_before / args.frames:.3f}, "
          f"after {bare_after / args.frames:.3f})")
    print(f"Blender animation render   {through_blender:8.3f} s/frame   ({written} PNGs written; runtime start + "
          f"subject load + first frame {blender['warmup']:.1f} s, not counted)")
    print(f"ratio Blender / bare       {through_blender / bare:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Animation render through Blender vs the runtime's bare render of the same frames, in one run.

    python benchmarks/bench_blender_render.py [--frames 16] [--config f|mid] [--rounds 2] [--device cpu|cuda]

Needs the bpy wheel.  Builds the extension zip, installs it into a temporary
Blender user folder, keys a head-turn clip on the rig (with the add-on's import
operator) and renders it headless to PNGs at 256 x 256, exactly as
``blender -b shot.blend -a`` would.

What each figure includes:

* **Blender**: wall time of ``bpy.ops.render.render(animation=True)`` over the
  frames: rig evaluation and prefetch, the protocol round trip, the runtime
  process's render, Render Result, compositor, PNG encoding and writing.
* **bare**: wall time of ``Avatar.render`` of the same channels, in this
  process, at the add-on's batch size, linear output only: no protocol, no
  Blender, no PNGs.  The ratio is the whole cost of going through Blender.

Fairness: both run the same batches (the add-on's prefetch size; the script
checks from the session's counters that Blender rendered every frame through
the runtime, none from an earlier round's cache) with the same torch thread
count (the runtime reports its own; a mismatch is printed as a warning) and
the same allocator setting (``pvp_runtime.host_memory``, as the runtime process).
Both skip a warm-up frame: runtime start, subject load and the first frame are
reported separately.  The machine this was written on is shared and noisy, so
bare and Blender rounds alternate (bare, Blender, Blender, bare, ...): a drift
in background load hits both alike.  CPU seconds (user + system, of Blender
plus the runtime process, vs this process) are printed too: less sensitive to
other jobs than wall time, they show where the time goes.

Configs: ``f`` is StyleGAN2 config-f at 256 (about 45 GMAC per frame), ``mid``
halves the channels (about a quarter of the work) for quick runs on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from pvp_runtime.avatar import Avatar  # noqa: E402
from pvp_runtime.bundle import random_bundle, save_bundle  # noqa: E402
from pvp_runtime.contract.channel_files import write_channel_file  # noqa: E402
from pvp_runtime.example_clips import head_turn_clip  # noqa: E402
from pvp_runtime.host_memory import keep_freed_memory  # noqa: E402
from pvp_runtime.model.stylegan2 import GeneratorConfig  # noqa: E402

CONFIGS = {"f": GeneratorConfig(resolution=256),
           "mid": GeneratorConfig(resolution=256, channel_base=16384, channel_max=256)}
BATCH = 8  # the add-on's default prefetch

# Runs inside Blender (the bpy wheel).  After set-up it renders one animation round per line
# it reads on stdin and answers each with a RESULT line: the parent runs its bare rounds in between.
BLENDER_SCRIPT = textwrap.dedent("""
    import json, os, resource, sys, time
    import bpy, addon_utils
    args = json.loads(sys.argv[1])
    addon = "bl_ext.user_default.pvp_avatar"
    bpy.ops.extensions.package_install_files(filepath=args["zip"], repo="user_default", enable_on_install=True)
    addon_utils.enable(addon, default_set=True)
    prefs = bpy.context.preferences.addons[addon].preferences
    prefs.interpreter, prefs.source_dir, prefs.device, prefs.batch_size = (
        args["python"], args["source"], args["device"], args["batch"])
    prefs.frame_timeout = 600.0
    session = sys.modules[addon + ".pvp_blender.runtime_session"].SESSION
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

    def cpu_seconds():
        # Blender's own threads, plus the runtime process's CPU and minor page faults (Linux /proc).
        own = resource.getrusage(resource.RUSAGE_SELF)
        try:
            fields = open(f"/proc/{session.pid}/stat").read().rsplit(")", 1)[1].split()
            runtime = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[7])
        except (OSError, TypeError, IndexError, ValueError):
            runtime = 0.0, 0
        return own.ru_utime + own.ru_stime, runtime

    # Warm-up: start the runtime and load the subject (a farm pays this once per chunk).
    scene.frame_set(0)
    started = time.perf_counter()
    bpy.ops.render.render()
    print("RESULT " + json.dumps({"warmup": time.perf_counter() - started,
                                  "threads": session.info.get("threads")}), flush=True)
    scene.frame_start, scene.frame_end = 1, args["frames"]
    for round_index, _ in enumerate(sys.stdin):
        scene.render.filepath = args["out"] + f"/r{round_index}_####"
        before = dict(vars(session.stats))
        blender0, runtime0 = cpu_seconds()
        started = time.perf_counter()
        bpy.ops.render.render(animation=True)
        seconds = time.perf_counter() - started
        blender1, runtime1 = cpu_seconds()
        stats = {k: v - before[k] for k, v in vars(session.stats).items()}
        print("RESULT " + json.dumps({"seconds": seconds, "stats": stats, "blender_cpu": blender1 - blender0,
                                      "runtime_cpu": runtime1[0] - runtime0[0],
                                      "runtime_faults": runtime1[1] - runtime0[1]}), flush=True)
""")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def bare_round(avatar, frames) -> tuple[float, float, int]:
    """(wall s, CPU s, minor page faults) of Avatar.render over frames[1:] in the add-on's batches."""
    cpu, faults, started = cpu_seconds(), minor_faults(), time.perf_counter()
    for start in range(1, len(frames), BATCH):
        avatar.render(frames[start:start + BATCH], batch_size=BATCH, outputs=("linear",))
    return time.perf_counter() - started, cpu_seconds() - cpu, minor_faults() - faults


class BlenderRounds:
    """The Blender process, waiting between rounds."""

    def __init__(self, script: Path, args: dict, env: dict, cwd: Path):
        self.process = subprocess.Popen([sys.executable, str(script), json.dumps(args)], env=env, cwd=cwd,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        self.stderr: list[str] = []
        # stderr is drained on the side so Blender never blocks on a full pipe.
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True).start()
        self.tail: list[str] = []

    def result(self) -> dict:
        for line in self.process.stdout:
            self.tail = (self.tail + [line])[-40:]
            if line.startswith("RESULT "):
                return json.loads(line[7:])
        self.process.wait()
        raise RuntimeError("Blender stopped:\n" + "".join(self.tail) + "".join(self.stderr[-40:]))

    def render_round(self) -> dict:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        return self.result()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16, help="frames per round, after the warm-up frame")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="f")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds of each (alternating)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    config = CONFIGS[args.config]
    keep_freed_memory()  # as the runtime process does, so both sides allocate alike
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
        script = tmp / "render.py"
        script.write_text(BLENDER_SCRIPT)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.update(BLENDER_USER_RESOURCES=str(tmp / "user"), XDG_CACHE_HOME=str(tmp / "cache"))
        blender = BlenderRounds(script, {
            "zip": str(next(dist.glob("*.zip"))), "python": sys.executable, "source": str(REPO),
            "device": args.device, "batch": BATCH, "bundle": str(bundle_path), "clip": str(tmp / "clip.npz"),
            "frames": args.frames, "out": str(tmp / "frames")}, env, tmp)
        avatar.render(frames[:1], batch_size=1)  # the bare warm-up frame
        load_before = os.getloadavg()[0]
        try:
            warmup = blender.result()
            bare, through_blender = [], []
            for index in range(2 * args.rounds):  # bare, Blender, Blender, bare, ...
                if index % 4 in (0, 3):
                    bare.append(bare_round(avatar, frames))
                else:
                    through_blender.append(blender.render_round())
            blender.close()
        except BaseException:
            blender.process.kill()
            raise
        load_after = os.getloadavg()[0]
        written = len(list((tmp / "frames").glob("r*_*.png")))
    requests = -(-args.frames // BATCH)
    for result in through_blender:
        stats = result["stats"]
        if stats["frames_rendered"] != args.frames or stats["requests"] != requests:
            print(f"unfair round: {stats} (expected {requests} requests for {args.frames} frames)", file=sys.stderr)
            return 1
    n = args.frames * args.rounds
    bare_wall, bare_cpu = (sum(r[i] for r in bare) / n for i in (0, 1))
    wall = sum(r["seconds"] for r in through_blender) / n
    blender_cpu = sum(r["blender_cpu"] for r in through_blender) / n
    runtime_cpu = sum(r["runtime_cpu"] for r in through_blender) / n
    bare_faults = ", ".join(f"{r[2] / args.frames:.0f}" for r in bare)
    runtime_faults = ", ".join(f"{r['runtime_faults'] / args.frames:.0f}" for r in through_blender)
    threads = torch.get_num_threads()
    print(f"config {args.config} at 256 x 256, {args.frames} frames x {args.rounds} rounds, device {args.device}, "
          f"batch {BATCH}, torch threads: bare {threads}, runtime {warmup['threads']}; "
          f"load average {load_before:.1f} -> {load_after:.1f}")
    if warmup["threads"] != threads:
        print("WARNING: the runtime and the bare reference use different thread counts: not a fair comparison")
    bare_rounds = ", ".join(f"{r[0] / args.frames:.3f}" for r in bare)
    blender_rounds = ", ".join(f"{r['seconds'] / args.frames:.3f}" for r in through_blender)
    print(f"bare Avatar.render         {bare_wall:8.3f} s/frame   (rounds: {bare_rounds})")
    print(f"Blender animation render   {wall:8.3f} s/frame   (rounds: {blender_rounds}; {written} PNGs written; "
          f"runtime start + subject load + first frame {warmup['warmup']:.1f} s, not counted)")
    print(f"ratio Blender / bare       {wall / bare_wall:8.3f}")
    print(f"CPU s/frame: bare {bare_cpu:.3f}; Blender path {blender_cpu + runtime_cpu:.3f} = runtime process "
          f"{runtime_cpu:.3f} + Blender {blender_cpu:.3f}; ratio {(blender_cpu + runtime_cpu) / bare_cpu:.3f}")
    print(f"minor page faults per frame, by round: bare {bare_faults}; runtime process {runtime_faults}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

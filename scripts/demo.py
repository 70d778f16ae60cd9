"""The main job: render the demo shot headless through the PVP Avatar engine.

    python scripts/demo.py [--output out/demo] [--frames N] [--subject demo/demo.pvp] [--over-background]

(``scripts/demo.sh`` sets up .venv first and runs this.)  Steps, each skipped when its
result is already there and up to date:

1. build the extension zip with Blender's packaging tool and install it into a private
   Blender user folder (OUTPUT/blender-user; your own Blender is not touched);
2. write the shot (scripts/make_demo_shot.py): the head rig bound to the subject, keyed;
3. render it like ``blender -b shot.blend -a`` (scripts/render_shot.py on the bpy wheel):
   the engine starts the runtime process on this interpreter and writes the PNG sequence;
4. encode OUTPUT/demo.mp4 and OUTPUT/contact_sheet.png from the PNGs.

``--over-background``: the same shot over a Cycles set (scripts/demo_background.py), the placed
avatar composited over it; written beside the plain one as OUTPUT/composite_shot.blend,
OUTPUT/composite_frames/, OUTPUT/composite.mp4 and OUTPUT/composite_contact_sheet.png.

Exit status 0 when everything was written; 1 with a one-line reason otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pvp_runtime.bundle import read_manifest  # noqa: E402
from pvp_runtime.contract.errors import PVPError  # noqa: E402
from pvp_runtime.image_io import VideoWriter, contact_sheet, read_png_rgba, write_png  # noqa: E402

DEFAULT_SUBJECT = REPO / "demo" / "demo.pvp"
SHIPPED_WITH_EXTENSION = ("blender_manifest.toml", "__init__.py", "pvp_blender", "pvp_runtime/contract",
                          "pvp_runtime/formats")
FPS = 24


@dataclass(frozen=True)
class ShotFiles:
    """Where one kind of demo shot goes, inside the output folder."""
    prefix: str          # "" for the plain shot, "composite_" for the one over a Cycles set
    video: str
    shot_options: tuple  # for make_demo_shot.py

    def path(self, output: Path, name: str) -> Path:
        return output / (self.prefix + name)


PLAIN = ShotFiles("", "demo.mp4", ())
OVER_BACKGROUND = ShotFiles("composite_", "composite.mp4", ("--over-background",))


class DemoError(Exception):
    pass


def tree_digest(paths) -> str:
    """Content hash of files and folders, so a rebuilt extension or a changed script redoes a step."""
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts) \
            if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(REPO)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


class Step:
    """A build step remembered by a stamp file holding the digest of its inputs."""

    def __init__(self, stamp: Path, digest: str):
        self.stamp, self.digest = stamp, digest

    def done(self) -> bool:
        return self.stamp.is_file() and self.stamp.read_text() == self.digest

    def mark(self) -> None:
        self.stamp.write_text(self.digest)


def blender_environment(output: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(BLENDER_USER_RESOURCES=str(output / "blender-user"), XDG_CACHE_HOME=str(output / "cache"),
               PVP_PYTHON=sys.executable, PVP_RUNTIME_SOURCE=str(REPO))
    return env


def run(label: str, args: list[str], env: dict, timeout: float) -> str:
    started = time.perf_counter()
    try:
        process = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DemoError(f"{label}: no result after {timeout:.0f} s") from None
    if process.returncode != 0:
        lines = [line for line in (process.stderr + process.stdout).splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if line.startswith(("render_shot:", "make_demo_shot:"))),
                      lines[-1] if lines else f"exit code {process.returncode}")
        raise DemoError(f"{label} failed: {reason}")
    print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)
    return process.stdout


def install_extension(output: Path, env: dict) -> None:
    step = Step(output / ".extension", tree_digest(REPO / p for p in SHIPPED_WITH_EXTENSION))
    if step.done():
        print("  extension: installed (unchanged)")
        return
    dist = output / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    run("build extension", [sys.executable, str(REPO / "scripts" / "build_extension.py"), "--output-dir", str(dist)],
        env, 300)
    (zip_path,) = dist.glob("pvp_avatar-*.zip")
    install = ("import bpy, sys\n"
               "bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo='user_default', "
               "enable_on_install=True)\n")
    run("install extension", [sys.executable, "-c", install, str(zip_path)], env, 300)
    step.mark()


def write_shot(output: Path, subject: Path, env: dict, files: ShotFiles) -> Path:
    blend = files.path(output, "shot.blend")
    script = REPO / "scripts" / "make_demo_shot.py"
    step = Step(files.path(output, ".shot"),
                tree_digest([script, REPO / "scripts" / "_headless_blender.py", REPO / "scripts" / "demo_background.py"])
                + str(subject.resolve()) + (output / ".extension").read_text())
    if blend.is_file() and step.done():
        print(f"  shot: {blend} (unchanged)")
        return blend
    run("write shot", [sys.executable, str(script), "--subject", str(subject), "-o", str(blend),
                       "--frames-folder", files.prefix + "frames", *files.shot_options], env, 300)
    step.mark()
    return blend


def render(output: Path, blend: Path, frames: int | None, env: dict, files: ShotFiles) -> list[Path]:
    folder = files.path(output, "frames")
    shot_digest = hashlib.sha256(blend.read_bytes()).hexdigest() + f":{frames}"
    step = Step(files.path(output, ".frames"), shot_digest)
    existing = sorted(folder.glob("frame_*.png"))
    if existing and step.done():
        print(f"  render: {len(existing)} frames in {folder} (unchanged)")
        return existing
    shutil.rmtree(folder, ignore_errors=True)  # frames of another shot or an unfinished render
    args = [sys.executable, str(REPO / "scripts" / "render_shot.py"), str(blend)]
    if frames is not None:
        args += ["-s", "1", "-e", str(frames)]
    run("render (headless Blender, PVP Avatar engine)", args, env, 1800)
    rendered = sorted(folder.glob("frame_*.png"))
    if not rendered:
        raise DemoError(f"render wrote no frames into {folder}")
    step.mark()
    return rendered


def encode(output: Path, frames: list[Path], files: ShotFiles) -> tuple[Path, Path]:
    images = [read_png_rgba(path) for path in frames]
    video, sheet = output / files.video, files.path(output, "contact_sheet.png")
    partial = video.with_suffix(".partial.mp4")
    writer = VideoWriter(partial, FPS, images[0].shape[0])
    for image in images:
        writer.write(image)
    writer.close()
    os.replace(partial, video)
    step = max(1, len(images) // 12)
    chosen = [over_grey(image) for image in images[::step][:12]]
    write_png(sheet, contact_sheet(chosen, columns=6))
    return video, sheet


def over_grey(rgba8):
    """Straight-alpha RGBA over mid grey: the sheet shows the avatar the way the video does, with a
    visible edge."""
    import numpy as np
    alpha = rgba8[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba8[..., :3].astype(np.float32) * alpha + 64.0 * (1.0 - alpha)
    return np.concatenate([rgb.round().astype(np.uint8), np.full_like(rgba8[..., 3:], 255)], axis=-1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=REPO / "out" / "demo", help="where everything goes")
    parser.add_argument("--subject", type=Path, default=DEFAULT_SUBJECT, help="subject bundle (.pvp)")
    parser.add_argument("--frames", type=int, help="render only the first N frames of the shot")
    parser.add_argument("--over-background", action="store_true",
                        help="composite the placed avatar over a Cycles set (files named composite_*)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        if args.frames is not None and args.frames < 1:
            raise DemoError(f"--frames must be at least 1, got {args.frames}")
        manifest = read_manifest(args.subject)  # a missing or broken bundle stops here, in one line
        output = args.output.resolve()
        output.mkdir(parents=True, exist_ok=True)
        env = blender_environment(output)
        print(f"PVP Avatar demo: subject {manifest['name'] if 'name' in manifest else args.subject.name}, "
              f"output {output}", flush=True)
        install_extension(output, env)
        files = OVER_BACKGROUND if args.over_background else PLAIN
        blend = write_shot(output, args.subject, env, files)
        frames = render(output, blend, args.frames, env, files)
        video, sheet = encode(output, frames, files)
    except (DemoError, PVPError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"frames": str(frames[0].parent), "count": len(frames), "video": str(video),
                      "contact_sheet": str(sheet), "blend": str(blend)}, indent=2))
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

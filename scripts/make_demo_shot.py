"""Write the demo shot: a .blend with the PVP head rig bound to a subject and a keyed performance.

Inside Blender (the PVP Avatar extension installed and enabled):

    blender -b --python scripts/make_demo_shot.py -- --subject demo/subject/demo.pvp -o shot.blend
    blender -b shot.blend -a          # render it

or with the bpy wheel (what ``scripts/demo.py`` does): ``python scripts/make_demo_shot.py ...``
with ``BLENDER_USER_RESOURCES`` pointing at a user folder where the extension is installed.

The shot is keyed the way an animator would key it, on the rig's bones and expression
properties with Blender's default Bezier easing: a head turn to either side with a nod, the
jaw opening and closing, a smile, a brow raise, a blink and a glance to the side.  Expression names are those of
the demo subject (its synthetic capture, pvp_runtime/synthetic_head.py): expr_00 smile,
expr_01 brow raise, expr_03 blink.  The subject path is stored relative to the .blend (``//``).
``--over-background`` renders the shot with Cycles over a CG set and composites the placed
avatar over it (scripts/demo_background.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _headless_blender import ENGINE_ID, enable_extension, script_arguments  # noqa: E402
from demo_background import add_background_set  # noqa: E402

# Keys per channel: (frame, value) on a 72-frame shot at 24 fps.  Radians for bones,
# FLAME/PCA units for expressions; all inside the demo subject's training range.
HEAD_YAW = ((1, 0.0), (16, 0.6), (34, -0.6), (50, 0.0))
HEAD_PITCH = ((1, 0.0), (22, 0.18), (40, -0.15), (56, 0.0))
JAW_OPEN = ((1, 0.0), (8, 0.0), (16, 0.4), (26, 0.0))
EXPRESSIONS = {
    "expr_00": ((24, 0.0), (36, 2.5), (52, 0.0)),           # smile
    "expr_01": ((40, 0.0), (50, 2.5), (60, 0.0)),           # brow raise
    "expr_03": ((62, 0.0), (65, 3.0), (68, 0.0)),           # blink
}
# Both eyes glance to the subject's left and back (eye bones are Euler XYZ: Y looks left/right).
GAZE_YAW = ((56, 0.0), (60, 0.3), (68, 0.3), (72, 0.0))
FRAME_END = 72


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make_demo_shot.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subject", type=Path, required=True, help="subject bundle (.pvp)")
    parser.add_argument("-o", "--output", type=Path, required=True, help=".blend to write")
    parser.add_argument("--resolution", type=int, default=256, help="output width and height in pixels")
    parser.add_argument("--frame-end", type=int, default=FRAME_END, help="last frame (keys past it are kept)")
    parser.add_argument("--frames-folder", default="frames", help="image sequence folder, relative to the .blend")
    parser.add_argument("--over-background", action="store_true",
                        help="render a Cycles set (wall, floor, light) and composite the placed avatar over it "
                             "(scripts/demo_background.py)")
    return parser.parse_args(script_arguments())


def key_bone(rig, bone: str, index: int, keys) -> None:
    pose_bone = rig.pose.bones[bone]
    for frame, value in keys:
        pose_bone.rotation_euler[index] = value
        pose_bone.keyframe_insert("rotation_euler", index=index, frame=frame)


def key_property(rig, name: str, keys) -> None:
    for frame, value in keys:
        rig[name] = value
        rig.keyframe_insert(f'["{name}"]', frame=frame)


def build_shot(args: argparse.Namespace) -> None:
    subject = args.subject.resolve()
    if not subject.is_file():
        raise SystemExit(f"make_demo_shot: subject bundle not found: {subject}")
    output = args.output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    enable_extension()
    bpy.context.preferences.filepaths.save_version = 0  # no shot.blend1 backups
    scene = bpy.context.scene
    for obj in list(scene.objects):  # the startup file's cube, light and camera
        bpy.data.objects.remove(obj)
    # Saving first makes `//` mean the shot's folder, so the subject path below is relative.
    partial = output.with_name(output.stem + ".partial.blend")
    bpy.ops.wm.save_as_mainfile(filepath=str(partial))

    scene.render.engine = ENGINE_ID
    scene.render.resolution_x = scene.render.resolution_y = args.resolution
    scene.render.resolution_percentage = 100
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.frame_start, scene.frame_end = 1, args.frame_end
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.filepath = f"//{args.frames_folder}/frame_####"
    scene.render.film_transparent = True
    # "Standard" shows the avatar's colours as fitted; AgX would tone-map them.
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"

    bpy.ops.pvp.add_head_rig(subject_path=bpy.path.relpath(str(subject)))
    rig = bpy.context.object
    if not rig.pvp_rig.subject_status or rig.pvp_rig.num_expressions < 4:
        raise SystemExit(f"make_demo_shot: the rig did not accept {subject}: {rig.pvp_rig.subject_status}")
    key_bone(rig, "head", 1, HEAD_YAW)    # the head bone is Euler XYZ: X pitch, Y yaw, Z roll
    key_bone(rig, "head", 0, HEAD_PITCH)
    key_bone(rig, "jaw", 0, JAW_OPEN)
    for name, keys in EXPRESSIONS.items():
        key_property(rig, name, keys)
    for eye in ("eye.L", "eye.R"):
        key_bone(rig, eye, 1, GAZE_YAW)
    if args.over_background:
        add_background_set(scene, rig, args.frame_end)
    scene.frame_set(1)
    bpy.ops.wm.save_as_mainfile(filepath=str(partial))
    # Only a complete shot gets the real name (the .blend is written last, in one rename).
    partial.replace(output)
    print(f"make_demo_shot: wrote {output} ({args.frame_end} frames, subject {rig.pvp_rig.subject_path}"
          f"{', over a Cycles set' if args.over_background else ''})")


if __name__ == "__main__":
    build_shot(parse_arguments())

"""Operators: add the rig, reset channels, sync to a subject, preview, import a clip, overlay setup,
find an interpreter, free the runtime.  Each is thin; the work is in the modules it calls."""

from __future__ import annotations

import bpy
import numpy as np
from bpy_extras.io_utils import ImportHelper

from ..pvp_runtime.contract.channel_files import SUPPORTED_SUFFIXES
from ..pvp_runtime.contract.channels import DEFAULT_NUM_EXPRESSIONS, ChannelLayout, ChannelStats, normalize_reenactment
from ..pvp_runtime.contract.errors import PVPError
from ..pvp_runtime.formats.arkit_maps import HOW_TO_GET_ONE
from ..pvp_runtime.formats.channel_sources import read_any_channels
from ..pvp_runtime.formats.live_link import capture_frames, is_live_link_csv, read_live_link_csv
from . import animation, compositing, face_controls, flame_mesh, interpreters, viewport, working_space
from . import rig as rig_module
from .latest_only import LatestOnlyWorker
from .placement import frame_front_camera
from .preferences import preferences, runtime_options
from .runtime_session import SESSION
from .shot_frame import render_shot_frame, render_size, shot_frame

DETECTION = LatestOnlyWorker("pvp-detect-interpreter")


def active_rig(context):
    obj = context.object
    if obj is not None and obj.type == "ARMATURE" and obj.pvp_rig.is_rig:
        return obj
    return rig_module.scene_rig(context.scene)


def _has_rig(context) -> bool:
    try:
        active_rig(context)
        return True
    except PVPError:
        return False


class PVP_OT_add_head_rig(bpy.types.Operator):
    """Add a FLAME head rig whose keyframed head, neck, jaw, eye and expression channels drive the avatar"""
    bl_idname = "pvp.add_head_rig"
    bl_label = "Add PVP Head Rig"
    bl_options = {"REGISTER", "UNDO"}

    num_expressions: bpy.props.IntProperty(name="Expressions", default=DEFAULT_NUM_EXPRESSIONS, min=1, max=400,
                                           description="Expression channels (a subject sets its own count)")
    subject_path: bpy.props.StringProperty(name="Subject", subtype="FILE_PATH",
                                           description="Subject bundle (.pvp); can be set later")

    def execute(self, context):
        made_camera = context.scene.camera is None
        rig = rig_module.add_head_rig(context, num_expressions=self.num_expressions)
        if self.subject_path:
            rig.pvp_rig.subject_path = self.subject_path
            problem = rig_module.sync_subject(rig)
            if problem:
                self.report({"WARNING"}, problem)
        prefs = preferences()
        if prefs is not None and prefs.flame_model:
            try:
                flame_mesh.add_flame_mesh(context, rig, prefs.flame_model)
            except PVPError as exc:
                self.report({"WARNING"}, f"no FLAME mesh: {exc}")
        if made_camera:  # frame the subject's head and the FLAME eyes, now that both are known
            frame_front_camera(context.scene.camera, rig, context.scene.render)
        return {"FINISHED"}


class PVP_OT_add_flame_mesh(bpy.types.Operator):
    """Show the posed FLAME mesh on the rig, from the FLAME file set in the add-on preferences (rebuilds it when the rig's expression count changed)"""
    bl_idname = "pvp.add_flame_mesh"
    bl_label = "Show FLAME Mesh"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _has_rig(context)

    def execute(self, context):
        prefs = preferences()
        if prefs is None or not prefs.flame_model:
            self.report({"ERROR"}, "set your FLAME model file in Preferences > Add-ons > PVP Avatar first")
            return {"CANCELLED"}
        try:
            obj = flame_mesh.add_flame_mesh(context, active_rig(context), prefs.flame_model)
        except PVPError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"FLAME mesh '{obj.name}': {len(obj.data.vertices)} vertices")
        return {"FINISHED"}


class PVP_OT_reset_channels(bpy.types.Operator):
    """Put a group of channels back to rest (undoable)"""
    bl_idname = "pvp.reset_channels"
    bl_label = "Reset Channels"
    bl_options = {"REGISTER", "UNDO"}

    group: bpy.props.EnumProperty(items=[(g, g.title(), "") for g in rig_module.GROUPS + ("all",)], default="all")

    @classmethod
    def poll(cls, context):
        return _has_rig(context)

    def execute(self, context):
        rig_module.reset_channels(active_rig(context), self.group)
        return {"FINISHED"}


class PVP_OT_sync_subject(bpy.types.Operator):
    """Read the subject bundle's manifest again and match the rig's expression and edit channels to it"""
    bl_idname = "pvp.sync_subject"
    bl_label = "Sync to Subject"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _has_rig(context)

    def execute(self, context):
        rig = active_rig(context)
        problem = rig_module.sync_subject(rig)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        if rig.pvp_rig.edits_note:
            self.report({"WARNING"}, rig.pvp_rig.edits_note)
        return {"FINISHED"}


class PVP_OT_preview_frame(bpy.types.Operator):
    """Render the current frame of the avatar as F12 would (render size, placed by the camera) into the "PVP Preview" image (shown in Image Editors)"""
    bl_idname = "pvp.preview_frame"
    bl_label = "Preview Frame"

    _future = None
    _timer = None

    @classmethod
    def poll(cls, context):
        return _has_rig(context)

    def _request(self, context):
        working_space.working_space_matrix()  # refuses a working space the preview cannot show, before rendering
        depsgraph = context.evaluated_depsgraph_get()
        return runtime_options(), shot_frame(depsgraph, *render_size(context.scene.render))

    def execute(self, context):  # synchronous: background mode, scripts
        try:
            viewport.write_image(render_shot_frame(*self._request(context)))
        except PVPError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}

    def invoke(self, context, event):  # interactive: render on a worker thread, keep the UI alive
        try:
            request = self._request(context)
        except PVPError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._future = viewport.IMAGE_RENDERS.submit(render_shot_frame, *request)
        self._timer = context.window_manager.event_timer_add(viewport.POLL_SECONDS, window=context.window)
        context.window_manager.modal_handler_add(self)
        context.workspace.status_text_set("PVP Avatar: rendering preview (Esc: stop waiting)")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            return self._finish(context, {"CANCELLED"})
        if event.type != "TIMER" or not self._future.done():
            return {"PASS_THROUGH"}
        if self._future.cancelled():  # a newer Preview Frame replaced this request: it shows its frame
            return self._finish(context, {"CANCELLED"})
        try:
            viewport.write_image(self._future.result())
        except PVPError as exc:
            self.report({"ERROR"}, str(exc))
            return self._finish(context, {"CANCELLED"})
        return self._finish(context, {"FINISHED"})

    def _finish(self, context, result):
        context.window_manager.event_timer_remove(self._timer)
        context.workspace.status_text_set(None)
        return result


class PVP_OT_free_runtime(bpy.types.Operator):
    """Unload the subject from the runtime and release its (GPU) memory; the next render loads it again"""
    bl_idname = "pvp.free_runtime"
    bl_label = "Free Runtime"

    def execute(self, context):
        try:
            running = SESSION.free()
        except PVPError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, "PVP runtime memory released" if running else "PVP runtime is not running")
        return {"FINISHED"}


class PVP_OT_stop_runtime(bpy.types.Operator):
    """End the runtime process (a new one starts with the next render)"""
    bl_idname = "pvp.stop_runtime"
    bl_label = "Stop Runtime"

    def execute(self, context):
        SESSION.shutdown()
        return {"FINISHED"}


class PVP_OT_detect_interpreter(bpy.types.Operator):
    """Look for Python interpreters that can run the PVP runtime ($PVP_PYTHON, a .venv near the extension,
    python3 on PATH) and pick the first that works"""
    bl_idname = "pvp.detect_interpreter"
    bl_label = "Detect Runtime Python"

    _future = None
    _timer = None

    @staticmethod
    def _source_folder() -> str:
        prefs = preferences()
        return interpreters.source_folder(bpy.path.abspath(prefs.source_dir) if prefs else "")

    def execute(self, context):  # synchronous: background mode, scripts
        return self._apply(interpreters.detect_interpreters(interpreters.EXTENSION_DIR, self._source_folder()))

    def invoke(self, context, event):  # interactive: each probe imports torch (seconds), so off the UI thread
        self._future = DETECTION.submit(interpreters.detect_interpreters, interpreters.EXTENSION_DIR,
                                        self._source_folder())
        self._timer = context.window_manager.event_timer_add(viewport.POLL_SECONDS, window=context.window)
        context.window_manager.modal_handler_add(self)
        self.report({"INFO"}, "probing Python interpreters...")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER" or not self._future.done():
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        if self._future.cancelled():  # pressed again: the newer detection reports
            return {"CANCELLED"}
        return self._apply(self._future.result())

    def _apply(self, results):
        prefs = preferences()
        lines = [f"{'ok' if r.ok else 'no'}: {r.interpreter} ({origin}): {r.summary}" for origin, r in results]
        usable = [r for _, r in results if r.ok]
        if prefs is not None:
            prefs.detected = "\n".join(lines) or "no Python interpreter found"
            if usable and not prefs.interpreter:
                prefs.interpreter = usable[0].interpreter
        if not usable:
            self.report({"WARNING"}, "no interpreter with torch and pvp_runtime found; set one by hand")
            return {"CANCELLED"}
        self.report({"INFO"}, f"runtime Python: {usable[0].interpreter} ({usable[0].summary})")
        return {"FINISHED"}


class PVP_OT_import_channels(bpy.types.Operator, ImportHelper):
    """Keyframe a per-frame clip onto the rig: a channel file (.npz .json .csv), DECA or SMIRK codes (.npz), feats.json, a Live Link Face capture (.csv, through an ARKit map), or an EMOCA --save_codes folder (open it, select no file)"""
    bl_idname = "pvp.import_channels"
    bl_label = "Import Channel Clip"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: bpy.props.StringProperty(default=";".join(f"*{s}" for s in SUPPORTED_SUFFIXES),
                                          options={"HIDDEN"})
    start_frame: bpy.props.IntProperty(name="Start frame", default=1, description="Frame of the clip's first sample")
    match_fps: bpy.props.BoolProperty(name="Match scene frame rate", default=True,
                                      description="Space keys by the clip's fps (when it has one) at the scene's fps")
    reenact: bpy.props.BoolProperty(name="Retarget to subject", default=False,
                                    description="Reenactment normalisation: rescale jaw and expression from the "
                                                "clip's own range to the subject's (needs the rig's subject)")
    key_all: bpy.props.BoolProperty(name="Key resting groups", default=False,
                                    description="Also key channel groups that stay at rest for the whole clip "
                                                "(otherwise their existing animation is kept)")
    arkit_map: bpy.props.StringProperty(name="ARKit map", subtype="FILE_PATH",
                                        description="For a Live Link Face capture: the ARKit -> FLAME map (empty: "
                                                    "the rig's, else the one in the add-on preferences)")
    key_arkit: bpy.props.BoolProperty(name="Key ARKit sliders", default=False,
                                      description="For a Live Link Face capture: key the rig's 52 ARKit sliders "
                                                  "(Face panel) so the capture can be edited by name, instead of the "
                                                  "FLAME channels they map to; sets the rig's map")

    @classmethod
    def poll(cls, context):
        return _has_rig(context)

    def execute(self, context):
        try:
            count, frames = import_clip(context.scene, active_rig(context), self.filepath, self.start_frame,
                                        self.match_fps, self.reenact, self.key_all, self.arkit_map, self.key_arkit)
        except PVPError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"keyed {count} channels over {frames} frames")
        return {"FINISHED"}


def import_clip(scene, rig, path: str, start_frame: int, match_fps: bool = True, reenact: bool = False,
                key_all: bool = False, arkit_map: str = "", key_arkit: bool = False) -> tuple[int, int]:
    path = bpy.path.abspath(path)
    if rig.pvp_rig.subject_path:
        subject = SESSION.subject(rig_module.subject_file(rig))
        if subject.layout.num_expressions != rig.pvp_rig.num_expressions:
            rig_module.ensure_expression_properties(rig, subject.layout.num_expressions)
        rig_module.ensure_edit_properties(rig, subject.layout)
        layout, stats = subject.layout, subject.channel_stats
    elif reenact:
        raise PVPError(f"rig '{rig.name}' has no subject: retargeting needs the subject's statistics")
    else:
        layout, stats = ChannelLayout(rig.pvp_rig.num_expressions), None
    scene_fps = scene.render.fps / scene.render.fps_base
    if is_live_link_csv(path):
        return _import_live_link(scene_fps, rig, path, layout, stats, start_frame, match_fps, reenact, key_all,
                                 arkit_map, key_arkit)
    clip = read_any_channels(path, layout)
    frames = clip.frames
    if reenact:
        frames = normalize_reenactment(frames, layout, stats, ChannelStats.of(frames))
    spacing = scene_fps / clip.fps if match_fps and clip.fps else 1.0
    times = start_frame + np.arange(len(frames)) * spacing
    return animation.key_clip(rig, frames, layout, times, key_all), len(frames)


def _import_live_link(scene_fps, rig, path, layout, stats, start_frame, match_fps, reenact, key_all, arkit_map,
                      key_arkit) -> tuple[int, int]:
    """A Live Link Face take through a map (the dialog's, else the rig's, else the preferences'),
    resampled to the scene's fps, keyed one scene frame apart from ``start_frame``."""
    prefs = preferences()
    chosen = arkit_map or rig.pvp_rig.arkit_map or (prefs.arkit_map if prefs else "")
    if not chosen:
        raise PVPError(f"{path}: a Live Link Face capture needs an ARKit map: choose one in the import dialog, on the "
                       f"rig's Face panel or in the add-on preferences ({HOW_TO_GET_ONE})")
    if key_arkit and reenact:
        raise PVPError("retargeting works on FLAME channels: turn off Key ARKit sliders to retarget a capture")
    map_path = bpy.path.abspath(chosen)
    mapping = face_controls.load_map(map_path)
    capture = read_live_link_csv(path)
    if match_fps:
        capture = capture.at_rate(scene_fps)
    if key_arkit and face_controls.map_file(rig) != map_path:
        rig.pvp_rig.arkit_map = chosen  # the sliders mean something only through this map
    frames = capture_frames(capture, mapping, layout, arkit_sliders=key_arkit)
    if reenact:
        frames = normalize_reenactment(frames, layout, stats, ChannelStats.of(frames))
    times = start_frame + np.arange(len(frames), dtype=np.float64)
    count = animation.key_clip(rig, frames, layout, times, key_all)
    if key_arkit:
        face_controls.ensure_properties(rig)
        count += animation.key_properties(rig, face_controls.PROPERTY_NAMES, capture.arkit, times, "Face")
    return count, len(frames)


class PVP_OT_setup_overlay(bpy.types.Operator):
    """Composite the avatar over this scene's own render (Cycles, EEVEE...) in one pass: a second scene renders
    the avatar and the compositor lays it over with Alpha Over"""
    bl_idname = "pvp.setup_overlay"
    bl_label = "Composite Avatar Over Scene"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _has_rig(context)

    def execute(self, context):
        try:
            overlay = compositing.setup_overlay(context.scene, active_rig(context))
        except (PVPError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"avatar renders in scene '{overlay.name}', composited over '{context.scene.name}'")
        return {"FINISHED"}


CLASSES = (PVP_OT_add_head_rig, PVP_OT_add_flame_mesh, PVP_OT_reset_channels, PVP_OT_sync_subject, PVP_OT_preview_frame,
           PVP_OT_free_runtime, PVP_OT_stop_runtime, PVP_OT_detect_interpreter, PVP_OT_import_channels,
           PVP_OT_setup_overlay)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

"""Add-on preferences: which Python runs the runtime, on which device, with which timeouts."""

from __future__ import annotations

import os

import bpy

from . import ADDON_PACKAGE, interpreters
from ..pvp_runtime.contract.client import LaunchSettings
from .runtime_session import SESSION, RuntimeOptions

LOG_KEEP_BYTES = 5 * 1024 * 1024


class PVPAvatarPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    interpreter: bpy.props.StringProperty(
        name="Runtime Python", subtype="FILE_PATH",
        description="Python interpreter with torch and pvp_runtime installed. Empty: $PVP_PYTHON, then a "
                    ".venv next to the extension, then python3 on PATH (press Detect to see what is found)")
    source_dir: bpy.props.StringProperty(
        name="Runtime source folder", subtype="DIR_PATH",
        description="Optional: a PVP Avatar checkout to put on the runtime's PYTHONPATH, for an interpreter "
                    "that has torch but not pvp_runtime installed (falls back to $PVP_RUNTIME_SOURCE)")
    device: bpy.props.EnumProperty(
        name="Device", default="auto",
        items=[("auto", "Automatic", "CUDA when the runtime's torch sees a GPU, else CPU"),
               ("cuda", "CUDA", "The first CUDA GPU"), ("cpu", "CPU", "CPU only")])
    half: bpy.props.BoolProperty(name="Half precision", default=False,
                                 description="float16 synthesis on CUDA (faster, not bit-identical to float32)")
    batch_size: bpy.props.IntProperty(name="Prefetch frames", default=8, min=1, max=64,
                                      description="Frames of an animation render rendered together in one request")
    startup_timeout: bpy.props.FloatProperty(name="Start timeout", default=120.0, min=5.0, max=3600.0,
                                             subtype="TIME_ABSOLUTE", unit="TIME_ABSOLUTE",
                                             description="Seconds the runtime may take to start (importing torch)")
    frame_timeout: bpy.props.FloatProperty(name="Frame timeout", default=60.0, min=1.0, max=3600.0,
                                           subtype="TIME_ABSOLUTE", unit="TIME_ABSOLUTE",
                                           description="Seconds per frame before a render counts as hung")
    detected: bpy.props.StringProperty(name="Detected", options={"SKIP_SAVE"})
    flame_model: bpy.props.StringProperty(
        name="FLAME model", subtype="FILE_PATH",
        description="Your copy of FLAME (generic_model.pkl, flame2023.pkl or .npz; never bundled). When set, "
                    "new head rigs show the posed FLAME mesh")

    arkit_map: bpy.props.StringProperty(
        name="ARKit map", subtype="FILE_PATH",
        description="Default ARKit -> FLAME map for importing Live Link Face captures onto rigs without one "
                    "(our .npz, EMAGE's mat_final.npy or a mediapipe-blendshapes-to-flame mappings folder)")

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        row = col.row(align=True)
        row.prop(self, "interpreter")
        row.operator("pvp.detect_interpreter", text="Detect", icon="VIEWZOOM")
        col.prop(self, "source_dir")
        for line in (self.detected or "").splitlines():
            col.label(text=line, icon="CHECKMARK" if line.startswith("ok") else "ERROR")
        col.separator()
        row = col.row()
        row.prop(self, "device")
        row.prop(self, "half")
        row = col.row()
        row.prop(self, "batch_size")
        row.prop(self, "startup_timeout")
        row.prop(self, "frame_timeout")
        col.separator()
        col.prop(self, "flame_model")
        col.prop(self, "arkit_map")
        col.separator()
        row = col.row()
        row.label(text=f"Runtime: {SESSION.status()}", icon="SYSTEM")
        row.operator("pvp.free_runtime", icon="TRASH")
        if SESSION.log_file:
            col.label(text=f"Runtime log: {SESSION.log_file}", icon="TEXT")


def preferences() -> PVPAvatarPreferences | None:
    addon = bpy.context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon else None


def runtime_options() -> RuntimeOptions:
    """What the preferences (or, without them, the environment) say about starting the runtime.

    Runs on the UI thread, so it probes nothing: an empty interpreter preference stays empty
    here, and the session autodetects one where it starts the runtime (``interpreters.AutoDetect``).
    """
    prefs = preferences()
    source = interpreters.source_folder(bpy.path.abspath(prefs.source_dir) if prefs else "")
    interpreter = bpy.path.abspath(prefs.interpreter) if prefs and prefs.interpreter else ""
    launch = LaunchSettings(interpreter, source_dir=source,
                            startup_timeout=prefs.startup_timeout if prefs else 120.0,
                            frame_timeout=prefs.frame_timeout if prefs else 60.0)
    return RuntimeOptions(launch, device=prefs.device if prefs else "auto", half=bool(prefs and prefs.half),
                          batch_size=prefs.batch_size if prefs else 8)


def register():
    bpy.utils.register_class(PVPAvatarPreferences)
    try:  # user data goes to the extension's user folder, never into the add-on's own folder
        folder = bpy.utils.extension_path_user(ADDON_PACKAGE, create=True)
        SESSION.log_file = os.path.join(folder, "runtime.log")
        if os.path.exists(SESSION.log_file) and os.path.getsize(SESSION.log_file) > LOG_KEEP_BYTES:
            os.replace(SESSION.log_file, SESSION.log_file + ".1")  # keep one old log, not an endless one
    except ValueError:  # installed as a legacy add-on: console log only
        SESSION.log_file = None


def unregister():
    bpy.utils.unregister_class(PVPAvatarPreferences)

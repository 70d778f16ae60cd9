"""Helpers for the Blender extension tests."""

import importlib
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "pvp_avatar_under_test"


def extension_module(name: str):
    """Import an extension module the way Blender does: as a subpackage of a package rooted at the
    repository, so its relative ``..pvp_runtime.contract`` imports resolve (bpy-free modules only)."""
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(REPO)]  # the root __init__ (which registers with Blender) is not run
        sys.modules[PACKAGE] = package
    return importlib.import_module(f"{PACKAGE}.{name}")


def process_gone(pid: int, wait: float = 10.0) -> bool:
    """True once ``pid`` no longer runs (a zombie waiting for a reaper counts as gone)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False



# The Blender environments the end-to-end tests run the extension in: each is a Python with a
# `bpy` wheel (Blender as a module) and numpy.  The runtime the add-on starts is always this
# interpreter (torch), whatever Blender runs the scenario.  PVP_BLENDER_ENVS narrows or extends
# the list: a comma list of names ("5.0" runs only the 5.0.1 wheel) and NAME=PYTHON entries for
# another wheel ("4.5=/tmp/bpy45/bin/python": its bpy version must start with NAME).  Without
# it, every environment below runs, and a missing one fails the tests.
BLENDER_ENVS = {
    "5.0": Path(sys.executable),                     # .venv: bpy==5.0.1 next to torch
    "4.2": REPO / ".venv-bpy42" / "bin" / "python",  # bpy==4.2.23 LTS (scripts/_venv.sh)
    "4.5": REPO / ".venv-bpy45" / "bin" / "python",  # bpy==4.5.15 LTS (scripts/_venv.sh)
}
SETUP_HINT = {
    "5.0": "install the bpy wheel into this environment (pip install -e '.[test,blender]'; scripts/test.sh does)",
    **{name: f"run scripts/test.sh (it creates .venv-bpy{name.replace('.', '')}), or: "
              f"bash -c 'source scripts/_venv.sh && ensure_blender_venv {name}'" for name in ("4.2", "4.5")},
}


def selected_blender_envs(value: str | None = None) -> dict[str, Path]:
    """Blender environment name -> its Python, as PVP_BLENDER_ENVS asks (all known ones if unset)."""
    value = os.environ.get("PVP_BLENDER_ENVS", "") if value is None else value
    selected = {}
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        name, _, python = entry.partition("=")
        if not python and name not in BLENDER_ENVS:
            raise ValueError(f"PVP_BLENDER_ENVS: unknown Blender environment {name!r} (known: "
                             f"{', '.join(BLENDER_ENVS)}; or give NAME=PYTHON)")
        selected[name] = Path(python) if python else BLENDER_ENVS[name]
    return selected or dict(BLENDER_ENVS)


def blender_version(python: Path) -> str | None:
    """The `bpy` version an interpreter imports (e.g. "4.2.23"), or None without one."""
    if not python.exists():
        return None
    probe = subprocess.run([str(python), "-c", "import bpy; print(bpy.app.version_string)"],
                           capture_output=True, text=True, timeout=120,
                           env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")})
    return probe.stdout.split()[0] if probe.returncode == 0 and probe.stdout.strip() else None


# Scenario code shared by every Blender test script: a scene whose saved PNGs equal the runtime's pixels.
PIXEL_EXACT_SCENE = """
def pixel_exact_scene(scene, size=32, first=1, last=6):
    scene.render.engine = "PVP_AVATAR"
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.frame_start, scene.frame_end = first, last
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.view_settings.view_transform = "Standard"  # AgX would tone-map the saved PNGs
    scene.view_settings.look = "None"
    scene.render.dither_intensity = 0.0
"""

# Scenario code for the scripts that draw offscreen (the viewport's drawing code).
GPU_MODULE = """
def start_gpu_module(scene):
    # Background mode leaves the gpu module uninitialised: one render by an engine that asks for
    # a GPU context initialises it.  That engine stays the scene's until the scenario sets another.
    class GLInit(bpy.types.RenderEngine):
        bl_idname = "PVP_TEST_GL"
        bl_label = "GL init"
        bl_use_gpu_context = True
        def render(self, depsgraph):
            self.end_result(self.begin_result(0, 0, 4, 4))
    bpy.utils.register_class(GLInit)
    scene.render.engine = "PVP_TEST_GL"
    bpy.ops.render.render()
"""

INSTALL_PRELUDE = PIXEL_EXACT_SCENE + GPU_MODULE + """
import json, sys
import bpy, addon_utils
ARGS = json.loads(sys.argv[1])
ADDON = "bl_ext.user_default.pvp_avatar"
bpy.ops.extensions.package_install_files(filepath=ARGS["zip"], repo="user_default", enable_on_install=True)
addon_utils.enable(ADDON, default_set=True)

def module(name):
    return sys.modules[ADDON + ".pvp_blender." + name]

def use_this_runtime():
    # The add-on starts the runtime from ARGS' source folder on ARGS' interpreter (this checkout's).
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.interpreter, prefs.source_dir = ARGS["python"], ARGS["source"]
    return prefs

def add_centred_rig(subject_path):
    # A head rig on the subject whose frame is the subject's centred crop (Lock to Frame Centre).
    bpy.ops.pvp.add_head_rig(subject_path=subject_path)
    rig = bpy.context.object
    rig.pvp_rig.lock_to_frame_centre = True
    return rig

def result(**data):
    print("RESULT " + json.dumps(data), flush=True)
"""


def run_blender_scenario(blender_python: Path, root: Path, body: str, timeout: float = 400, **args) -> dict:
    """Build the extension with that Blender's packaging tool, then run ``body`` in a fresh Blender
    (isolated user folder and caches) after installing and enabling it (``INSTALL_PRELUDE``: ARGS, ``module(name)``,
    ``result(**data)``, ``use_this_runtime()``, ``add_centred_rig(path)``, ``pixel_exact_scene(scene)``,
    ``start_gpu_module(scene)``).  Returns what the scenario passed to ``result``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(BLENDER_USER_RESOURCES=str(root / "user"), XDG_CACHE_HOME=str(root / "cache"),
               PVP_PYTHON="", PVP_RUNTIME_SOURCE="")
    subprocess.run([str(blender_python), str(REPO / "scripts" / "build_extension.py"), "--output-dir", str(root)],
                   check=True, capture_output=True, env=env)
    script = root / "scenario.py"
    script.write_text(INSTALL_PRELUDE + body)
    args = {"zip": str(next(root.glob("pvp_avatar-*.zip"))), **args}
    process = subprocess.run([str(blender_python), str(script), json.dumps(args)], env=env, cwd=root,
                             capture_output=True, text=True, timeout=timeout)
    lines = [line[7:] for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    assert process.returncode == 0 and lines, f"{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
    return json.loads(lines[-1])

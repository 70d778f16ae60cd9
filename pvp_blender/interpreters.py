"""Finding a Python interpreter that can run the runtime (torch + pvp_runtime).  No bpy.

Order of preference, used both by the preferences' "Detect" button and,
when the preference is empty, at render time (farm nodes often run Blender
with factory settings):

1. the ``PVP_PYTHON`` environment variable;
2. a virtual environment (``.venv``) in or above the extension's folder, as a
   developer checkout linked into Blender has;
3. ``python3`` / ``python`` on ``PATH``.

The runtime source folder likewise falls back to ``PVP_RUNTIME_SOURCE``.

Probing runs the candidate (importing torch: seconds each), so it never runs on Blender's UI
thread: :class:`AutoDetect` resolves an empty preference where the runtime is started, on the
preview worker or the render thread.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
from pathlib import Path
from typing import Callable, Mapping

from ..pvp_runtime.contract.client import LaunchSettings, ProbeResult, probe_interpreter

ENV_INTERPRETER = "PVP_PYTHON"
ENV_SOURCE = "PVP_RUNTIME_SOURCE"
VENV_NAMES = (".venv", "venv")
PARENT_LEVELS = 3
# The extension's root folder (the one holding pvp_blender/): where a developer's .venv is searched.
EXTENSION_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _venv_python(folder: Path) -> list[Path]:
    return [folder / name / ("Scripts/python.exe" if os.name == "nt" else "bin/python") for name in VENV_NAMES]


def candidate_interpreters(extension_dir: str, env: Mapping[str, str] = os.environ) -> list[tuple[str, str]]:
    """``(where it came from, path)`` in order of preference, existing files only, no duplicates."""
    found: list[tuple[str, str]] = []

    def add(origin: str, path: str | None) -> None:
        if path and os.path.isfile(path) and all(os.path.realpath(path) != os.path.realpath(p) for _, p in found):
            found.append((origin, str(path)))

    if env.get(ENV_INTERPRETER):
        add(f"${ENV_INTERPRETER}", shutil.which(env[ENV_INTERPRETER]) or env[ENV_INTERPRETER])
    folder = Path(extension_dir).resolve() if extension_dir else None
    for _ in range(PARENT_LEVELS + 1):
        if folder is None:
            break
        for python in _venv_python(folder):
            add(f"virtual environment in {folder}", str(python))
        folder = folder.parent if folder.parent != folder else None
    for name in ("python3", "python"):
        add("PATH", shutil.which(name, path=env.get("PATH")))
    return found


def source_folder(preference: str, env: Mapping[str, str] = os.environ) -> str:
    return preference or env.get(ENV_SOURCE, "")


def detect_interpreters(extension_dir: str, source_dir: str = "", env: Mapping[str, str] = os.environ,
                        probe: Callable[..., ProbeResult] = probe_interpreter) -> list[tuple[str, ProbeResult]]:
    """Probe every candidate (each probe imports torch: seconds).  Usable ones first, in preference order."""
    results = [(origin, probe(path, source_dir)) for origin, path in candidate_interpreters(extension_dir, env)]
    return sorted(results, key=lambda item: not item[1].ok)


def choose_interpreter(preference: str, extension_dir: str, source_dir: str = "",
                       env: Mapping[str, str] = os.environ, probe=probe_interpreter) -> str:
    """The interpreter to launch: the preference if set, else the first candidate that works.

    Returns "" when nothing usable was found; the client then says what to set.
    """
    if preference:
        return preference
    if env.get(ENV_INTERPRETER):
        return env[ENV_INTERPRETER]
    for _origin, path in candidate_interpreters(extension_dir, env):
        result = probe(path, source_dir)
        if result.ok:
            return result.interpreter
    return ""


class AutoDetect:
    """Fills in the interpreter of launch settings that leave it empty (no preference), with what
    :func:`choose_interpreter` finds: once per source folder and session, on the calling thread."""

    def __init__(self, extension_dir: str = EXTENSION_DIR, probe: Callable[..., ProbeResult] = probe_interpreter,
                 env: Mapping[str, str] = os.environ):
        self.extension_dir = extension_dir
        self.probe = probe
        self.env = env
        self._found: dict[str, str] = {}  # source folder -> interpreter ("" when none works)
        self._lock = threading.Lock()

    def resolve(self, launch: LaunchSettings) -> LaunchSettings:
        if launch.interpreter:
            return launch
        with self._lock:
            if launch.source_dir not in self._found:
                self._found[launch.source_dir] = choose_interpreter("", self.extension_dir, launch.source_dir,
                                                                    env=self.env, probe=self.probe)
            return dataclasses.replace(launch, interpreter=self._found[launch.source_dir])

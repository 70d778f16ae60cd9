"""Finding a Python interpreter that can run the runtime (torch + pvp_runtime).  No bpy.

Order of preference, used both by the preferences' "Detect" button and,
when the preference is empty, at render time (farm nodes often run Blender
with factory settings):

1. the ``PVP_PYTHON`` environment variable;
2. a virtual environment (``.venv``) in or above the extension's folder, as a
   developer checkout linked into Blender has;
3. ``python3`` / ``python`` on ``PATH``.

The runtime source folder likewise falls back to ``PVP_RUNTIME_SOURCE``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Mapping

from ..pvp_runtime.contract.client import ProbeResult, probe_interpreter

ENV_INTERPRETER = "PVP_PYTHON"
ENV_SOURCE = "PVP_RUNTIME_SOURCE"
VENV_NAMES = (".venv", "venv")
PARENT_LEVELS = 3


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

"""Helpers for the Blender extension tests."""

import importlib
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

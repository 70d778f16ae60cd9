"""Import the extension's bpy-free modules the way Blender does: as subpackages of a package
rooted at the repository (so their relative ``..pvp_runtime.contract`` imports resolve)."""

import importlib
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "pvp_avatar_under_test"


def extension_module(name: str):
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(REPO)]  # the root __init__ (which registers with Blender) is not run
        sys.modules[PACKAGE] = package
    return importlib.import_module(f"{PACKAGE}.{name}")

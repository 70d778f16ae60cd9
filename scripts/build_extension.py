#!/usr/bin/env python3
"""Build the installable Blender extension zip: dist/pvp_avatar-<version>.zip

    python scripts/build_extension.py                 # uses the bpy wheel's tooling, or `blender` on PATH
    python scripts/build_extension.py --validate      # also run Blender's validator on the zip

What goes into the zip is decided by blender_manifest.toml's [build] section (the add-on and the
torch-free contract only).  Blender's own packaging tool does the work: `blender --command extension
build`, or the same code shipped inside the `bpy` wheel (bl_pkg/cli/blender_ext.py, plain Python).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def packaging_tool() -> list[str]:
    spec = importlib.util.find_spec("bpy")  # locates the wheel without importing Blender
    if spec is not None and spec.origin:
        found = sorted(glob.glob(os.path.join(os.path.dirname(spec.origin), "*", "scripts", "addons_core",
                                              "bl_pkg", "cli", "blender_ext.py")))
        if found:
            return [sys.executable, found[-1]]
    blender = shutil.which("blender")
    if blender:
        return [blender, "--factory-startup", "--command", "extension"]
    sys.exit("build_extension: needs the bpy wheel (pip install bpy) or a `blender` executable on PATH")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO / "dist")
    parser.add_argument("--validate", action="store_true", help="validate the built zip as well")
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)  # the tool wants it to exist
    tool = packaging_tool()
    subprocess.run([*tool, "build", "--source-dir", str(REPO), "--output-dir", str(args.output_dir)], check=True)
    if args.validate:
        for zip_path in sorted(args.output_dir.glob("pvp_avatar-*.zip")):
            subprocess.run([*tool, "validate", str(zip_path)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Set up .venv (first run, or when pyproject.toml changed) and the LTS Blenders the extension tests
# also run on (.venv-bpy42, .venv-bpy45), then run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k bundle
# PVP_BLENDER_ENVS=5.0 runs the Blender tests on 5.0.1 only (and sets up no other Blender);
# PVP_BLENDER_ENVS=5.0,4.5 on those two.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv "test,blender"
for name in $EXTRA_BLENDERS; do
    case ",${PVP_BLENDER_ENVS:-$name}," in
        *,"$name",*) ensure_blender_venv "$name" ;;
    esac
done
exec .venv/bin/python -m pytest "$@"

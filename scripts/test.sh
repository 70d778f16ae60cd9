#!/usr/bin/env bash
# Set up .venv (first run, or when pyproject.toml changed) and .venv-bpy42 (Blender 4.2 LTS, the
# second Blender the extension tests run on), then run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k bundle
# PVP_BLENDER_ENVS=5.0 runs the Blender tests on 5.0.1 only (and skips setting up .venv-bpy42).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv "test,blender"
case ",${PVP_BLENDER_ENVS:-4.2}," in
    *,4.2,*) ensure_bpy42_venv ;;
esac
exec .venv/bin/python -m pytest "$@"

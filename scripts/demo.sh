#!/usr/bin/env bash
# The main job: set up .venv if needed, then render the demo shot headless through the
# PVP Avatar engine (PNG sequence, MP4, contact sheet).  Arguments go to scripts/demo.py,
# e.g. scripts/demo.sh --frames 12
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv blender
exec .venv/bin/python scripts/demo.py "$@"

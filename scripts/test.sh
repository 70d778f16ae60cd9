#!/usr/bin/env bash
# Set up .venv (first run, or when pyproject.toml changed) and run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k bundle
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv "test,blender"
exec .venv/bin/python -m pytest "$@"

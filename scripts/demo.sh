#!/usr/bin/env bash
# The main job: set up .venv if needed, then render a subject end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv
mkdir -p out
[ -f out/random.pvp ] || .venv/bin/pvp random-subject out/random.pvp --resolution 128 --width 128 --pivots 8
.venv/bin/pvp example-channels out/head_turn.csv --frames 48
.venv/bin/pvp render out/random.pvp out/head_turn.csv -o out/frames --video --overwrite
echo "frames and video: $(pwd)/out/frames"

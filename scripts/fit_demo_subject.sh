#!/usr/bin/env bash
# Rebuild the shipped demo subject (demo/demo.pvp, demo/report.json, demo/fit_contact_sheet.png,
# demo/control_sheet.png) from nothing: the synthetic capture (its eyes look around), then
# `pvp fit` (scratch prior) with demo/fit_config.json.  About 25 minutes on a 2-core CPU.
# Interrupted?  Run it again: the fit resumes from its checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv blender
[ -f out/capture/channels.csv ] || \
    .venv/bin/python scripts/make_synthetic_capture.py out/capture --frames 720 --size 128 --seed 7 --gaze
if [ -f out/demo_fit/work/checkpoint.safetensors ]; then
    .venv/bin/pvp fit --resume -o out/demo_fit --device cpu
else
    .venv/bin/pvp fit out/capture/frames out/capture/channels.csv -o out/demo_fit --name demo \
        --expressions 10 --landmarks out/capture/landmarks.npy --mattes out/capture/mattes \
        --config demo/fit_config.json --device cpu
fi
cp out/demo_fit/demo.pvp demo/demo.pvp
cp out/demo_fit/report.json demo/report.json
cp out/demo_fit/contact_sheet.png demo/fit_contact_sheet.png
cp out/demo_fit/control_sheet.png demo/control_sheet.png
echo "demo subject rebuilt: demo/demo.pvp (held-out evaluation: demo/report.json)"

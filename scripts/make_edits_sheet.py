"""The README's edit sheet: a subject under two edits at three head poses.

    python scripts/make_edits_sheet.py demo/demo.pvp -o demo/edits_sheet.png [--edits pc00,pc01] [--strength 2.5]

Columns: head yaw at the training clip's mean - 1.5 std, mean, mean + 1.5 std (the bundle's
channel_stats); other channels at their training means.  Rows: no edit, then each edit at
``+strength`` alone.  A subject without edits gets its top two GANSpace components computed in
memory (as ``pvp edits compute -k 2`` would; the bundle is not changed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pvp_runtime.avatar import Avatar  # noqa: E402
from pvp_runtime.bundle import load_bundle  # noqa: E402
from pvp_runtime.contract.atomic_files import replacing  # noqa: E402
from pvp_runtime.editing import compute_ganspace  # noqa: E402
from pvp_runtime.image_io import contact_sheet, write_png  # noqa: E402


def sheet_frames(bundle, names: list[str], strength: float) -> np.ndarray:
    layout = bundle.layout
    stats = bundle.channel_stats
    base = layout.defaults(1)[0]
    base[:layout.rig_size] = stats.mean
    base[layout.index("head_roll")] = 0.0
    yaw = layout.index("head_yaw")
    yaws = stats.mean[yaw] + np.array([-1.5, 0.0, 1.5]) * stats.std[yaw]
    rows = []
    for edit in [None, *names]:
        for value in yaws:
            frame = base.copy()
            frame[yaw] = value
            if edit is not None:
                frame[layout.index(f"edit_{edit}")] = strength
            rows.append(frame)
    return np.stack(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--edits", default="pc00,pc01", help="two edit names (default pc00,pc01)")
    parser.add_argument("--strength", type=float, default=2.5)
    args = parser.parse_args(argv)
    bundle = load_bundle(args.bundle)
    names = [n.strip() for n in args.edits.split(",") if n.strip()]
    if not all(name in {s.name for s in bundle.edits.specs} for name in names):
        bundle.edits = compute_ganspace(bundle, max(2, len(names)))
    avatar = Avatar(bundle, device="cpu")
    images = avatar.render(sheet_frames(bundle, names, args.strength), outputs=("srgb8",)).srgb8
    with replacing(args.output) as tmp:
        write_png(tmp, contact_sheet(list(images), columns=3))
    for spec in bundle.edits.specs:
        if spec.name in names:
            print(spec.describe())
    print(f"wrote {args.output}: rows none, {', '.join(names)} at +{args.strength:g}; columns yaw -1.5/0/+1.5 std")
    return 0


if __name__ == "__main__":
    sys.exit(main())

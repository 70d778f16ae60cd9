"""``pvp info BUNDLE``: what a subject bundle holds, without loading its tensors."""

from __future__ import annotations

import json
from pathlib import Path

from ..bundle import read_manifest
from ..contract.subject_manifest import DEFAULT_EYE_DISTANCE, DEFAULT_HEAD_CENTRE
from ..contract.subject_manifest import has_alpha


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("info", help="describe a subject bundle",
                                   description="Print a subject bundle's manifest: resolution, latent sizes, "
                                               "pivot and expression counts, and where it came from.")
    parser.add_argument("bundle", type=Path, help="subject bundle (.pvp)")
    parser.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    parser.set_defaults(run=run)


def run(args) -> int:
    manifest = read_manifest(args.bundle)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    g = manifest["generator"]
    provenance = manifest.get("provenance", {})
    lines = [
        f"subject        {manifest.get('name')}",
        f"format         {manifest['format']} v{manifest['format_version']}",
        f"resolution     {manifest['resolution']} x {manifest['resolution']}",
        f"latent         W+ {manifest['num_ws']} x {manifest['w_dim']}",
        f"generator      channel_base {g['channel_base']}, channel_max {g['channel_max']}, "
        f"mapping {g['mapping_layers']} layers",
        f"pivots         {manifest['num_pivots']}",
        f"expressions    {manifest['num_expressions']}",
        "gaze           " + ("the eye channels drive it" if manifest["mappers"].get("gaze") is True
                             else "none: the eye channels have no effect (its capture had no gaze)"),
        "alpha          " + ("learnt from the fit's mattes (matte head)" if has_alpha(manifest)
                             else "none: alpha is 1 everywhere (fitted without --mattes)"),
        f"roll centre    {manifest.get('framing', {}).get('roll_center')}",
        "head in crop   centre {}, eye distance {} (placement in a shot)".format(
            manifest.get("framing", {}).get("head_centre", list(DEFAULT_HEAD_CENTRE)),
            manifest.get("framing", {}).get("eye_distance", DEFAULT_EYE_DISTANCE)),
        f"channels       {len(manifest['channels']['names'])}",
        "edits          " + (", ".join(f"edit_{e['name']}" for e in manifest["edits"]) if manifest.get("edits")
                             else "none (pvp edits compute / add)"),
    ]
    for key in sorted(provenance):
        value = provenance[key]
        if not isinstance(value, (dict, list)):
            lines.append(f"{key:<15}{value}")
    print("\n".join(lines))
    return 0

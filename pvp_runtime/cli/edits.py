"""``pvp edits compute|add|list|remove``: the appearance edits a subject bundle carries.

Each edit becomes the channel ``edit_<name>`` (keyable in Blender, a column in channel files).
Every command that changes a bundle writes ``-o OUT.pvp`` atomically (it may be the input) and
only after every check passed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..bundle import load_bundle, save_bundle
from ..contract.channels import EditChannel
from ..contract.edits import EditSpec, check_range, parse_layers
from ..contract.errors import PVPError
from ..editing import DEFAULT_SAMPLES, compute_ganspace, read_direction

log = logging.getLogger("pvp.edits")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("edits", help="list, compute, import and remove appearance edits",
                                   description="Appearance edits: named W+ directions a subject carries, "
                                               "keyed as edit_<name> channels.")
    commands = parser.add_subparsers(dest="edits_command", metavar="ACTION")
    commands.required = True

    listing = commands.add_parser("list", help="one edit per line: channel, kind, layers, range, scale, source")
    listing.add_argument("bundle", type=Path)
    listing.set_defaults(run=run_list)

    compute = commands.add_parser("compute", help="GANSpace: PCA over the subject's latent codes",
                                  description="Add the top K GANSpace components as edits pc00.. (replacing "
                                              "edits of those names). Pretrained prior: PCA over W sampled from "
                                              "the mapping network. Scratch prior: over the pivots and the "
                                              "mappers' codes for frames drawn from the bundle's channel "
                                              "statistics (see README, 'Appearance edits').")
    compute.add_argument("bundle", type=Path)
    compute.add_argument("-o", "--output", type=Path, required=True, help="edited bundle (.pvp)")
    compute.add_argument("-k", type=int, default=10, help="components to keep (default 10)")
    compute.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="codes sampled (default 4096)")
    compute.add_argument("--seed", type=int, default=0)
    compute.add_argument("--strength", type=float, default=3.0,
                         help="slider range +-STRENGTH standard deviations (default 3)")
    compute.set_defaults(run=run_compute)

    add = commands.add_parser("add", help="import a direction (InterFaceGAN .npy boundary, e4e .pt)")
    add.add_argument("bundle", type=Path)
    add.add_argument("name", help="edit name: lower-case letters, digits, '_' (channel edit_NAME)")
    add.add_argument("direction", type=Path, help="(1, w_dim) .npy boundary, or an e4e .pt direction / GANSpace PCA")
    add.add_argument("--layers", default=":", help="W+ layers A:B it acts on (default: all)")
    add.add_argument("--range", nargs=2, type=float, default=(-3.0, 3.0), metavar=("LOW", "HIGH"),
                     help="strength range (default -3 3)")
    add.add_argument("--component", type=int, help="which component of a GANSpace PCA file")
    add.add_argument("-o", "--output", type=Path, required=True, help="edited bundle (.pvp)")
    add.set_defaults(run=run_add)

    remove = commands.add_parser("remove", help="remove an edit")
    remove.add_argument("bundle", type=Path)
    remove.add_argument("name", help="edit name (with or without edit_)")
    remove.add_argument("-o", "--output", type=Path, required=True, help="edited bundle (.pvp)")
    remove.set_defaults(run=run_remove)


def run_list(args) -> int:
    bundle = load_bundle(args.bundle)
    for spec in bundle.edits.specs:
        print(spec.describe())
    if not len(bundle.edits):
        log.info("%s carries no edits", args.bundle)
    return 0


def run_compute(args) -> int:
    if not 1 <= args.samples <= 1 << 20:
        raise PVPError(f"--samples must be in 1..{1 << 20}, got {args.samples}")
    EditChannel("pc00", -args.strength, args.strength)  # the range, checked before any work
    bundle = load_bundle(args.bundle)
    bundle.edits = compute_ganspace(bundle, args.k, args.samples, args.seed, strength=args.strength)
    save_bundle(bundle, args.output)
    print(f"wrote {args.output} with {len(bundle.edits)} edits")
    return 0


def run_add(args) -> int:
    name = args.name[len("edit_"):] if args.name.startswith("edit_") else args.name
    low, high = check_range(args.range)
    EditChannel(name, low, high)  # a clear error for a bad name, before reading anything else
    bundle = load_bundle(args.bundle)
    if name in {spec.name for spec in bundle.edits.specs}:
        raise PVPError(f"{args.bundle}: already has an edit '{name}' (pvp edits remove it first)")
    config = bundle.generator.config
    layers = parse_layers(args.layers, config.num_ws)
    vector, kind, scale = read_direction(args.direction, config.w_dim, args.component)
    component = "" if args.component is None else f" component {args.component}"
    spec = EditSpec(name, kind, layers, (low, high), scale, f"{args.direction.name}{component}")
    bundle.edits = bundle.edits.with_edit(spec, torch.from_numpy(vector))
    save_bundle(bundle, args.output)
    print(f"wrote {args.output}: edit_{name} ({kind}, layers {layers[0]}:{layers[1]})")
    return 0


def run_remove(args) -> int:
    name = args.name[len("edit_"):] if args.name.startswith("edit_") else args.name
    bundle = load_bundle(args.bundle)
    names = [spec.name for spec in bundle.edits.specs]
    if name not in names:
        raise PVPError(f"{args.bundle}: no edit '{name}' (it has: {', '.join(names) or 'none'})")
    bundle.edits = bundle.edits.without(name)
    save_bundle(bundle, args.output)
    print(f"wrote {args.output} without edit_{name}")
    return 0

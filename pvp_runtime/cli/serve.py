"""``pvp serve``: the runtime process the Blender extension talks to (same as ``python -m pvp_runtime.server``)."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the runtime process for the Blender extension",
        description="Serve render requests on stdin/stdout with the PVP runtime protocol "
                    "(pvp_runtime/contract/protocol.py). The Blender extension starts this itself; run it by hand "
                    "with --probe to check that a machine (a farm node) can render: it prints this interpreter's "
                    "torch version and GPU as JSON.")
    parser.add_argument("--probe", action="store_true", help="print what this interpreter can do, as JSON, and exit")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is no longer the parent")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..server import main as server_main
    argv = ["--probe"] if args.probe else []
    if args.parent_pid:
        argv += ["--parent-pid", str(args.parent_pid)]
    if getattr(args, "verbose", False):
        argv.append("--verbose")
    return server_main(argv)

"""``pvp``: the command line.  Each subcommand lives in its own module of this package.

Conventions: ``--help`` everywhere, logging to stderr (``-v`` for debug,
``-q`` for warnings only), tqdm progress bars on interactive terminals, and a
one-line ``pvp: error: ...`` with a non-zero exit for anything the user can fix.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from ..contract.errors import PVPError
from ..host_memory import keep_freed_memory
from . import convert_channels, edits, examples, fit, import_generator, info, learn_arkit_map, render, serve, verify

COMMANDS = (info, render, verify, examples, import_generator, convert_channels, learn_arkit_map, fit, edits, serve)
log = logging.getLogger("pvp")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pvp", description="PVP Avatar: render and fit personalized StyleGAN2 heads driven by FLAME channels.")
    parser.add_argument("--version", action="version", version=f"pvp-avatar {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in COMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    keep_freed_memory()  # renders and fits reuse the same large activations every step
    try:
        return int(args.run(args) or 0)
    except PVPError as exc:
        print(f"pvp: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pvp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``escale`` entry point: subcommands from ``COMMANDS``; EscaleError -> one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from escale.errors import EscaleError

# Each module escale.cli.cmd_<name> defines ``register(subparsers)`` setting ``func(args) -> int``.
COMMANDS = ("profile", "spec")
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="escale", description="Generate, profile, search and report ESeg segmentation networks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"escale.cli.cmd_{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EscaleError as exc:
        if os.environ.get("ESCALE_DEBUG"):
            raise
        print(f"escale: error: {exc}", file=sys.stderr)  # one line; ESCALE_DEBUG=1 for the traceback
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("escale: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``escale`` entry point: subcommands from ``COMMANDS``; EscaleError -> one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from escale.errors import EscaleError, SpecNote

EXIT_USAGE = 2


def command_modules() -> list[str]:
    """Every module ``escale.cli.cmd_<name>``; each defines ``register(subparsers)`` setting ``func(args) -> int``."""
    import pkgutil

    import escale.cli

    return sorted(m.name for m in pkgutil.iter_modules(escale.cli.__path__) if m.name.startswith("cmd_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="escale", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Generate, profile, search and report ESeg segmentation networks.\n`escale COMMAND --help` "
                    "shows an example of each command; `escale paths` shows where results go ($ESCALE_HOME).",
        epilog="Example:\n  escale profile --family eseg")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in command_modules():
        importlib.import_module(f"escale.cli.{name}").register(sub)
    return parser


def _show_note(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Notes escale gives on the user's behalf (``SpecNote``) as one line; other warnings as Python prints them."""
    if issubclass(category, SpecNote):
        print(f"escale: note: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by commands that write reports
    with warnings.catch_warnings():
        warnings.simplefilter("default", SpecNote)
        warnings.showwarning = _show_note
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except EscaleError as exc:
        if os.environ.get("ESCALE_DEBUG"):
            raise
        print(f"escale: error: {exc}", file=sys.stderr)  # one line; ESCALE_DEBUG=1 for the traceback
        return getattr(exc, "exit_code", EXIT_USAGE)
    except KeyboardInterrupt:
        print("escale: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

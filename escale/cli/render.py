"""Rendering of records in one place: rich tables to stdout, JSON/CSV for machines, progress on stderr."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table

from escale.cli.progress import ProgressAdapter, reporter

FORMATS = ("table", "json", "csv")
stdout = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True)


def error(message: str) -> None:
    """One plain line on stderr (no wrapping, no markup)."""
    print(f"escale: error: {message}", file=sys.stderr)


def emit_json(rows: list[dict[str, Any]]) -> None:
    sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")


def emit_csv(rows: list[dict[str, Any]]) -> None:
    """CSV of the flat (non-dict, non-list) fields of each row."""
    if not rows:
        return
    keys: list[str] = []
    for r in rows:
        keys += [k for k, v in r.items() if k not in keys and not isinstance(v, (dict, list))]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k) for k in keys})
    sys.stdout.write(buf.getvalue())


def emit_machine(rows: list[dict[str, Any]], fmt: str) -> bool:
    """Write ``rows`` as JSON or CSV when ``fmt`` asks for it; False for ``table`` (the caller renders)."""
    if fmt == "json":
        emit_json(rows)
        return True
    if fmt == "csv":
        emit_csv(rows)
        return True
    return False


def table(title: str, columns: list[tuple[str, str]], rows: Iterable[list[str]], caption: str = "") -> None:
    """Print a rich table; ``columns`` are (header, justify) pairs."""
    t = Table(title=title, caption=caption, caption_justify="left")
    for header, justify in columns:
        t.add_column(header, justify=justify)
    for row in rows:
        t.add_row(*row)
    stdout.print(t)


@contextmanager
def progress(enabled: bool) -> Iterator[ProgressAdapter | None]:
    """Progress on stderr with rich's ``add_task``/``update``/``advance`` calls, or None when disabled:
    a bar in a terminal, plain lines in logs (see :mod:`escale.cli.progress`, the API to use)."""
    if not enabled:
        yield None
        return
    with reporter(live=True, console=stderr) as rep:
        yield ProgressAdapter(rep)


def fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"

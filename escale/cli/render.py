"""Rendering of records in one place: rich tables to stdout, JSON/CSV for machines (progress: escale.cli.progress)."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "csv")
# In a terminal rich follows its width; in logs and pipes, $COLUMNS if set, else 200 characters.
stdout = Console(soft_wrap=False, width=None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or 200))


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
    """Print a rich table; ``columns`` are (header, justify) pairs. Nothing is ever cut to "…".

    Right-justified (numeric) columns keep their full width; left-justified text may wrap inside its cell
    when that makes the table fit the terminal. A table that cannot fit is printed at its natural width
    (the terminal wraps the lines) rather than cut.
    """
    rows = [list(r) for r in rows]
    t = Table(title=title)
    natural = squeezed = 1
    for i, (header, justify) in enumerate(columns):
        longest = max([len(header)] + [len(r[i]) for r in rows])
        numeric = justify == "right"
        width = longest if numeric else min(longest, TEXT_MIN_WIDTH)
        t.add_column(header, justify=justify, no_wrap=numeric, overflow="fold", min_width=width)
        natural, squeezed = natural + longest + 3, squeezed + width + 3
    for row in rows:
        t.add_row(*row)
    width = stdout.width
    try:  # Console.print(width=) cannot exceed the console's width: widen the console for this table
        stdout.width = width if squeezed <= width else natural
        stdout.print(t, crop=False)
    finally:
        stdout.width = width
    if caption:  # below the table at the terminal's width, not squeezed to a narrow table's
        stdout.print(caption, highlight=False, markup=False)


TEXT_MIN_WIDTH = 12  # a text column narrower than its longest cell wraps inside the cell, never below this


def fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"

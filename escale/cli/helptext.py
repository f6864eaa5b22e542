"""``--help`` texts: a wrapped description and an ``Example:`` epilog shown as written."""

from __future__ import annotations

import argparse
import shutil
import textwrap
from typing import Any

from escale.spec import FAMILIES

FAMILY_HELP = ("preset family to profile when --records is not given: eseg = all six Table-3 models (default), "
               "eseg-lite = ESeg-Lite-S/M/L, eseg-full = ESeg-S/M/L only")


def with_example(description: str, *examples: str) -> dict[str, Any]:
    """Keyword arguments for ``add_parser``: ``description`` wrapped to the terminal (paragraphs kept) and
    ``Example:`` lines kept verbatim (``RawDescriptionHelpFormatter``)."""
    width = max(40, min(shutil.get_terminal_size().columns - 2, 110))
    paragraphs = [textwrap.fill(" ".join(p.split()), width) for p in description.split("\n\n") if p.strip()]
    epilog = "Example:\n" + "\n".join(f"  {line}" for line in examples)
    return {"description": "\n\n".join(paragraphs), "epilog": epilog,
            "formatter_class": argparse.RawDescriptionHelpFormatter}


def add_family_argument(p: argparse.ArgumentParser) -> None:
    """``--family`` as a checked choice, with each family's models in the help."""
    p.add_argument("--family", choices=sorted(FAMILIES), default="eseg", help=FAMILY_HELP)

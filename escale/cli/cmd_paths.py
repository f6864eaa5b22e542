"""``escale paths``: where escale reads and writes by default (see :mod:`escale.paths`)."""

from __future__ import annotations

import argparse

from escale.cli import render
from escale.cli.helptext import with_example

MEANING = {
    "home": "what escale writes for you ($ESCALE_HOME > source checkout's reports/ > $XDG_DATA_HOME/escale)",
    "home_from": "which rule chose home",
    "reference": "committed reference results: read, written only when asked",
    "studies": "Optuna studies (propose, study, plot study, report --study)",
    "proposals": "proposal spec YAMLs (propose)",
    "lut_build": "tables written by lut build",
    "lut_search": "tables propose looks up, in order",
    "lut_calibrations": "per-machine calibrations of tables (lut calibrate, propose)",
    "fingerprint_cache": "cached machine performance fingerprints (24 h)",
    "plots": "figures (plot)",
    "study_reports": "report --study NAME",
    "family_report": "report (without --study)",
    "bench": "benchmarks/*.py (without --update-reference)",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("paths", help="show the default folders escale reads and writes",
                       **with_example("The default locations, resolved now. None depends on the current directory; "
                                      "set $ESCALE_HOME to move everything escale writes for you.",
                                      "ESCALE_HOME=/data/escale escale paths --format json"))
    p.add_argument("--format", choices=render.FORMATS, default="table", help="output format")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from escale.paths import locations

    rows = [{"name": k, "path": v or "-", "meaning": MEANING.get(k, "")} for k, v in locations().items()]
    if render.emit_machine(rows, args.format):
        return 0
    render.table("escale default locations", [("name", "left"), ("path", "left"), ("meaning", "left")],
                 [[r["name"], r["path"], r["meaning"]] for r in rows])
    return 0

"""``escale backends``: every latency backend, per device, available or not and why."""

from __future__ import annotations

import argparse

from escale.cli import render
from escale.cli.helptext import with_example


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backends", help="list latency backends and whether they can run here",
                       **with_example("Latency backends (escale profile --latency NAME): devices, precisions, "
                                      "options and, where one cannot run here, the reason.",
                                      "escale backends --format json"))
    p.add_argument("--format", choices=render.FORMATS, default="table", help="output format")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from escale.profiler.latency import backend_table

    rows = backend_table()
    if args.format == "json":
        render.emit_json(rows)
    elif args.format == "csv":
        render.emit_csv([{**r, "precisions": " ".join(r["precisions"]),
                          "options": " ".join(f"{k}={v}" for k, v in r["options"].items())} for r in rows])
    else:
        columns = [("backend", "left"), ("device", "left"), ("available", "left"), ("precisions", "left"),
                   ("options (default)", "left"), ("reason", "left")]
        table_rows = [[r["backend"], r["device"], "yes" if r["available"] else "no", ", ".join(r["precisions"]),
                       ", ".join(f"{k}={v}" for k, v in r["options"].items()), r["reason"]] for r in rows]
        render.table("Latency backends", columns, table_rows,
                     "Use: escale profile SPEC --latency BACKEND --device DEV --precision P "
                     "[--latency-opt KEY=VALUE]. TensorRT is unverified on the project machines.")
    return 0

"""``escale report``: a markdown page with the family table, the environment, figures and a study's front."""

from __future__ import annotations

import argparse

from escale.cli.cmd_plot import family_records
from escale.cli.helptext import add_family_argument, with_example


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a markdown report page (family table, figures, study front)",
                       **with_example("Write OUT/README.md with the family table (params, FLOPs at 1024x2048, "
                                      "paper deviation, latency where measured), figures and, with --study, the "
                                      "study's Pareto front. Without --out it regenerates the checkout's committed "
                                      "reports/eseg-family/ (its purpose; `make report`), or writes "
                                      "<home>/study-reports/NAME/ with --study.",
                                      "escale report --study my-study --records reports/eseg-family/records.json"))
    p.add_argument("--study", default=None, metavar="NAME", help="add this study's trials and Pareto front")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage URL (default sqlite:///<home>/studies/NAME.db)")
    p.add_argument("--records", default=None, metavar="FILE",
                   help="profile records as JSON (escale profile --format json, with latency if measured); "
                        "default: profile the family now (params and FLOPs only)")
    add_family_argument(p)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: the checkout's reports/eseg-family, or <home>/study-reports/NAME "
                        "with --study)")
    p.set_defaults(func=run)


def default_out(study: str | None) -> str:
    from escale.paths import family_report_dir, study_report_dir

    return str(study_report_dir(study) if study else family_report_dir())


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from escale.report import load_study, write_report
    from escale.report.style import check_writable

    study = load_study(args.study, args.storage) if args.study else None  # fail fast before profiling
    out = args.out or default_out(args.study)
    check_writable(Path(out) / "README.md")
    title = f"Study {args.study}: ESeg family and Pareto front" if args.study else "ESeg family report"
    paths = write_report(out, family_records(args), study=study, title=title)
    print(paths[0])
    return 0

"""``escale plot``: publication figures (PDF + PNG) from the paper's tables, the family, or a study."""

from __future__ import annotations

import argparse

from escale.cli import render


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="draw figures (PDF + PNG): family, paper, study, breakdown",
                       description="Draw publication figures; each is written as PATH.pdf and PATH.png.")
    kinds = p.add_subparsers(dest="plot_kind", metavar="KIND")
    kinds.required = True

    fam = kinds.add_parser("family", help="the ESeg family on an x axis (flops, params, latency, fps) vs mIoU")
    fam.add_argument("--x", default="flops", help="x axis: flops (default), params, latency, fps")
    fam.add_argument("--y", default="miou", help="y axis: miou (default), flops, params, latency, fps")
    _records_args(fam)
    fam.add_argument("--out", default="reports/plots/family", metavar="PATH", help="output path (no suffix)")
    fam.set_defaults(func=run_family)

    paper = kinds.add_parser("paper", help="redraw the paper's Figure 1 (size vs mIoU) or 4 (FPS vs mIoU)")
    paper.add_argument("--figure", required=True, help="1 (params/FLOPs vs mIoU) or 4 (FPS vs mIoU)")
    _records_args(paper)
    paper.add_argument("--out", default=None, metavar="PATH", help="output path (default reports/plots/figureN)")
    paper.set_defaults(func=run_paper)

    study = kinds.add_parser("study", help="a study's trials and Pareto front (max mIoU, min cost)")
    study.add_argument("name", metavar="NAME", help="study name (escale propose --study-name)")
    study.add_argument("--storage", default=None, metavar="URL",
                       help="Optuna storage URL (default sqlite:///reports/studies/NAME.db)")
    study.add_argument("--out", default=None, metavar="PATH", help="output path (default reports/plots/study-NAME)")
    study.set_defaults(func=run_study)

    brk = kinds.add_parser("breakdown", help="share of MACs per part and per pyramid level")
    _records_args(brk)
    brk.add_argument("--out", default="reports/plots/flops-breakdown", metavar="PATH", help="output path")
    brk.set_defaults(func=run_breakdown)


def _records_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--records", default=None, metavar="FILE",
                   help="profile records as JSON (escale profile --format json); default: profile the family")
    p.add_argument("--family", default="eseg", help="preset family to profile when --records is not given")


def family_records(args: argparse.Namespace) -> list:
    """Saved records from ``--records``, or a fresh profile of ``--family`` at 1024x2048 (params, MACs)."""
    from escale.report import load_records

    if args.records:
        return load_records(args.records)
    from escale.profiler import profile
    from escale.spec import family

    specs = family(args.family)
    records = []
    with render.progress(True) as bar:
        task = bar.add_task("profiling", total=len(specs)) if bar else None
        for spec in specs:
            records.append(profile(spec))
            if bar:
                bar.advance(task)
    return records


def _written(paths: list) -> int:
    for path in paths:
        print(path)
    return 0


def run_family(args: argparse.Namespace) -> int:
    from escale.report import axis, family_table, plot_family, save_figure
    from escale.report.style import check_writable

    axis(args.x, "--x")  # fail fast on an unknown axis or unwritable path, before profiling
    axis(args.y, "--y")
    check_writable(args.out)
    table = family_table(family_records(args))
    return _written(save_figure(plot_family(table, args.x, args.y), args.out))


def run_paper(args: argparse.Namespace) -> int:
    from escale.errors import EscaleError
    from escale.report import FIGURES, family_table, paper_figure, save_figure
    from escale.report.style import check_writable

    if str(args.figure) not in FIGURES:
        raise EscaleError(f"--figure: {args.figure!r} is unknown (allowed: {', '.join(FIGURES)})")
    out = args.out or f"reports/plots/figure{args.figure}"
    check_writable(out)
    table = family_table(family_records(args))
    return _written(save_figure(paper_figure(args.figure, table), out))


def run_study(args: argparse.Namespace) -> int:
    from escale.report import cost_axis, load_study, plot_study_front, save_figure, study_budget, trials_frame

    study = load_study(args.name, args.storage)
    fig = plot_study_front(trials_frame(study), cost_axis(study)[1], args.name, budget=study_budget(study))
    return _written(save_figure(fig, args.out or f"reports/plots/study-{args.name}"))


def run_breakdown(args: argparse.Namespace) -> int:
    from escale.report import plot_flops_breakdown, save_figure
    from escale.report.style import check_writable

    check_writable(args.out)
    return _written(save_figure(plot_flops_breakdown(family_records(args)), args.out))

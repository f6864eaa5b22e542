"""``escale plot``: publication figures (PDF + PNG) from the paper's tables, the family, or a study."""

from __future__ import annotations

import argparse

from escale.cli import progress
from escale.cli.helptext import add_family_argument, with_example

OUT_NOTE = "Without --out, figures go to <home>/plots/ (`escale paths` shows where; in a checkout reports/plots/)."


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="draw figures (PDF + PNG): family, paper, study, breakdown",
                       **with_example("Draw publication figures; each is written as PATH.pdf and PATH.png. "
                                      + OUT_NOTE, "escale plot paper --figure 1"))
    kinds = p.add_subparsers(dest="plot_kind", metavar="KIND")
    kinds.required = True

    fam = kinds.add_parser("family", help="the ESeg family on an x axis (flops, params, latency, fps) vs mIoU",
                           **with_example("The ESeg family (profiled now, or --records) on two axes. " + OUT_NOTE,
                                          "escale plot family --x params --y miou --family eseg-lite --out fig/family"))
    fam.add_argument("--x", default="flops", help="x axis: flops (default), params, latency, fps")
    fam.add_argument("--y", default="miou", help="y axis: miou (default), flops, params, latency, fps")
    _records_args(fam)
    fam.add_argument("--out", default=None, metavar="PATH", help="output path, no suffix (default <home>/plots/family)")
    fam.set_defaults(func=run_family)

    paper = kinds.add_parser("paper", help="redraw the paper's Figure 1 (size vs mIoU) or 4 (FPS vs mIoU)",
                             **with_example("The paper's Figure 1 (Table 4) or Figure 4 (Table 6) with escale's own "
                                            "params/FLOPs beside the published points. " + OUT_NOTE,
                                            "escale plot paper --figure 4 --records reports/eseg-family/records.json"))
    paper.add_argument("--figure", required=True, help="1 (params/FLOPs vs mIoU) or 4 (FPS vs mIoU)")
    _records_args(paper)
    paper.add_argument("--out", default=None, metavar="PATH", help="output path (default <home>/plots/figureN)")
    paper.set_defaults(func=run_paper)

    study = kinds.add_parser("study", help="a study's trials and Pareto front (max mIoU, min cost)",
                             **with_example("A saved study's trials, dominated ones grey, presets marked. " + OUT_NOTE,
                                            "escale plot study my-study --out fig/my-study"))
    study.add_argument("name", metavar="NAME", help="study name (escale propose --study-name)")
    study.add_argument("--storage", default=None, metavar="URL",
                       help="Optuna storage URL (default sqlite:///<home>/studies/NAME.db)")
    study.add_argument("--out", default=None, metavar="PATH", help="output path (default <home>/plots/study-NAME)")
    study.set_defaults(func=run_study)

    brk = kinds.add_parser("breakdown", help="share of MACs per part and per pyramid level",
                           **with_example("Share of multiply-adds per part (encoder/decoder/head) and per pyramid "
                                          "level, for each model. " + OUT_NOTE,
                                          "escale plot breakdown --family eseg-full"))
    _records_args(brk)
    brk.add_argument("--latency", action="store_true",
                     help="also the shares of predicted latency (from a kernel latency table), beside the MACs")
    brk.add_argument("--lut", default=None, metavar="TABLE",
                     help="latency table for --latency (default: the table for onnxruntime/cpu/fp32, 512x1024, "
                          "1 thread on the usual search path)")
    brk.add_argument("--out", default=None, metavar="PATH", help="output path (default <home>/plots/flops-breakdown)")
    brk.set_defaults(func=run_breakdown)


def _records_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--records", default=None, metavar="FILE",
                   help="profile records as JSON (escale profile --format json); default: profile the family")
    add_family_argument(p)


def default_out(stem: str) -> str:
    """``<home>/plots/STEM`` (:func:`escale.paths.plots_dir`)."""
    from escale.paths import plots_dir

    return str(plots_dir() / stem)


def family_records(args: argparse.Namespace) -> list:
    """Saved records from ``--records``, or a fresh profile of ``--family`` at 1024x2048 (params, MACs)."""
    from escale.report import load_records

    if args.records:
        return load_records(args.records)
    from escale.profiler import profile
    from escale.spec import family

    specs = family(args.family)
    records = []
    with progress.reporter() as rep:
        task = rep.task("profile", total=len(specs), unit="models")
        for spec in specs:
            task.status(f"profiling {spec.name}")
            records.append(profile(spec))
            task.advance(f"{spec.name}: {records[-1].params_m:.2f} M params, {records[-1].gmacs:.1f} B MACs")
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
    out = args.out or default_out("family")
    check_writable(out)
    table = family_table(family_records(args))
    return _written(save_figure(plot_family(table, args.x, args.y), out))


def run_paper(args: argparse.Namespace) -> int:
    from escale.errors import EscaleError
    from escale.report import FIGURES, family_table, paper_figure, save_figure
    from escale.report.style import check_writable

    if str(args.figure) not in FIGURES:
        raise EscaleError(f"--figure: {args.figure!r} is unknown (allowed: {', '.join(FIGURES)})")
    out = args.out or default_out(f"figure{args.figure}")
    check_writable(out)
    table = family_table(family_records(args))
    return _written(save_figure(paper_figure(args.figure, table), out))


def run_study(args: argparse.Namespace) -> int:
    from escale.report import cost_axis, load_study, plot_study_front, save_figure, study_budget, trials_frame
    from escale.report.study import mode_line

    study = load_study(args.name, args.storage)
    fig = plot_study_front(trials_frame(study), cost_axis(study)[1], f"{args.name} ({mode_line(study)})",
                           budget=study_budget(study))
    return _written(save_figure(fig, args.out or default_out(f"study-{args.name}")))


def run_breakdown(args: argparse.Namespace) -> int:
    from escale.report import plot_flops_breakdown, save_figure
    from escale.report.style import check_writable

    out = args.out or default_out("latency-breakdown" if args.latency else "flops-breakdown")
    check_writable(out)
    predictor = _breakdown_predictor(args.lut) if args.latency else None
    records = family_records(args)
    if predictor is not None:
        add_latency_breakdown(records, predictor)
    return _written(save_figure(plot_flops_breakdown(records, latency=args.latency), out))


def _breakdown_predictor(lut: str | None):  # noqa: ANN202 - a LatencyPredictor
    from escale.errors import EscaleError
    from escale.search.lut import find_table, load_table, table_name
    from escale.search.predictor import LatencyPredictor

    path = lut or find_table("onnxruntime", "cpu", "fp32", (512, 1024), 1)
    if path is None:
        raise EscaleError(f"--latency: no latency table {table_name('onnxruntime', 'cpu', 'fp32', (512, 1024), 1)} "
                          "found (pass --lut TABLE or build one with `escale lut build`)")
    return LatencyPredictor(load_table(path))


def add_latency_breakdown(records: list, predictor) -> None:  # noqa: ANN001 - a LatencyPredictor
    """Put each record's predicted latency breakdown (at the table's input size) into ``record.extra``."""
    from escale.spec import ESegSpec

    t = predictor.table
    note = f"{t.backend}/{t.device}/{t.precision}, {t.input_size[0]}×{t.input_size[1]}, {t.threads} thread(s)"
    for r in records:
        if r.kind != "eseg":
            continue
        b = predictor.breakdown(ESegSpec.from_dict(r.spec))
        r.extra.update(predicted_latency_ms=b.total_ms, latency_by_part_ms=b.by_part_ms,
                       latency_by_level_ms=b.by_level_ms, latency_note=note, latency_table=predictor.source)

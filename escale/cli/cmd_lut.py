"""``escale lut build`` (measure a kernel latency table), ``escale lut calibrate`` (carry a table over to this
machine in seconds) and ``escale lut predict`` (price specs from a table)."""

from __future__ import annotations

import argparse
from collections import Counter

from escale.cli import progress, render
from escale.cli.helptext import with_example


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lut", help="kernel latency tables: build, calibrate, predict",
                       **with_example("Kernel latency tables (nn-Meter style): `build` measures every distinct "
                                      "kernel of some models once, `calibrate` fits a table made on another "
                                      "machine to this one in about 30 s, `predict` prices specs from a table.",
                                      "escale lut predict ESeg-Lite-S --lut reports/lut/"
                                      "onnxruntime-cpu-fp32-512x1024-t1.json"))
    ssub = p.add_subparsers(dest="lut_command", metavar="ACTION")
    ssub.required = True
    b = ssub.add_parser("build", help="measure every distinct kernel of a set of models once",
                        **with_example("Measure the distinct kernels (conv+BN+act, pooling, resize, weighted sums, "
                                       "...) of the given specs and/or of models drawn from a space, one at a time. "
                                       "Without --out the table goes to <home>/lut-local/ (`escale paths`), never "
                                       "over the committed reports/lut/ tables; `escale propose` looks there first."
                                       "\n\nProgress goes to stderr: a bar in a terminal, a line per tenth of the "
                                       "kernels (and per calibration model) in logs.",
                                       "escale lut build --space spaces/eseg-lite.yaml --input-size 512x1024 "
                                       "--threads 1 --models 12 --calibrate 10"))
    b.add_argument("specs", nargs="*", metavar="SPEC", help="preset names or YAML specs whose kernels to measure")
    b.add_argument("--space", action="append", default=None, help="space YAML: its presets + --models random "
                   "variants (repeat for several spaces: --space spaces/eseg-lite.yaml --space spaces/eseg.yaml)")
    b.add_argument("--models", type=int, default=12, help="random variants drawn from each --space (default: 12)")
    b.add_argument("--seed", type=int, default=0, help="seed for the random variants (default: 0)")
    b.add_argument("--input-size", default="512x1024", metavar="HxW", help="input size (default: 512x1024)")
    b.add_argument("--backend", default="onnxruntime", help="backend (default: onnxruntime)")
    b.add_argument("--device", default="cpu", help="device (default: cpu)")
    b.add_argument("--precision", default="fp32", help="precision (default: fp32)")
    b.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    b.add_argument("--calibrate", type=int, default=0, metavar="K",
                   help="measure K further random models of each --space in full and fit the calibration "
                   "(per-class slopes, chosen by leave-one-out; default: 0)")
    b.add_argument("--passes", type=int, default=1,
                   help="measure every kernel and calibration model this many times, interleaved, keeping the lowest "
                   "median (default: 1)")
    b.add_argument("--quick", action="store_true", help="few timed runs per kernel (smoke runs, not for use)")
    b.add_argument("--out", default=None, help="table path (default: <home>/lut-local/<backend>-<device>-"
                   "<precision>-<HxW>-t<threads>.json); an existing table is extended (new kernels drop its "
                   "calibration unless --calibrate refits it). To update the committed table, name it: "
                   "--out reports/lut/NAME.json")
    b.set_defaults(func=_build)
    pr = ssub.add_parser("predict", help="predicted latency of specs from a table",
                         **with_example("Predicted latency of specs: the calibrated sum of their kernels' "
                                        "latencies in a table (kernels not in it are scaled from same-shape "
                                        "neighbours). With this machine's calibration of the table (`lut "
                                        "calibrate`) when its fingerprint matches; a table made on another "
                                        "machine without one still predicts, with a one-line warning on stderr.",
                                        "escale lut predict ESeg-Lite-S my-variant.yaml --lut reports/lut/"
                                        "onnxruntime-cpu-fp32-512x1024-t1.json --format json"))
    pr.add_argument("specs", nargs="+", metavar="SPEC", help="preset names or YAML specs")
    pr.add_argument("--lut", required=True, help="latency table JSON")
    pr.add_argument("--calibration", default=None, metavar="FILE", help="this machine's calibration of the table "
                    "(default: <home>/lut-calibrations/<table stem>@<fingerprint id>.json when it matches)")
    pr.add_argument("--format", choices=render.FORMATS, default="table", help="output format")
    pr.add_argument("--by", choices=("part", "level", "kernel"), default=None,
                    help="where the time goes: predicted ms per part (encoder/decoder/head), per pyramid level "
                         "(beside the MACs shares) or for the top kernels")
    pr.add_argument("--top", type=int, default=10, help="kernels shown with --by kernel (default: 10)")
    pr.set_defaults(func=_predict)
    c = ssub.add_parser("calibrate", help="fit a table made on another machine to this one (about 30 s)",
                        **with_example("Measure a few anchor models and a sample of the table's kernels here and "
                                       "fit per-kernel-class ratios and a per-family model correction. Written to "
                                       "<home>/lut-calibrations/<table stem>@<fingerprint id>.json (`escale "
                                       "paths`), never into the table; `lut predict` and `propose` use it while "
                                       "the table and this machine's fingerprint still match.",
                                       "escale lut calibrate --lut reports/lut/onnxruntime-cpu-fp32-512x1024-t1.json"))
    c.add_argument("--lut", required=True, help="latency table JSON")
    c.add_argument("--budget-s", type=float, default=27.0, help="seconds for the whole command, start-up included "
                   "(default: 27); what start-up and imports leave is spent measuring")
    c.add_argument("--out", default=None, help="calibration file (default: <home>/lut-calibrations/...)")
    c.add_argument("--format", choices=render.FORMATS, default="table", help="output format")
    c.set_defaults(func=_calibrate_cmd)


def _models(args: argparse.Namespace, size: tuple[int, int]) -> tuple[list, list]:
    import dataclasses

    from escale.errors import EscaleError
    from escale.search import load_space
    from escale.spec import load_spec, preset

    specs = [load_spec(ref) for ref in args.specs]
    calib: list = []
    for path in args.space or []:  # each space: its presets, --models random variants, --calibrate K others
        space = load_space(path)
        space.check_input_size(size)
        named = [preset(n) for n in space.presets_inside(size)]
        drawn = space.random_specs(args.models, seed=args.seed, exclude={s.spec_id for s in specs + named},
                                   input_size=size)
        specs += named + [dataclasses.replace(s, name=f"{space.name}-{s.name}") for s in drawn]
        if args.calibrate:
            more = space.random_specs(args.calibrate, seed=args.seed + 1, input_size=size,
                                      exclude={s.spec_id for s in specs + calib})
            calib += [dataclasses.replace(s, name=f"{space.name}-{s.name}") for s in more]
    if not specs:
        raise EscaleError("lut build: give SPEC(s) or --space (e.g. --space spaces/eseg-lite.yaml)")
    if args.calibrate and not args.space:
        raise EscaleError("lut build: --calibrate needs --space (the calibration models are drawn from it)")
    for s in specs:
        s.check_input_size(size)
    return specs, calib


def _build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from escale.profiler.latency import QUICK
    from escale.search.lut import (
        check_extendable,
        default_table_path,
        get_kernel_timer,
        kernel_timing,
        load_table,
    )
    from escale.spec import parse_input_size

    size = parse_input_size(args.input_size)
    specs, calib = _models(args, size)
    out = Path(args.out) if args.out else default_table_path(args.backend, args.device, args.precision, size,
                                                             args.threads)
    table = load_table(out) if out.is_file() else None
    if table is not None:
        check_extendable(table)
    calibrated_before = table is not None and table.calibration is not None
    timer = get_kernel_timer(args.backend, args.device, args.precision, args.threads,
                             config=QUICK if args.quick else kernel_timing())
    with progress.reporter() as rep:
        rep.note(f"lut build: {'extending' if table else 'writing'} {out}")
        table = _measure_kernels(rep, args, specs, size, table, timer)
        if calib:
            _calibrate(rep, args, calib, size, table, timer.clock)
        if calibrated_before and table.calibration is None:
            rep.note(f"lut build: new kernels dropped the calibration of {out}; add --calibrate K to refit it")
    table.save(out)
    _show(table, args, size, out)
    return 0


def _measure_kernels(rep: progress.Reporter, args: argparse.Namespace, specs: list, size: tuple[int, int],
                     table, timer):  # noqa: ANN001, ANN202 - LatencyTable | None, kernel timer -> LatencyTable
    """Every kernel of ``specs`` not yet in ``table``; progress: the kernel now measured, a line per tenth."""
    from escale.search.lut import build_table

    task = rep.task("lut build", unit="kernels", every=None)

    def on_kernel(i: int, n: int, k) -> None:  # noqa: ANN001 - a Kernel, about to be measured
        if task.total != n:
            task.update(total=n)
        if i:
            task.advance("", completed=i)
        task.status(f"kernel {i + 1}/{n}: {k.op}")

    table = build_table(specs, size, args.backend, args.device, args.precision, args.threads, table=table,
                        timer=timer, on_kernel=on_kernel, passes=args.passes)
    if task.total:
        task.advance("", completed=task.total)
    return table


def _calibrate(rep: progress.Reporter, args: argparse.Namespace, calib: list, size: tuple[int, int], table,
               clock: str) -> None:  # noqa: ANN001 - a LatencyTable
    """Whole models timed like the kernels (same clock), by the onnxruntime backend's path, ``--passes`` interleaved
    passes keeping each model's lowest median (other jobs only ever slow a run down); a line per model and pass."""
    from escale.profiler.latency import QUICK
    from escale.search.lut import measure_model_ms
    from escale.search.predictor import LatencyPredictor

    task = rep.task("lut calibration", total=len(calib) * args.passes, unit="models")
    measured: dict[str, float] = {}
    for _ in range(args.passes):
        for s in calib:
            task.status(f"measuring {s.name}")
            ms = measure_model_ms(s, size, args.threads, clock=clock, config=QUICK if args.quick else None)["latency_ms"]
            measured[s.spec_id] = min(ms, measured.get(s.spec_id, ms))
            task.advance(f"{s.name} {ms:.2f} ms")
    LatencyPredictor(table).fit_calibration(calib, [measured[s.spec_id] for s in calib])


def _show(table, args: argparse.Namespace, size: tuple[int, int], out) -> None:  # noqa: ANN001
    by_op = Counter(k.split(":")[0] for k in table.kernels)
    rows = [[op, str(n), f"{sum(e['latency_ms'] for k, e in table.kernels.items() if k.startswith(op + ':')):.2f}"]
            for op, n in sorted(by_op.items())]
    cal = table.calibration
    h, w = size
    caption = (f"{len(table.kernels)} kernels from {len(table.built_from)} models, {args.backend}/{args.device}/"
               f"{args.precision}, input {h}x{w}, {args.threads} thread(s); per-call overhead "
               f"{table.overhead_ms:.4f} ms removed. Calibration: "
               + (f"{cal['mode']} on {len(cal['models'])} models." if cal else "none (add --calibrate K).")
               + f"\nSaved {out} (+ .csv).")
    render.table("Kernel latency table", [("op", "left"), ("kernels", "right"), ("sum of medians (ms)", "right")],
                 rows, caption)


def _predict(args: argparse.Namespace) -> int:
    from escale.search.calibration import machine_status
    from escale.search.lut import load_table
    from escale.search.predictor import LatencyPredictor
    from escale.spec import load_spec

    table = load_table(args.lut)
    specs = [load_spec(ref) for ref in args.specs]
    status = machine_status(table, args.calibration)
    if status.foreign:
        progress.note(foreign_warning(args.lut, status))
    pred = LatencyPredictor(table, machine=status.calibration)
    if args.by:
        return _breakdown(pred, specs, args, status)
    cal_file = status.calibration.source if status.calibration else None
    rows = []
    for spec in specs:
        p = pred.predict(spec)
        rows.append({"name": spec.name, "spec_id": spec.spec_id, "predicted_latency_ms": p.latency_ms,
                     "kernel_sum_ms": p.sum_ms, "calibrated": p.calibrated, "kernels": p.n_kernels,
                     "kernels_in_table": p.n_found, "kernels_estimated": p.n_estimated, "unpriced": p.unpriced,
                     "table_built_here": status.table_mismatch is None, "machine_calibration": cal_file})
    if render.emit_machine(rows, args.format):
        return 0
    t = pred.table
    cols = [("name", "left"), ("spec_id", "left"), ("predicted ms", "right"), ("kernel sum ms", "right"),
            ("kernels", "right"), ("in table", "right"), ("estimated", "right")]
    out = [[r["name"], r["spec_id"], f"{r['predicted_latency_ms']:.2f}", f"{r['kernel_sum_ms']:.2f}",
            str(r["kernels"]), str(r["kernels_in_table"]), str(r["kernels_estimated"])] for r in rows]
    render.table(f"Predicted latency — {t.backend}/{t.device}/{t.precision}, {t.input_size[0]}x{t.input_size[1]}, "
                 f"{t.threads} thread(s)", cols, out, f"Table: {args.lut}, {status.describe()}. Kernel sums are "
                 "the table's; estimated kernels are scaled from same-shape neighbours in the table.")
    return 0


def foreign_warning(lut: str, status) -> str:  # noqa: ANN001 - a MachineStatus
    """The one line saying a table from another machine prices models here without a calibration."""
    unused = f"; {status.path} not used: {status.unused}" if status.unused else ""
    return (f"warning: {lut} was {status.describe()}{unused}: its predictions may be far off here; run "
            f"`escale lut calibrate --lut {lut}` (about 30 s)")


def _process_age_s() -> float:
    """Seconds since this process started (interpreter start-up and imports), 4 s where it cannot be read."""
    import time

    try:
        import psutil

        return max(time.time() - psutil.Process().create_time(), 0.0)
    except Exception:  # noqa: BLE001 - psutil is optional
        return 4.0


def _calibrate_cmd(args: argparse.Namespace) -> int:
    from escale.search.calibration import BUDGET_S, calibrate_table, calibration_path, table_fingerprint
    from escale.search.lut import load_table

    table = load_table(args.lut)
    fp = table_fingerprint(table)
    out = args.out or calibration_path(table, fp)
    budget = min(BUDGET_S, args.budget_s - _process_age_s() - 1.5)  # to save, print and exit
    with progress.reporter(live=args.format == "table") as rep:
        task = rep.task("lut calibrate", total=None, unit="measurements")
        cal = calibrate_table(table, budget_s=budget, fingerprint=fp, on_step=lambda message: task.advance(message))
    path = cal.save(out)
    if render.emit_machine([{**cal.to_dict(), "path": str(path)}], args.format):
        return 0
    rows = [[c, str(sum(r["class"] == c for r in cal.kernels)), f"x{v:.3f}"] for c, v in cal.class_ratios.items()]
    rows += [[f"anchor {a['name']} ({a['family']})", f"{a['measured_ms']:.1f} ms measured",
              f"x{a.get('correction', a['measured_ms'] / a['predicted_ms']):.3f}"
              + (f" (x{a['table_measured_ms'] / a['table_predicted_ms']:.3f} where built)"
                 if "table_measured_ms" in a else "")] for a in cal.anchors]
    render.table(f"Calibration of {args.lut} for this machine", [("kernel class / anchor", "left"),
                 ("kernels sampled", "right"), ("here / table", "right")], rows,
                 f"Fingerprint {fp['id']} ({fp['cpu_model']}, {', '.join(fp['cpu_flags'])}); "
                 f"table: {table.mismatch(fp) or 'built on this machine'}. Measured in {cal.seconds:.1f} s. "
                 f"Saved {path}.")
    return 0


def _breakdown(pred, specs: list, args: argparse.Namespace, status) -> int:  # noqa: ANN001 - predictor, status
    """``lut predict --by part|level|kernel``: predicted ms per group beside the MACs share (one table per spec)."""
    from escale.profiler import profile

    if args.top < 1:
        from escale.errors import EscaleError

        raise EscaleError(f"--top: {args.top} is not allowed (a whole number >= 1)")
    t = pred.table
    rows: list[dict] = []
    for spec in specs:
        b = pred.breakdown(spec)
        if args.by == "kernel":
            for k in b.by_kernel[:args.top]:
                rows.append({"name": spec.name, "kernel": k["kernel"], "op": k["op"], "runs": k["count"],
                             "predicted_ms": k["ms"], "share_pct": 100 * k["ms"] / b.total_ms})
            continue
        rec = profile(spec, input_size=tuple(t.input_size))
        ms = b.by_part_ms if args.by == "part" else b.by_level_ms
        macs = rec.macs_by_part if args.by == "part" else rec.macs_by_level
        for group in dict.fromkeys([*ms, *macs]):
            rows.append({"name": spec.name, args.by: group, "predicted_ms": ms.get(group, 0.0),
                         "share_pct": 100 * ms.get(group, 0.0) / b.total_ms,
                         "macs_share_pct": 100 * macs.get(group, 0) / max(rec.macs, 1)})
        if b.fixed_ms:
            rows.append({"name": spec.name, args.by: "(calibration intercept)", "predicted_ms": b.fixed_ms,
                         "share_pct": 100 * b.fixed_ms / b.total_ms, "macs_share_pct": 0.0})
    if render.emit_machine(rows, args.format):
        return 0
    for spec in specs:
        mine = [r for r in rows if r["name"] == spec.name]
        if args.by == "kernel":
            cols = [("kernel", "left"), ("runs", "right"), ("predicted ms", "right"), ("share", "right")]
            out = [[r["kernel"], str(r["runs"]), f"{r['predicted_ms']:.2f}", f"{r['share_pct']:.1f}%"] for r in mine]
        else:
            cols = [(args.by, "left"), ("predicted ms", "right"), ("share of latency", "right"),
                    ("share of MACs", "right")]
            out = [[r[args.by], f"{r['predicted_ms']:.2f}", f"{r['share_pct']:.1f}%", f"{r['macs_share_pct']:.1f}%"]
                   for r in mine]
        total = sum(r["predicted_ms"] for r in mine)
        render.table(f"{spec.name} — predicted latency by {args.by}, {t.backend}/{t.device}/{t.precision}, "
                     f"{t.input_size[0]}x{t.input_size[1]}, {t.threads} thread(s)", cols, out,
                     f"Table: {args.lut}, {status.describe()}; ms = the kernels' calibrated table latencies"
                     + (f" (top {args.top} kernels: {total:.2f} ms)" if args.by == "kernel" else "")
                     + "; levels by output size (P0 = input size, global = 1x1 squeeze-excite maps).")
    return 0


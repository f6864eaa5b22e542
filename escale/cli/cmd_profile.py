"""``escale profile``: params and FLOPs (multiply-adds) of presets, families, YAML specs, timm models or any
``nn.Module`` factory; with ``--latency`` also latency, FPS and peak activation memory on a backend."""

from __future__ import annotations

import argparse

from escale.cli import progress, render
from escale.cli.helptext import with_example
from escale.errors import EscaleError, SpecError
from escale.spec import FAMILIES, family, load_spec, parse_input_size

EXAMPLES = ("escale profile --family eseg                         # the paper's six models at 1024x2048",
            "escale profile ESeg-S --set decoder.max_level=5      # compared with Table 1's P2-P5 row",
            "escale profile timm:resnet50 --input-size 224x224    # any timm model, built without weights",
            "escale profile ESeg-S --by module --depth 3          # where the MACs go, module by module")
FAMILY_HELP = "eseg = all six Table 3 models; eseg-lite = ESeg-Lite-S/M/L; eseg-full = ESeg-S/M/L only"
BREAKDOWNS = ("module", "part", "level", "operator")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="count params and FLOPs (multiply-adds) of ESeg specs or any model",
                       **with_example("Params and FLOPs (multiply-adds, batch 1) of presets, families, YAML specs, "
                                      "timm models or nn.Module factories; with --latency also latency, FPS and "
                                      "peak memory.", *EXAMPLES))
    p.add_argument("specs", nargs="*", metavar="MODEL",
                   help="preset name (e.g. ESeg-S), YAML/JSON spec file, timm:<model> or "
                        "module:<package.module>:<callable> (a factory returning an nn.Module)")
    p.add_argument("--family", choices=sorted(FAMILIES), help=f"profile a whole preset family ({FAMILY_HELP})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override applied to every ESeg spec, e.g. encoder.width=1.2 (repeatable)")
    p.add_argument("--input-size", default=None, metavar="HxW",
                   help="input size (default: 1024x2048; a timm model's own input size for timm:)")
    p.add_argument("--counter", default="dispatch", help="MAC counter: dispatch (default), fvcore, thop")
    p.add_argument("--format", choices=render.FORMATS, default="table", help="output format")
    p.add_argument("--wide", action="store_true",
                   help="every column (scaling parameters, the paper's figures, latency spread); "
                        "default: the columns that fit 80 characters")
    p.add_argument("--by", choices=BREAKDOWNS, default=None,
                   help="also print a breakdown per model: module tree (params, MACs, share), part, level "
                        "or operator")
    p.add_argument("--depth", type=int, default=2, help="module tree depth for --by module (default: 2)")
    add_latency_arguments(p)
    p.set_defaults(func=run)


def add_latency_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("latency", "measure latency and peak memory too (escale backends lists the backends)")
    g.add_argument("--latency", metavar="BACKEND", help="latency backend: torch, onnxruntime, tensorrt")
    g.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device (default: cpu)")
    g.add_argument("--precision", choices=("fp32", "tf32", "fp16", "bf16"), default="fp32",
                   help="precision (default: fp32; on CUDA fp32 turns TF32 off, tf32 turns it on)")
    g.add_argument("--batch", type=int, default=1, help="batch size for latency (default: 1)")
    g.add_argument("--threads", type=int, help="CPU threads (default: every CPU this process may use)")
    g.add_argument("--latency-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option, e.g. channels_last=1, compile=1, cuda_graphs=1 (repeatable)")
    g.add_argument("--min-runs", type=int, default=10, help="timed runs at least (default: 10)")
    g.add_argument("--min-duration", type=float, default=3.0, metavar="S", help="timed seconds at least (default: 3)")
    g.add_argument("--warmup-s", type=float, default=0.5, metavar="S", help="warm-up seconds at least (default: 0.5)")
    g.add_argument("--no-isolate", action="store_true",
                   help="measure in this process (default: a child process with fixed allocator settings)")


def resolve_specs(args: argparse.Namespace) -> list:
    """ESeg specs (overrides applied) and ``timm:``/``module:`` references, in the order given."""
    if not args.specs and not args.family:
        raise EscaleError("profile: give MODEL(s) or --family (e.g. escale profile --family eseg)")
    targets: list = family(args.family) if args.family else []
    for ref in args.specs:
        if ref.startswith(("timm:", "module:")):
            if args.set:
                raise SpecError(f"--set: applies to ESeg specs only, not to {ref!r}")
            targets.append(ref)
        else:
            targets.append(load_spec(ref))
    return [t.with_overrides(args.set) if args.set and not isinstance(t, str) else t for t in targets]


def latency_request(args: argparse.Namespace) -> dict | None:
    """Checked keyword arguments for ``measure_latency`` (fails fast, before any spec is profiled)."""
    if not args.latency:
        return None
    from escale.profiler.latency import TimingConfig, get_backend
    from escale.spec import parse_override

    options = dict(parse_override(o) for o in args.latency_opt)
    options = get_backend(args.latency).check(args.device, args.precision, options)
    if args.batch < 1 or (args.threads is not None and args.threads < 1):
        raise EscaleError(f"--batch/--threads: {args.batch}/{args.threads} is not allowed (whole numbers >= 1)")
    config = TimingConfig(warmup_s=args.warmup_s, min_runs=args.min_runs, min_duration_s=args.min_duration)
    return {"backend": args.latency, "device": args.device, "precision": args.precision, "batch": args.batch,
            "threads": args.threads, "isolate": not args.no_isolate, "config": config, "options": options}


def run(args: argparse.Namespace) -> int:
    from escale.profiler import get_counter, profile

    input_size = parse_input_size(args.input_size) if args.input_size else None
    if args.depth < 1:
        raise EscaleError(f"--depth: {args.depth} is not allowed (a whole number >= 1)")
    targets = resolve_specs(args)
    get_counter(args.counter)  # fail fast on an unknown/unavailable counter
    latency = latency_request(args)
    records, failures = [], []
    depth = max(args.depth, 3)
    # one plain progress line per model in logs only when it takes a while (latency), a bar in a terminal
    with progress.reporter(live=args.format == "table", enabled=bool(latency) or args.format == "table") as rep:
        task = rep.task("profile", total=len(targets), unit="models")
        for target in targets:
            label = target if isinstance(target, str) else target.name
            task.status(f"profiling {label}")
            try:
                rec = profile(target, input_size=input_size, counter=args.counter, module_depth=depth)
            except EscaleError as exc:  # keep going: one bad model must not lose the others' results
                failures.append(f"{label}: {exc}")
                rec = None
            if rec is not None and latency:
                task.status(f"measuring {label} ({args.latency} {args.device} {args.precision}, "
                            f"{rec.input_size[0]}x{rec.input_size[1]})")
                add_latency(rec, target, latency, failures)
            if rec is not None:
                records.append(rec)
            done = (f"{rec.extra['latency_ms']:.2f} ms" if rec is not None and "latency_ms" in rec.extra
                    else f"{rec.gmacs:.2f} G MACs" if rec is not None else "failed")
            task.advance(f"{label}: {done}")
    if records or args.format != "table":
        show(records, args.format, args.counter, wide=args.wide)
        if args.by and args.format == "table":
            for rec in records:
                show_breakdown(rec, args.by, args.depth)
    for line in failures:
        render.error(line)
    if failures:
        return 1 if records else 2  # 2: nothing could be profiled, like any other input error
    return 0


def add_latency(rec: object, target: object, latency: dict, failures: list) -> None:
    """Measure and put the latency fields into ``rec.extra``; a failure is noted and the run goes on."""
    from escale.profiler.latency import measure_latency

    if isinstance(target, str):
        failures.append(f"{target}: --latency measures ESeg specs only (the backends build the model from its spec)")
        rec.extra["latency_error"] = "not an ESeg spec"
        return
    try:
        result = measure_latency(target, input_size=tuple(rec.input_size), **latency)
        rec.extra.update(result.to_extra())
        rec.notes.extend(n for n in result.notes if n not in rec.notes)  # e.g. CUDA graphs skipped
    except EscaleError as exc:
        failures.append(f"{target.name}: {exc}")
        rec.extra["latency_error"] = str(exc)


# (header, justify, in the default view) -- the default view fits 80 characters; --wide shows all
COLUMNS = {
    "name": ("model", "left", True), "input": ("input", "right", False), "width": ("width", "right", False),
    "depth": ("depth", "right", False), "block": ("block", "left", False), "ch": ("BiFPN ch", "right", False),
    "repeats": ("repeats", "right", False), "levels": ("levels", "left", False),
    "params": ("params (M)", "right", True), "flops": ("FLOPs (G)", "right", True),
    "paper_params": ("paper params", "right", False), "paper_flops": ("paper FLOPs", "right", False),
    "dparams": ("Δ params", "right", True), "dflops": ("Δ FLOPs", "right", True), "ref": ("paper", "left", True),
    "latency": ("latency (ms)", "right", True), "p90": ("p90 (ms)", "right", False),
    "iqr": ("IQR (ms)", "right", False), "fps": ("FPS", "right", True), "mem": ("peak mem (MB)", "right", True),
}


def _cells(r: object) -> dict[str, str]:
    from escale.spec import ESegSpec

    cells = {"name": r.name, "input": f"{r.input_size[0]}x{r.input_size[1]}", "params": f"{r.params_m:.2f}",
             "flops": f"{r.gmacs:.2f}" if r.gmacs < 1000 else f"{r.gmacs:.1f}",
             "paper_params": render.fmt(r.paper_params_m, ".1f", "M"), "paper_flops": render.fmt(r.paper_gmacs, ".1f", "B"),
             "dparams": render.fmt(r.params_dev_pct, "+.1f", "%"), "dflops": render.fmt(r.gmacs_dev_pct, "+.1f", "%"),
             "ref": r.paper_source or "-"}
    if r.kind == "eseg":
        enc, dec = r.spec["encoder"], r.spec["decoder"]
        cells.update(width=f"{enc['width']:g}", depth=f"{enc['depth']:g}",
                     block=ESegSpec.from_dict(r.spec).encoder.block_label, ch=str(dec["channels"]),
                     repeats=str(dec["repeats"]), levels=f"P{dec['min_level']}-P{dec['max_level']}")
    x = r.extra
    cells.update(latency=render.fmt(x.get("latency_ms"), ".2f"), p90=render.fmt(x.get("latency_p90_ms"), ".2f"),
                 iqr=render.fmt(x.get("iqr_ms"), ".2f"), fps=render.fmt(x.get("fps"), ".1f"),
                 mem=render.fmt(x.get("peak_mem_mb"), ".0f"))
    return cells


def show(records: list, fmt: str, counter: str, wide: bool = False) -> None:
    if fmt == "json":
        render.emit_json([r.to_dict() for r in records])
        return
    if fmt == "csv":
        import escale

        frame = escale.records_to_frame(records)
        render.emit_csv(frame.to_dict(orient="records"))
        return
    sizes = sorted({tuple(r.input_size) for r in records})
    timed = [r for r in records if "latency_ms" in r.extra or "latency_error" in r.extra]
    keys = [k for k, (_, _, default) in COLUMNS.items() if wide or default]
    if not timed:
        keys = [k for k in keys if k not in ("latency", "p90", "iqr", "fps", "mem")]
    if not any(r.kind == "eseg" for r in records):
        keys = [k for k in keys if k not in ("width", "depth", "block", "ch", "repeats", "levels")]
    if len(sizes) > 1 and "input" not in keys:
        keys.insert(1, "input")
    if not any(r.paper_source for r in records):
        keys = [k for k in keys if k not in ("paper_params", "paper_flops", "dparams", "dflops", "ref")]
    rows = [[_cells(r)[k] for k in keys] for r in records]
    size = f"{sizes[0][0]}x{sizes[0][1]}" if len(sizes) == 1 else "inputs as listed"
    title = f"escale profile — {size}, batch 1"
    render.table(title, [COLUMNS[k][:2] for k in keys], rows, caption(records, size, counter, timed, wide))


def caption(records: list, size: str, counter: str, timed: list, wide: bool) -> str:
    """The table's caption: units and conventions, the paper rule, notes, ops not counted."""
    lines = [f"FLOPs: multiply-adds (one fused multiply-add = 1, the paper's convention), batch 1, input {size}, "
             f"counter={counter}; params include BN." + ("" if wide else " --wide: every column.")]
    if any(r.kind == "eseg" for r in records):
        lines.append("Paper figures (Δ) only for the paper's own configurations at 1024x2048 and 19 classes; "
                     "'paper' names the table.")
    for r in records:
        lines += [f"{r.name}: {note}" for note in r.notes]
        if r.ops_not_counted:
            ops = ", ".join(f"{op} x{n}" for op, n in sorted(r.ops_not_counted.items()))
            lines.append(f"{r.name}: ops not counted (no formula in escale): {ops}")
    return "\n".join(lines) + latency_caption(timed)


def latency_caption(records: list) -> str:
    """One line stating how the latency columns were measured (from the first measured record)."""
    done = [r.extra for r in records if "latency_ms" in r.extra]
    if not done:
        return ""
    from escale.profiler.latency import BACKENDS

    x = done[0]
    mem = x.get("peak_mem_method") or "see --format json"
    defaults = BACKENDS[x["latency_backend"]].options  # --latency-opt values other than these are named
    opts = [k if v is True else f"{k}={v}" for k, v in (x.get("latency_details") or {}).get("options", {}).items()
            if defaults.get(k) != v]
    shown = f" ({', '.join(opts)})" if opts else ""
    return (f"\nLatency: {x['latency_backend']}{shown} on {x['latency_device']} ({x.get('device_name')}), "
            f"{x['latency_precision']}, batch {x['latency_batch']}, {x['latency_threads']} thread(s), input "
            f"{x['latency_input_size']}; median (p90, IQR) of the timed runs after warm-up; "
            f"FPS = batch x 1000 / median. Peak mem: activations, MB = 2**20 bytes ({mem}).")


def show_breakdown(rec: object, by: str, depth: int) -> None:
    """A per-model breakdown table: module tree (params, MACs, share) or MACs by part/level/operator."""
    from escale.profiler.modules import tree_rows

    total = max(rec.macs, 1)
    if by == "module":
        macs, params = tree_rows(rec.macs_by_module, depth), tree_rows(rec.params_by_module, depth)
        paths = list(dict.fromkeys([*params, *macs]))  # definition order, each module before its children
        rows = [[("  " * p.count(".") + ("  " if p else "") + (p or "(model)")), _si(params.get(p, 0)),
                 _si(macs.get(p, 0)), f"{100 * macs.get(p, 0) / total:.1f}%"] for p in paths]
        cols = [("module", "left"), ("params", "right"), ("MACs", "right"), ("share of MACs", "right")]
    else:
        data = {"part": rec.macs_by_part, "level": rec.macs_by_level, "operator": rec.macs_by_operator}[by]
        if not data:
            render.error(f"{rec.name}: no breakdown by {by} (a generic module has --by module and operator)")
            return
        items = data.items() if by != "operator" else sorted(data.items(), key=lambda kv: -kv[1])
        rows = [[k, _si(v), f"{100 * v / total:.1f}%"] for k, v in items]
        cols = [(by, "left"), ("MACs", "right"), ("share", "right")]
    render.table(f"{rec.name} — MACs by {by}, {rec.input_size[0]}x{rec.input_size[1]}", cols, rows,
                 "K/M/G = 10^3/10^6/10^9; MACs = multiply-adds; modules are summed over their submodules.")


def _si(value: float) -> str:
    """6.86M, 33.95G, 512 -- a count with an SI suffix (K = 10^3)."""
    for suffix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{suffix}"
    return f"{value:.0f}"

"""``escale profile``: params and FLOPs (multiply-adds) of presets, families or YAML specs; with ``--latency``
also latency, FPS and peak activation memory on a backend (see ``escale backends``)."""

from __future__ import annotations

import argparse

from escale.cli import render
from escale.errors import EscaleError
from escale.spec import FAMILIES, ESegSpec, family, load_spec, parse_input_size


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="count params and FLOPs (multiply-adds) of ESeg specs",
                       description="Params and FLOPs (multiply-adds, batch 1) of presets, families or YAML specs.")
    p.add_argument("specs", nargs="*", metavar="SPEC", help="preset name (e.g. ESeg-S) or YAML/JSON spec file")
    p.add_argument("--family", choices=sorted(FAMILIES), help="profile a whole preset family")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override applied to every spec, e.g. encoder.width=1.2 (repeatable)")
    p.add_argument("--input-size", default="1024x2048", metavar="HxW", help="input size (default: 1024x2048)")
    p.add_argument("--counter", default="dispatch", help="MAC counter: dispatch (default), fvcore, thop")
    p.add_argument("--format", choices=render.FORMATS, default="table", help="output format")
    add_latency_arguments(p)
    p.set_defaults(func=run)


def add_latency_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("latency", "measure latency and peak memory too (escale backends lists the backends)")
    g.add_argument("--latency", metavar="BACKEND", help="latency backend: torch, onnxruntime, tensorrt")
    g.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device (default: cpu)")
    g.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32", help="precision (default: fp32)")
    g.add_argument("--batch", type=int, default=1, help="batch size for latency (default: 1)")
    g.add_argument("--threads", type=int, help="CPU threads (default: every CPU this process may use)")
    g.add_argument("--latency-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option, e.g. channels_last=1, compile=1, cuda_graphs=1 (repeatable)")
    g.add_argument("--min-runs", type=int, default=10, help="timed runs at least (default: 10)")
    g.add_argument("--min-duration", type=float, default=3.0, metavar="S", help="timed seconds at least (default: 3)")
    g.add_argument("--warmup-s", type=float, default=0.5, metavar="S", help="warm-up seconds at least (default: 0.5)")
    g.add_argument("--no-isolate", action="store_true",
                   help="measure in this process (default: a child process with fixed allocator settings)")


def resolve_specs(args: argparse.Namespace) -> list[ESegSpec]:
    if not args.specs and not args.family:
        raise EscaleError("profile: give SPEC(s) or --family (e.g. escale profile --family eseg)")
    specs = family(args.family) if args.family else []
    specs += [load_spec(ref) for ref in args.specs]
    return [s.with_overrides(args.set) for s in specs] if args.set else specs


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

    input_size = parse_input_size(args.input_size)
    specs = resolve_specs(args)
    get_counter(args.counter)  # fail fast on an unknown/unavailable counter
    latency = latency_request(args)
    records, failures = [], []
    with render.progress(args.format == "table") as bar:
        task = bar.add_task("profiling", total=len(specs)) if bar else None
        for spec in specs:
            if bar:
                bar.update(task, description=f"profiling {spec.name}")
            try:
                rec = profile(spec, input_size=input_size, counter=args.counter)
            except EscaleError as exc:  # keep going: one bad spec must not lose the others' results
                failures.append(f"{spec.name}: {exc}")
                rec = None
            if rec is not None and latency:
                if bar:
                    bar.update(task, description=f"measuring {spec.name} ({args.latency} {args.device} "
                                                 f"{args.precision}, {input_size[0]}x{input_size[1]})")
                add_latency(rec, spec, input_size, latency, failures)
            if rec is not None:
                records.append(rec)
            if bar:
                bar.advance(task)
    if records or args.format != "table":
        show(records, args.format, input_size, args.counter)
    for line in failures:
        render.error(line)
    return 1 if failures else 0


def add_latency(rec: object, spec: ESegSpec, input_size: tuple[int, int], latency: dict, failures: list) -> None:
    """Measure and put the latency fields into ``rec.extra``; a failure is noted and the run goes on."""
    from escale.profiler.latency import measure_latency

    try:
        rec.extra.update(measure_latency(spec, input_size=input_size, **latency).to_extra())
    except EscaleError as exc:
        failures.append(f"{spec.name}: {exc}")
        rec.extra["latency_error"] = str(exc)


def show(records: list, fmt: str, input_size: tuple[int, int], counter: str) -> None:
    if fmt == "json":
        render.emit_json([r.to_dict() for r in records])
        return
    if fmt == "csv":
        import escale

        frame = escale.records_to_frame(records)
        render.emit_csv(frame.to_dict(orient="records"))
        return
    h, w = input_size
    columns = [("name", "left"), ("width", "right"), ("depth", "right"), ("block", "left"), ("BiFPN ch", "right"),
               ("repeats", "right"), ("levels", "left"), ("params (M)", "right"), ("FLOPs (B MACs)", "right"),
               ("paper params", "right"), ("paper FLOPs", "right"), ("Δ params", "right"), ("Δ FLOPs", "right")]
    timed = [r for r in records if "latency_ms" in r.extra or "latency_error" in r.extra]
    if timed:
        columns += [("latency (ms)", "right"), ("p90 (ms)", "right"), ("IQR (ms)", "right"), ("FPS", "right"),
                    ("peak mem (MB)", "right")]
    rows = []
    for r in records:
        enc, dec = r.spec["encoder"], r.spec["decoder"]
        block = ESegSpec.from_dict(r.spec).encoder.block_label
        rows.append([
            r.name, f"{enc['width']:g}", f"{enc['depth']:g}", block, str(dec["channels"]), str(dec["repeats"]),
            f"P{dec['min_level']}-P{dec['max_level']}", f"{r.params_m:.2f}", f"{r.gmacs:.1f}",
            render.fmt(r.paper_params_m, ".1f", "M"), render.fmt(r.paper_gmacs, ".1f", "B"),
            render.fmt(r.params_dev_pct, "+.1f", "%"), render.fmt(r.gmacs_dev_pct, "+.1f", "%"),
        ])
        if timed:
            x = r.extra
            rows[-1] += [render.fmt(x.get("latency_ms"), ".2f"), render.fmt(x.get("latency_p90_ms"), ".2f"),
                         render.fmt(x.get("iqr_ms"), ".2f"), render.fmt(x.get("fps"), ".1f"),
                         render.fmt(x.get("peak_mem_mb"), ".0f")]
    caption = (f"FLOPs are multiply-adds (one fused multiply-add = 1, the paper's convention), batch 1, "
               f"input {h}x{w}, counter={counter}.\nParams include BN; paper figures: Table 4 (S/M/L), "
               f"Sec. 3.2 (Lite-S); Δ only at 1024x2048. Elementwise/resize/pooling ops are counted apart "
               f"(see --format json).")
    caption += latency_caption(timed)
    render.table(f"ESeg profile — {h}x{w}, batch 1", columns, rows, caption)


def latency_caption(records: list) -> str:
    """One line stating how the latency columns were measured (from the first measured record)."""
    done = [r.extra for r in records if "latency_ms" in r.extra]
    if not done:
        return ""
    x = done[0]
    mem = x.get("peak_mem_method") or "see --format json"
    return (f"\nLatency: {x['latency_backend']} on {x['latency_device']} ({x.get('device_name')}), "
            f"{x['latency_precision']}, batch {x['latency_batch']}, {x['latency_threads']} thread(s), input "
            f"{x['latency_input_size']}; median (p90, IQR) of the timed runs after warm-up; "
            f"FPS = batch x 1000 / median. Peak mem: activations, MB = 2**20 bytes ({mem}).")

"""``escale profile``: params and FLOPs (multiply-adds) of presets, families or YAML specs."""

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
    p.set_defaults(func=run)


def resolve_specs(args: argparse.Namespace) -> list[ESegSpec]:
    if not args.specs and not args.family:
        raise EscaleError("profile: give SPEC(s) or --family (e.g. escale profile --family eseg)")
    specs = family(args.family) if args.family else []
    specs += [load_spec(ref) for ref in args.specs]
    return [s.with_overrides(args.set) for s in specs] if args.set else specs


def run(args: argparse.Namespace) -> int:
    from escale.profiler import get_counter, profile

    input_size = parse_input_size(args.input_size)
    specs = resolve_specs(args)
    get_counter(args.counter)  # fail fast on an unknown/unavailable counter
    records, failures = [], []
    with render.progress(args.format == "table") as bar:
        task = bar.add_task("profiling", total=len(specs)) if bar else None
        for spec in specs:
            if bar:
                bar.update(task, description=f"profiling {spec.name}")
            try:
                records.append(profile(spec, input_size=input_size, counter=args.counter))
            except EscaleError as exc:  # keep going: one bad spec must not lose the others' results
                failures.append(f"{spec.name}: {exc}")
            if bar:
                bar.advance(task)
    if records or args.format != "table":
        show(records, args.format, input_size, args.counter)
    for line in failures:
        render.error(line)
    return 1 if failures else 0


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
    caption = (f"FLOPs are multiply-adds (one fused multiply-add = 1, the paper's convention), batch 1, "
               f"input {h}x{w}, counter={counter}.\nParams include BN; paper figures: Table 4 (S/M/L), "
               f"Sec. 3.2 (Lite-S); Δ only at 1024x2048. Elementwise/resize/pooling ops are counted apart "
               f"(see --format json).")
    render.table(f"ESeg profile — {h}x{w}, batch 1", columns, rows, caption)

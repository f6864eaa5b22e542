"""Latency benchmark (not a test): models x backends, each in its own child process, repeated.

Default (issue 3): ESeg-S and ESeg-Lite-S at 512x1024, batch 1, torch eager vs onnxruntime on the CPU,
fp32, same allocator settings, twice. Prints ONNX Runtime / torch latency ratios (target <= 0.8) and
how well the repeats agree (target within +-10%), and writes <tag>.json and .md to <home>/bench/latency/
(ignored by git; `escale paths`), to --out DIR, or with --update-reference to the committed reports/latency/.

GPU run (the torch CUDA backend, fp16 autocast, CUDA graphs, the whole family at 1024x2048):
    python benchmarks/bench_latency.py --device cuda --precision fp16 --family --input-size 1024x2048 \
        --backends torch --latency-opt cuda_graphs=1 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from escale import family, preset
from escale.paths import add_bench_output_arguments, bench_output
from escale.profiler.latency import BACKENDS, TimingConfig, measure_latency
from escale.spec import parse_input_size, parse_override

NAME = "latency"  # reports/NAME is the committed reference
TARGET_RATIO, TARGET_AGREEMENT_PCT = 0.8, 10.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["ESeg-S", "ESeg-Lite-S"])
    p.add_argument("--family", action="store_true", help="all six ESeg presets instead of --models")
    p.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--input-size", default="512x1024")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="default: every CPU this process may use")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--min-runs", type=int, default=10)
    p.add_argument("--min-duration", type=float, default=5.0)
    p.add_argument("--latency-opt", action="append", default=[], metavar="KEY=VALUE")
    add_bench_output_arguments(p, NAME)
    p.add_argument("--tag", help="report file name (default: bench_<device>_<precision>_<HxW>)")
    return p.parse_args(argv)


def output_dir(args: argparse.Namespace) -> Path:
    return bench_output(args, NAME)


def run(args: argparse.Namespace) -> dict:
    specs = family("eseg") if args.family else [preset(m) for m in args.models]
    size = parse_input_size(args.input_size)
    config = TimingConfig(warmup_runs=3, warmup_s=1.0, min_runs=args.min_runs, min_duration_s=args.min_duration)
    options = dict(parse_override(o) for o in args.latency_opt)
    results, load = [], {"before": os.getloadavg()}
    for rep in range(1, args.repeats + 1):
        for spec in specs:
            for backend in args.backends:  # interleaved, so drift in machine load hits both backends alike
                t0 = time.perf_counter()
                try:
                    res = measure_latency(spec, backend=backend, device=args.device, precision=args.precision,
                                          input_size=size, batch=args.batch, threads=args.threads, isolate=True,
                                          config=config, options=options_for(backend, options)).to_dict()
                except Exception as exc:  # noqa: BLE001 - a benchmark reports and goes on
                    res = {"name": spec.name, "backend": backend, "error": f"{type(exc).__name__}: {exc}"}
                res["repeat"] = rep
                results.append(res)
                print(line(res, time.perf_counter() - t0), flush=True)
    load["after"] = os.getloadavg()
    return {"args": vars(args), "input_size": list(size), "load_avg": load, "results": results,
            "summary": summarise(results, args.backends)}


def options_for(backend: str, options: dict) -> dict:
    """The --latency-opt entries this backend knows (each backend has its own options)."""
    known = BACKENDS[backend].options if backend in BACKENDS else {}
    return {k: v for k, v in options.items() if k in known}


def line(res: dict, wall_s: float) -> str:
    if "error" in res:
        return f"[rep {res['repeat']}] {res['name']:<12} {res['backend']:<12} FAILED: {res['error']}"
    return (f"[rep {res['repeat']}] {res['name']:<12} {res['backend']:<12} median {res['latency_ms']:8.1f} ms  "
            f"p90 {res['latency_p90_ms']:8.1f}  IQR {res['iqr_ms']:6.1f}  CPU {res['cpu_time_ms']:7.1f} ms  "
            f"{res['fps']:7.2f} FPS  "
            f"runs {res['runs']:3d}  threads {res['threads']}  peak {res['peak_mem_mb']:.0f} MB  "
            f"faults/run {res['details'].get('minor_faults_per_run', 0):.0f}  ({wall_s:.0f} s)")


def summarise(results: list[dict], backends: list[str]) -> list[dict]:
    """Per model: each backend's median per repeat, repeat agreement, and ratios to the first backend."""
    rows = []
    for name in dict.fromkeys(r["name"] for r in results):
        row: dict = {"name": name}
        for b in backends:
            done = [r for r in results if r["name"] == name and r["backend"] == b and "latency_ms" in r]
            for kind, key in (("ms", "latency_ms"), ("cpu_ms", "cpu_time_ms")):
                meds = [r[key] for r in done]
                row[f"{b}_{kind}"] = meds
                row[f"{b}_{kind}_agreement_pct"] = 100.0 * (max(meds) / min(meds) - 1) if len(meds) > 1 else None
        base = backends[0]
        for b in backends[1:]:
            for kind in ("ms", "cpu_ms"):
                pairs = list(zip(row[f"{b}_{kind}"], row[f"{base}_{kind}"], strict=False))
                row[f"{b}_over_{base}_{kind}"] = [x / y for x, y in pairs]
        rows.append(row)
    return rows


def markdown(report: dict) -> str:
    a, size = report["args"], report["input_size"]
    ok = [r for r in report["results"] if "env" in r]
    env = ok[0]["env"] if ok else {}
    versions: dict = {}
    for r in ok:
        versions.update(r["env"]["versions"])
    out = [f"# Latency: {', '.join(dict.fromkeys(r['name'] for r in report['results']))} "
           f"at {size[0]}x{size[1]}, batch {a['batch']}, {a['device']} {a['precision']}", "",
           f"Machine: {env.get('device_name')} ({env.get('cpu_count')} CPUs, shared with other work), threads "
           f"{ok[0]['threads'] if ok else '-'}, versions {versions}, allocator {env.get('allocator')}, "
           f"OpenMP {env.get('omp')}.",
           f"Load average (1, 5, 15 min) before {fmt_load(report['load_avg']['before'])}, after "
           f"{fmt_load(report['load_avg']['after'])}.",
           "Each measurement in its own child process; timing: warm-up >= 3 runs and 1 s, then >= "
           f"{a['min_runs']} runs and {a['min_duration']} s; median, p90, IQR, min in ms per batch (wall clock). "
           "CPU time: median process CPU time per run, all threads; it excludes time spent waiting for a CPU, "
           "so it is the figure that survives a loaded machine.", "",
           "| repeat | model | backend | median (ms) | p90 (ms) | IQR (ms) | min (ms) | CPU time (ms) | FPS | runs "
           "| peak mem (MB) |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        if "error" in r:
            out.append(f"| {r['repeat']} | {r['name']} | {r['backend']} | failed: {r['error']} | | | | | | | |")
            continue
        out.append(f"| {r['repeat']} | {r['name']} | {r['backend']} | {r['latency_ms']:.1f} | {r['latency_p90_ms']:.1f} "
                   f"| {r['iqr_ms']:.1f} | {r['min_ms']:.1f} | {r['cpu_time_ms']:.1f} | {r['fps']:.2f} | {r['runs']} "
                   f"| {r['peak_mem_mb']:.0f} |")
    out += ["", f"Summary (targets: ratio <= {TARGET_RATIO}, repeats within +-{TARGET_AGREEMENT_PCT:g}%):", "",
            "| model | figure | per repeat | repeat spread (max/min - 1) |", "|---|---|---|---:|"]
    for row in report["summary"]:
        for key, val in row.items():
            if key == "name" or key.endswith("_agreement_pct"):
                continue
            spread = row.get(f"{key}_agreement_pct")
            out.append(f"| {row['name']} | {key} | {', '.join(f'{v:.3g}' for v in val)} | "
                       f"{'-' if spread is None else f'{spread:.1f}%'} |")
    return "\n".join(out) + "\n"


def fmt_load(load: list | tuple) -> str:
    return ", ".join(f"{v:.2f}" for v in load)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = output_dir(args)
    report = run(args)
    size = "x".join(map(str, report["input_size"]))
    tag = args.tag or f"bench_{args.device}_{args.precision}_{size}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{tag}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / f"{tag}.md").write_text(markdown(report))
    print(markdown(report).split("Summary", 1)[1])
    print(f"wrote {out / tag}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

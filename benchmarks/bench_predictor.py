"""Benchmark: do latency predictions hold on the machine where this runs, from a table it did not build?

1. Test models: ``--test`` random variants of EACH shipped space (spaces/eseg-lite.yaml, spaces/eseg.yaml),
   distinct from every model that built or calibrated the tables (held out), measured in full here the
   onnxruntime backend's way (fold, ONNX export, session with 1 thread): median thread CPU time over
   >= 5 runs, ``--passes`` interleaved passes keeping the lowest median; the wall clock is reported beside.
2. Tables, none built by this benchmark: the committed ``reports/lut/onnxruntime-cpu-fp32-512x1024-t1.json``
   (both spaces) and the archived ``reports/lut/archive/...built-2026-11-25.json`` (eseg-lite only; built on
   another 2-vCPU "AMD EPYC" VM: the genuinely foreign one). Each table's fingerprint is compared with
   this machine's and the result stated.
3. Per table and space: predictions uncalibrated (the table as is), after ``escale lut calibrate`` (run as
   the user runs it, in a fresh process; its wall time is reported), and the cheapest alternative, MACs x
   one constant fitted on the calibration's anchor measurements. Reported: the share within ±10% of the
   measured median (target >= 90%), Kendall's tau of the ranking (target >= 0.9), median / max |error|.

Output: ``<home>/bench/predictor/`` (ignored by git; ``escale paths``), ``--out DIR``, or with
``--update-reference`` the committed ``reports/predictor/``; measurements are cached there (``--fresh``
re-measures). Writes ``bench_predictor.{json,md}``. Run with ``nice -n 10`` on a shared machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from escale.paths import add_bench_output_arguments, bench_output

ROOT = Path(__file__).resolve().parents[1]
NAME = "predictor"  # reports/NAME is the committed reference
COMMITTED = ROOT / "reports" / "lut" / "onnxruntime-cpu-fp32-512x1024-t1.json"
ARCHIVED = ROOT / "reports" / "lut" / "archive" / "onnxruntime-cpu-fp32-512x1024-t1.built-2026-11-25.json"
SPACES = ("eseg-lite", "eseg")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input-size", default="512x1024")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--test", type=int, default=20, help="held-out random variants per space")
    p.add_argument("--seed", type=int, default=2, help="seed of the held-out variants (tables: seeds 0 and 1)")
    p.add_argument("--passes", type=int, default=2, help="interleaved measurement passes; lowest median kept")
    p.add_argument("--budget-s", type=float, default=None, help="lut calibrate --budget-s (default: its own)")
    p.add_argument("--fresh", action="store_true", help="ignore cached measurements")
    add_bench_output_arguments(p, NAME)
    return p.parse_args(argv)


def output_dir(args: argparse.Namespace) -> Path:
    return bench_output(args, NAME)


def export_full(spec, size, folder: Path) -> tuple[Path, object]:  # noqa: ANN001
    """The onnxruntime backend's path: build (seed 0), fold softmax and BN, export ONNX opset 17."""
    import torch

    from escale.models import build_model
    from escale.profiler.latency.fold import prepare_for_inference
    from escale.profiler.latency.onnxrt import export_onnx

    torch.manual_seed(0)
    model = build_model(spec).eval()
    side = 2 ** spec.decoder.max_level
    prepare_for_inference(model, torch.randn(1, 3, side, side))
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    return export_onnx(model, x, folder / f"{spec.spec_id}.onnx"), x


def measure_pass(specs, size, threads, cache: dict, folder: Path, first: bool) -> None:  # noqa: ANN001
    """One pass over ``specs``: the first exports and times wall clock and thread CPU time; later passes
    re-time thread CPU time only. ``median_ms`` keeps the lowest CPU median over passes."""
    import torch

    from escale.profiler.latency import TimingConfig, time_callable
    from escale.profiler.latency.onnxrt import OrtRunner
    from escale.search.lut import thread_cpu_timer

    cfg = TimingConfig(warmup_runs=1, warmup_s=0.0, min_runs=5, min_duration_s=0.0, max_duration_s=30.0)
    for i, spec in enumerate(specs):
        m = cache.setdefault(spec.spec_id, {"name": spec.name, "cpu_medians_ms": []})
        t0 = time.perf_counter()
        if not Path(m.get("path", "")).is_file():
            path, x = export_full(spec, size, folder)
            m["path"] = str(path)
        else:
            path, x = Path(m["path"]), torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
        fn = OrtRunner(path, threads=threads).bind(x)
        if "wall_median_ms" not in m:
            wall = time_callable(fn, TimingConfig(warmup_runs=1, warmup_s=0.0, min_runs=3, min_duration_s=0.0))
            m.update(wall_median_ms=wall.median_ms)
        cpu = time_callable(fn, cfg, timer=thread_cpu_timer)
        m["cpu_medians_ms"].append(cpu.median_ms)
        m["median_ms"], m["iqr_ms"] = min(m["cpu_medians_ms"]), cpu.iqr_ms
        m["load_avg_1min"] = os.getloadavg()[0]
        m.setdefault("measure_s", time.perf_counter() - t0)
        print(f"pass {'1' if first else '+'} {i + 1}/{len(specs)} {spec.name} {spec.spec_id}: "
              f"cpu {cpu.median_ms:.1f} ms", flush=True)


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b of two rankings (ties counted as neither concordant nor discordant)."""
    conc = disc = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 or db == 0:
                ties_a += da == 0
                ties_b += db == 0
                continue
            conc += (da > 0) == (db > 0)
            disc += (da > 0) != (db > 0)
    n0 = len(a) * (len(a) - 1) / 2
    return (conc - disc) / (((n0 - ties_a) * (n0 - ties_b)) ** 0.5 or 1.0)


def score(pred: list[float], meas: list[float]) -> dict:
    errs = [100 * (p / m - 1) for p, m in zip(pred, meas, strict=True)]
    return {"within_10pct": sum(abs(e) <= 10 for e in errs) / len(errs), "kendall_tau": kendall_tau(pred, meas),
            "median_abs_err_pct": statistics.median(abs(e) for e in errs), "max_abs_err_pct": max(abs(e) for e in errs),
            "median_err_pct": statistics.median(errs)}


def run_calibrate(table: Path, home: Path, budget_s: float | None) -> tuple[dict, float]:
    """``escale lut calibrate --lut TABLE --format json`` in a fresh process with an empty cache, as a user runs it
    the first time; (the calibration file, wall seconds of the whole command)."""
    cmd = [sys.executable, "-m", "escale.cli.main", "lut", "calibrate", "--lut", str(table), "--format", "json"]
    cmd += ["--budget-s", str(budget_s)] if budget_s else []
    import shutil

    shutil.rmtree(home, ignore_errors=True)  # a first calibration: no cached fingerprint, no cached anchor export
    env = {**os.environ, "ESCALE_HOME": str(home), "ESCALE_CACHE_DIR": str(home / "cache"), "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"lut calibrate failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)[0], wall


def evaluate_table(label: str, path: Path, spaces: list[str], tests: dict, cache: dict, out: Path,
                   budget_s: float | None) -> dict:
    from escale.profiler import profile
    from escale.search.calibration import MachineCalibration, table_fingerprint
    from escale.search.lut import load_table
    from escale.search.predictor import LatencyPredictor

    table = load_table(path)
    why = table.mismatch(table_fingerprint(table))
    with tempfile.TemporaryDirectory() as home:  # a first calibration's caches stay out of the report folder
        cal_dict, cal_wall_s = run_calibrate(path, Path(home) / label, budget_s)
    cal = MachineCalibration.from_dict({k: v for k, v in cal_dict.items() if k != "path"}, cal_dict["path"])
    k_macs = statistics.median(a["measured_ms"] / profile(a_spec(a, table), input_size=table.input_size).macs
                               for a in cal.anchors)
    plain, calibrated = LatencyPredictor(table), LatencyPredictor(table, machine=cal)
    res = {"table": str(path.relative_to(ROOT)), "foreign_to_this_machine": why is not None,
           "fingerprint_mismatch": why, "table_built_at": table.env.get("built_at"), "kernels": len(table.kernels),
           "calibration_s": cal.seconds, "calibrate_command_wall_s": round(cal_wall_s, 1),
           "class_ratios": cal.class_ratios, "corrections": cal.corrections, "anchors": cal.anchors,
           "kernels_sampled": len(cal.kernels), "macs_ms_per_gmac": k_macs * 1e9, "spaces": {}}
    for space in spaces:
        specs = tests[space]
        meas = [cache[s.spec_id]["median_ms"] for s in specs]
        p0 = [plain.predict(s).latency_ms for s in specs]
        p1 = [calibrated.predict(s).latency_ms for s in specs]
        pm = [k_macs * profile(s, input_size=table.input_size).macs for s in specs]
        res["spaces"][space] = {"uncalibrated": score(p0, meas), "calibrated": score(p1, meas),
                                "macs_baseline": score(pm, meas),
                                "rows": [{"name": s.name, "spec_id": s.spec_id, "measured_ms": m, "uncalibrated_ms": a,
                                          "calibrated_ms": b, "macs_ms": c}
                                         for s, m, a, b, c in zip(specs, meas, p0, p1, pm, strict=True)]}
    return res


def a_spec(anchor: dict, table):  # noqa: ANN001, ANN201 - the anchor's ESegSpec from the table's build set
    from escale.search.calibration import anchor_models
    from escale.search.predictor import LatencyPredictor

    return next(s for s in anchor_models(table, LatencyPredictor(table)) if s.spec_id == anchor["spec_id"])


def main() -> None:
    args = parse()
    from escale.search import load_space
    from escale.search.lut import load_table
    from escale.spec import parse_input_size

    t_start = time.perf_counter()
    out = output_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    size = parse_input_size(args.input_size)
    load0 = os.getloadavg()
    known = set()
    for path in (COMMITTED, ARCHIVED):
        t = load_table(path)
        known |= {m["spec_id"] for m in t.built_from} | {m["spec_id"] for m in (t.calibration or {}).get("models", [])}
    tests = {name: [dataclasses.replace(s, name=f"{name}-test-{i}") for i, s in enumerate(
        load_space(ROOT / "spaces" / f"{name}.yaml").random_specs(args.test, seed=args.seed, exclude=known,
                                                                  input_size=size))] for name in SPACES}
    meas_path = out / f"measurements-test-{size[0]}x{size[1]}-t{args.threads}.json"
    cache = json.loads(meas_path.read_text()) if meas_path.is_file() and not args.fresh else {}
    everything = tests["eseg-lite"] + tests["eseg"]
    with tempfile.TemporaryDirectory(prefix="escale-bench-") as tmp:
        for m in cache.values():
            m.pop("path", None)
        for p in range(args.passes):
            todo = [s for s in everything if len(cache.get(s.spec_id, {}).get("cpu_medians_ms", [])) <= p]
            measure_pass(todo, size, args.threads, cache, Path(tmp), first=p == 0)
            meas_path.write_text(json.dumps({k: {f: v for f, v in m.items() if f != "path"}
                                             for k, m in cache.items()}, indent=1))
    measure_s = time.perf_counter() - t_start
    tables = {"committed": evaluate_table("committed", COMMITTED, list(SPACES), tests, cache, out, args.budget_s),
              "archived-2026-11-25": evaluate_table("archived", ARCHIVED, ["eseg-lite"], tests, cache, out,
                                                    args.budget_s)}
    from escale.profiler.latency.fingerprint import cpu_info

    info = cpu_info()
    result = {
        "machine": f"{info['cpu_model']} ({', '.join(info['cpu_flags'])}), {platform.machine()}, "
                   f"{info['logical_cpus']} logical CPUs shared with other jobs",
        "load_avg_1min_start": load0[0], "load_avg_1min_end": os.getloadavg()[0], "backend": "onnxruntime",
        "device": "cpu", "precision": "fp32", "input_size": list(size), "threads": args.threads,
        "clock": "thread_cpu", "test_seed": args.seed, "targets": {"within_10pct": 0.9, "kendall_tau": 0.9},
        "test_models": {k: [s.spec_id for s in v] for k, v in tests.items()}, "tables": tables,
        "measure_s": round(measure_s, 1), "total_s": round(time.perf_counter() - t_start, 1),
        "measured": {s.spec_id: {k: cache[s.spec_id][k] for k in ("name", "median_ms", "iqr_ms", "wall_median_ms",
                                                                  "cpu_medians_ms")} for s in everything},
    }
    (out / "bench_predictor.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "bench_predictor.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    h, w = r["input_size"]
    lines = [
        f"# Latency predictions on this machine — ONNX Runtime CPU fp32, {h}x{w}, {r['threads']} thread",
        "",
        f"Machine: {r['machine']}; 1-min load average {r['load_avg_1min_start']:.2f} at start, "
        f"{r['load_avg_1min_end']:.2f} at end. Measured: median thread CPU time of each held-out model "
        f"(lowest of the passes). Benchmark total {r['total_s']:.0f} s.",
        "",
        "| table | foreign here? | space | method | within ±10% | Kendall τ | median abs err | max abs err |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for label, t in r["tables"].items():
        foreign = f"yes: {t['fingerprint_mismatch']}" if t["foreign_to_this_machine"] else "no (built here)"
        for space, s in t["spaces"].items():
            for method in ("uncalibrated", "calibrated", "macs_baseline"):
                m = s[method]
                lines.append(f"| {label} | {foreign} | {space} | {method} | {100 * m['within_10pct']:.0f}% | "
                             f"{m['kendall_tau']:.3f} | {m['median_abs_err_pct']:.1f}% | {m['max_abs_err_pct']:.1f}% |")
    lines.append("")
    for label, t in r["tables"].items():
        ratios = ", ".join(f"{k} x{v:.2f}" for k, v in t["class_ratios"].items())
        corr = ", ".join(f"{k} x{v:.3f}" for k, v in t["corrections"].items())
        anchors = ", ".join(f"{a['name']} {a['measured_ms']:.1f} ms (x{a.get('correction', 0.0):.3f}"
                            f"{', twin' if 'table_measured_ms' in a else ''})" for a in t["anchors"])
        lines.append(f"- **{label}** ({t['table']}, built {t['table_built_at']}, {t['kernels']} kernels): "
                     f"`lut calibrate` measured for {t['calibration_s']:.1f} s ({t['calibrate_command_wall_s']:.1f} s "
                     f"for the whole command); {t['kernels_sampled']} kernels re-timed, class ratios {ratios}; "
                     f"anchors {anchors}; corrections {corr}; MACs baseline {t['macs_ms_per_gmac']:.2f} ms/GMAC.")
    for label, t in r["tables"].items():
        for space, s in t["spaces"].items():
            lines += ["", f"## {label}, {space}", "",
                      "| model | spec_id | measured ms | uncalibrated | calibrated | MACs x k |", "|---|---|---:|---:|---:|---:|"]
            for row in s["rows"]:
                m = row["measured_ms"]
                lines.append(f"| {row['name']} | {row['spec_id']} | {m:.1f} | {row['uncalibrated_ms']:.1f} "
                             f"({100 * (row['uncalibrated_ms'] / m - 1):+.1f}%) | {row['calibrated_ms']:.1f} "
                             f"({100 * (row['calibrated_ms'] / m - 1):+.1f}%) | {row['macs_ms']:.1f} "
                             f"({100 * (row['macs_ms'] / m - 1):+.1f}%) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""Benchmark: how fast escale counts (dispatch trace on the meta device) against fvcore, and that the MACs agree.

In one run:
1. **Family**: ``escale.profiler.profile(spec)`` for the six ESeg models at 1024x2048, the first call after
   imports (meta builds + counts, what ``escale profile --family eseg`` does), in N fresh processes:
   median and range, wall clock. Target: <= 1 s.
2. **Peers**: each tool on each model in its own fresh process, given the same thing, median of R runs
   after one warm-up:
   - *module*: the same ``nn.Module`` instance (timm ``resnet50`` and ``efficientnet_b0`` at 224x224, ESeg-S
     at 1024x2048): ``escale.profile(module)`` (meta copy, count, params, id) vs fvcore
     ``FlopCountAnalysis(module, x).by_operator()`` (JIT trace + a real CPU forward pass);
   - *by name* (timm models): ``escale.profile("timm:NAME")`` (meta build included) vs
     ``timm.create_model(NAME)`` + fvcore (real build included), what a user types either way.
   Conv/linear multiply-adds must be equal; target: escale >= 20x faster.
Writes bench_profile.{json,md} to <home>/bench/profile/ (ignored by git; `escale paths`), to --out DIR, or with
--update-reference to the committed reports/profile/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import timm
import torch

import escale
import escale.profiler  # noqa: F401  (imports happen here, outside the timings)
from escale.paths import add_bench_output_arguments, bench_output

NAME = "profile"  # reports/NAME is the committed reference
FAMILY_TARGET_S, SPEEDUP_TARGET = 1.0, 20.0
FVCORE_MACS = ("conv", "linear", "matmul", "addmm", "bmm", "einsum")  # fvcore's product ops (multiply-adds)
FAMILY_CHILD = """
import json, time
import escale, escale.profiler
specs = list(escale.family("eseg"))
t0 = time.perf_counter()
records = [escale.profiler.profile(s, (1024, 2048)) for s in specs]
print(json.dumps({"family_s": time.perf_counter() - t0, "macs": [r.macs for r in records]}))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_output_arguments(p, NAME)
    p.add_argument("--processes", type=int, default=7, help="fresh processes for the family timing (default: 7)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per tool and model (default: 5)")
    return p.parse_args(argv)


def output_dir(args: argparse.Namespace) -> Path:
    return bench_output(args, NAME)


def time_family(processes: int) -> dict:
    """The family's first-call time in fresh processes (median, min, max seconds)."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    runs = [json.loads(subprocess.run([sys.executable, "-c", FAMILY_CHILD], env=env, check=True,
                                      capture_output=True, text=True).stdout) for _ in range(processes)]
    times = [r["family_s"] for r in runs]
    return {"processes": processes, "median_s": statistics.median(times), "min_s": min(times),
            "max_s": max(times), "macs": runs[0]["macs"]}


PEER_CHILD = """
import json, logging, statistics, sys, time
import timm, torch
import escale, escale.profiler
from fvcore.nn import FlopCountAnalysis

tool, name, how, h, w, repeats, FVCORE_MACS = json.loads(sys.argv[1])
logging.getLogger("fvcore").setLevel(logging.ERROR)
x = torch.zeros(1, 3, h, w)

def build():
    torch.manual_seed(0)
    return (escale.build_model(escale.preset(name)) if name == "ESeg-S" else timm.create_model(name)).eval()

def fvcore_macs(model):
    with torch.no_grad():
        fca = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return sum(v for k, v in fca.by_operator().items() if k in FVCORE_MACS)

model = build() if how == "instance" else None
if tool == "escale":
    run = (lambda: escale.profile(model, input_size=(h, w)).macs) if model is not None else (
        lambda: escale.profile("timm:" + name).macs)
else:
    run = (lambda: fvcore_macs(model)) if model is not None else (lambda: fvcore_macs(build()))
macs = run()  # warm-up (lazy set-up in torch, timm and fvcore)
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
print(json.dumps({"median_s": statistics.median(times), "macs": macs}))
"""
HOW = {"instance": "same nn.Module instance", "name": "by name (build included)"}


def measure(tool: str, name: str, how: str, size: tuple[int, int], repeats: int) -> dict:
    """One tool on one model in a fresh process: median seconds of ``repeats`` runs after a warm-up, and MACs."""
    root = Path(__file__).resolve().parents[1]
    arg = json.dumps([tool, name, how, size[0], size[1], repeats, FVCORE_MACS])
    proc = subprocess.run([sys.executable, "-c", PEER_CHILD, arg], env={**os.environ, "PYTHONPATH": str(root)},
                          check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peers(repeats: int) -> list[dict]:
    """escale vs fvcore, each measurement in its own process (no shared allocator or GC state)."""
    rows = []
    for name, size, how, reps in (("resnet50", (224, 224), "instance", repeats),
                                  ("resnet50", (224, 224), "name", repeats),
                                  ("efficientnet_b0", (224, 224), "instance", repeats),
                                  ("efficientnet_b0", (224, 224), "name", repeats),
                                  ("ESeg-S", (1024, 2048), "instance", 1)):
        ours, theirs = measure("escale", name, how, size, reps), measure("fvcore", name, how, size, reps)
        rows.append({"model": name, "input_size": list(size), "how": HOW[how], "repeats": reps,
                     "escale_s": ours["median_s"], "fvcore_s": theirs["median_s"],
                     "speedup": theirs["median_s"] / ours["median_s"], "escale_macs": ours["macs"],
                     "fvcore_macs": theirs["macs"], "macs_equal": ours["macs"] == theirs["macs"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = output_dir(args)
    load = [os.getloadavg()[0]]
    family = time_family(args.processes)
    rows = peers(args.repeats)
    load.append(os.getloadavg()[0])
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores ({platform.processor() or 'cpu'}), torch "
                   f"{torch.__version__}, timm {timm.__version__}, torch threads {torch.get_num_threads()}",
        "load_avg_1min": load, "family": family, "peers": rows,
        "targets": {"family_s": FAMILY_TARGET_S, "speedup_vs_fvcore": SPEEDUP_TARGET, "macs": "equal"},
        "pass": {"family": family["median_s"] <= FAMILY_TARGET_S,
                 **{f"{r['model']} {r['how']}": r["speedup"] >= SPEEDUP_TARGET and r["macs_equal"] for r in rows}},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_profile.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# Counting benchmark: escale (dispatch trace, meta device) vs fvcore", "",
        f"Machine: {result['machine']}; 1-min load average {load[0]:.2f} before, {load[1]:.2f} after. "
        "Wall-clock seconds after imports; MACs = multiply-adds (conv/linear/matmul), batch 1.", "",
        f"**ESeg family** (6 models at 1024x2048, build included, first call in a fresh process, "
        f"{family['processes']} processes): median {family['median_s']:.2f} s (min {family['min_s']:.2f}, "
        f"max {family['max_s']:.2f}); target <= {FAMILY_TARGET_S:g} s.", "",
        "| model | input | what each tool is given | escale (s) | fvcore (s) | speed-up | MACs escale | MACs fvcore |",
        "|---|---|---|---:|---:|---:|---:|---:|",
        *(f"| {r['model']} | {r['input_size'][0]}x{r['input_size'][1]} | {r['how']} | {r['escale_s']:.4f} | "
          f"{r['fvcore_s']:.3f} | {r['speedup']:.1f}x | {r['escale_macs']:,} | {r['fvcore_macs']:,} |" for r in rows),
        "", f"Each cell: one fresh process, median of {args.repeats} runs after a warm-up (ESeg-S: 1 run; fvcore "
        f"takes seconds there). Target: >= {SPEEDUP_TARGET:g}x with equal MACs.",
    ]
    (out / "bench_profile.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"wrote {out / 'bench_profile'}.json and .md")


if __name__ == "__main__":
    main()

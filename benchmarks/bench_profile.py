"""Benchmark: counting speed of the default (dispatch, meta-device) counter vs fvcore.

Times, in one process after imports: the whole ESeg family at 1024x2048 (build included), first call
(cold: torch's lazy meta-kernel set-up included) and the best of three warm calls; ESeg-S with fvcore
(a real CPU forward pass under JIT tracing). Checks that conv MACs agree within 1%.
Writes bench_profile.{json,md} to <home>/bench/profile/ (ignored by git; `escale paths`), to --out DIR, or
with --update-reference to the committed reports/profile/. Targets: family <= 3 s; >= 10x faster than fvcore
on ESeg-S.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

import escale
import escale.profiler  # noqa: F401  (imports happen here, outside the timings)
from escale.paths import bench_dir

NAME = "profile"  # reports/NAME is the committed reference
INPUT = (1024, 2048)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--out", help=f"output folder (default: <home>/bench/{NAME}, ignored by git)")
    g.add_argument("--update-reference", action="store_true", help=f"write the committed reports/{NAME}/")
    return p.parse_args(argv)


def output_dir(args: argparse.Namespace) -> Path:
    return Path(args.out) if args.out else bench_dir(NAME, args.update_reference)


def time_family() -> tuple[float, list]:
    t0 = time.perf_counter()
    records = [escale.profile(s, input_size=INPUT) for s in escale.family("eseg")]
    return time.perf_counter() - t0, records


def main(argv: list[str] | None = None) -> None:
    out = output_dir(parse_args(argv))
    cold_s, records = time_family()
    warm_s = min(time_family()[0] for _ in range(3))
    t0 = time.perf_counter()
    ours_s = escale.profile(escale.preset("ESeg-S"), input_size=INPUT)
    ours_s_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    fv = escale.profile(escale.preset("ESeg-S"), input_size=INPUT, counter="fvcore")
    fvcore_s = time.perf_counter() - t0
    agree = fv.macs / ours_s.macs - 1
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
                   f"torch threads {torch.get_num_threads()}",
        "load_avg_1min": os.getloadavg()[0],
        "input_size": list(INPUT),
        "family_cold_s": round(cold_s, 3),
        "family_warm_best_of_3_s": round(warm_s, 3),
        "eseg_s_dispatch_s": round(ours_s_time, 3),
        "eseg_s_fvcore_s": round(fvcore_s, 3),
        "speedup_vs_fvcore": round(fvcore_s / ours_s_time, 1),
        "eseg_s_macs_dispatch": ours_s.macs,
        "eseg_s_macs_fvcore_conv": fv.macs,
        "conv_macs_rel_diff": agree,
        "targets": {"family_s_max": 3.0, "speedup_min": 10.0, "conv_macs_rel_diff_max": 0.01},
        "family": [{"name": r.name, "params": r.params, "macs": r.macs} for r in records],
    }
    result["pass"] = {
        "family_warm_le_3s": warm_s <= 3.0, "family_cold_le_3s": cold_s <= 3.0,
        "speedup_ge_10x": fvcore_s / ours_s_time >= 10, "conv_macs_within_1pct": abs(agree) <= 0.01,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_profile.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# Counting benchmark (MACs = multiply-adds, batch 1, 1024x2048)", "",
        f"Machine: {result['machine']}; 1-min load average at start: {result['load_avg_1min']:.2f}.", "",
        "| measurement | seconds | target |", "|---|---:|---|",
        f"| whole family (6 models, build included), first call in process | {cold_s:.2f} | <= 3 s |",
        f"| whole family, best of 3 warm calls | {warm_s:.2f} | <= 3 s |",
        f"| ESeg-S, dispatch counter (meta device) | {ours_s_time:.3f} | |",
        f"| ESeg-S, fvcore (real CPU forward) | {fvcore_s:.2f} | |",
        f"| speed-up vs fvcore | {fvcore_s / ours_s_time:.1f}x | >= 10x |", "",
        f"Conv MACs, ESeg-S: dispatch {ours_s.macs:,} vs fvcore {fv.macs:,} (rel. diff {agree:+.2e}; target 1%).",
    ]
    (out / "bench_profile.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"wrote {out / 'bench_profile'}.json and .md")


if __name__ == "__main__":
    main()

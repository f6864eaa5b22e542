"""Benchmark: profiling the whole ESeg family at 1024x2048 on the meta device, in fresh processes.

Each of N processes imports escale, then times (wall clock, ``perf_counter``):
- ``family``: ``escale.profiler.profile(spec)`` for the 6 family specs, the first call after imports
  (builds each model on the meta device and counts it: what ``escale profile --family eseg`` does);
- ``build`` / ``count``: a second pass split into the 6 meta builds and the 6 dispatch counts.
Reports the median and range over the processes and the 1-minute load average before and after (the
machine may be shared). ``--root`` times another checkout (e.g. an older commit, for before/after).
Writes reports/profile/bench_trace.{json,md} when run on this checkout. Target: family <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "profile"
TARGET_S = 1.0

CHILD = """
import json, time
import escale, escale.profiler
from escale.models import build_model
from escale.profiler.counters import get_counter

specs = list(escale.family("eseg"))
t0 = time.perf_counter()
records = [escale.profiler.profile(s, (1024, 2048)) for s in specs]
family = time.perf_counter() - t0
t0 = time.perf_counter()
models = [build_model(s, device="meta") for s in specs]
build = time.perf_counter() - t0
counter = get_counter("dispatch")
t0 = time.perf_counter()
for s, m in zip(specs, models):
    counter.count(s, (1024, 2048), m)
count = time.perf_counter() - t0
print(json.dumps({"family": family, "build": build, "count": count, "macs": [r.macs for r in records],
                  "escale": escale.__file__}))
"""


def run(root: Path, n: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root)}
    load_before = os.getloadavg()[0]
    runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=root, check=True,
                                      capture_output=True, text=True).stdout) for _ in range(n)]
    assert all(Path(r["escale"]).is_relative_to(root) for r in runs), runs[0]["escale"]
    summary = {k: {"median_s": round(statistics.median(r[k] for r in runs), 3),
                   "min_s": round(min(r[k] for r in runs), 3), "max_s": round(max(r[k] for r in runs), 3)}
               for k in ("family", "build", "count")}
    return {"root": str(root), "processes": n, "load_avg_1min": [load_before, os.getloadavg()[0]],
            "macs": runs[0]["macs"], **summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout whose escale is timed")
    ap.add_argument("-n", type=int, default=5, help="processes (median over them)")
    args = ap.parse_args()
    res = run(args.root.resolve(), args.n)
    res["target_family_s"] = TARGET_S
    md = [
        "# Family profiling on the meta device (6 ESeg models, 1024x2048, batch 1)", "",
        f"{res['processes']} fresh processes; 1-min load average {res['load_avg_1min'][0]:.2f} before, "
        f"{res['load_avg_1min'][1]:.2f} after. Seconds after imports (wall clock).", "",
        "| measurement | median | min | max |", "|---|---:|---:|---:|",
        *(f"| {label} | {res[k]['median_s']:.3f} | {res[k]['min_s']:.3f} | {res[k]['max_s']:.3f} |"
          for k, label in (("family", f"profile() x 6, first call (target <= {TARGET_S:g} s)"),
                           ("build", "6 meta builds (second pass)"), ("count", "6 dispatch counts (second pass)"))),
    ]
    if args.root.resolve() == ROOT:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "bench_trace.json").write_text(json.dumps(res, indent=2) + "\n")
        (OUT / "bench_trace.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

"""Benchmark (paper Table 1 / Insight 1 on a CPU): how deep the feature pyramid must go for a far cue.

A controlled experiment on the embedded ``synthetic:task=cue`` dataset (escale/data/synthetic.py): two
object classes drawn from one appearance distribution, told apart only by the colour of a full-width
band ``context_distance`` x H above them. The *far* task puts the band 0.6 H above the objects; the
*local* control puts it right on them (distance 0) and changes nothing else (classes, object rows,
appearance). Models are identical except ``decoder.max_level`` (far task: P5, P8, P9; local control:
P5 and P9, the pair its question needs); every (task, level) is trained with each seed, and the runs
of one seed are paired. Reported per task and level: mIoU and context accuracy
(of the object pixels predicted as an object class, the share given the right one; 50% = chance), and
the mean paired difference deepest level - P5 with a two-sided 95% t interval over seeds
(mean +- t_{0.975, n-1} * sd / sqrt(n) of the per-seed differences).

Geometry: 512x512, as in the product-side probe (../shared/notes/context-probe.md): the far cue (0.6 H =
307 px above the objects) is out of reach of P5 features of this small encoder, and P8 is 2x2 cells (P7
4x4, P5 16x16); P9 would be 1x1, where BatchNorm sees 4 values per channel at batch 4.
Schedule: 300 steps x batch 4, the trainer's OHEM loss, lr 0.05, weight decay 1e-4, torch's OneCycleLR
(30% warm-up, momentum cycled 0.95-0.85-0.95). Why (reports/context/earlier/): learning the colour ->
class rule is a sudden event whose step varies from run to run; with timm's cosine schedule (linear
warm-up, momentum 0.9) a quarter to a half of the runs, the local control included, had not made it
and predicted one object class for all objects, which makes a paired t interval over 3 seeds useless.
In pilots (schedule_pilots.md) the same model, data and peak lr learnt it with OneCycleLR where the
cosine schedule did not; seeds 0-11 were used while choosing. On fresh seeds 12-14 one P8 run of three did not
learn the cue and the interval crossed 0 (context_levels_seeds12-14.md); the default is therefore 5 fresh
seeds, 15-19 (decided after that run; about 28 minutes with ``--jobs 2``).
One intra-op thread per run (on a busy 2-core machine 2 threads ran 20-100x slower); ``--jobs 2`` runs two
at once; runs alternate task and level inside each seed so that load hits all alike.
Writes context_levels.{json,md} to <home>/bench/context/ (ignored by git; `escale paths`), to --out DIR,
or with --update-reference to the committed reports/context/. Run with ``nice`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from functools import lru_cache
from pathlib import Path

import torch
from bench_jobs import run_jobs

import escale
import escale.train
from escale.data import make_dataset
from escale.data.synthetic import dataset_name
from escale.paths import add_bench_output_arguments, bench_output
from escale.spec import parse_input_size

NAME = "context"  # reports/NAME is the committed reference
TASKS = {"far": 0.6, "local": 0.0}  # context_distance (fraction of H) per task


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=["far", "local"])
    p.add_argument("--far-distance", type=float, default=TASKS["far"], help="context_distance of the far task")
    p.add_argument("--seeds", type=int, nargs="+", default=[15, 16, 17, 18, 19],
                   help="default: fresh seeds (0-11 chose the schedule, 12-14 were a 3-seed run)")
    p.add_argument("--levels", type=int, nargs="+", default=[5, 8],
                   help="max levels of the far task; the first is the base")
    p.add_argument("--local-levels", type=int, nargs="+", default=[5, 8],
                   help="max levels of the local control; the first is the base")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup-frac", type=float, default=0.3, help="warm-up, as a fraction of the steps")
    p.add_argument("--schedule", choices=("onecycle", "cosine"), default="onecycle", help="lr schedule")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--input-size", default="512x512", help="HxW pixels (training and evaluation)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--jobs", type=int, default=2, help="runs at once, each in its own process (one thread each)")
    p.add_argument("--ohem", action=argparse.BooleanOptionalAction, default=True,
                   help="the trainer's OHEM loss (default) or plain cross-entropy (--no-ohem)")
    p.add_argument("--eval-images", type=int, default=64)
    p.add_argument("--width", type=float, default=0.25, help="encoder width multiplier")
    p.add_argument("--depth", type=float, default=0.3, help="encoder depth multiplier")
    p.add_argument("--channels", type=int, default=16, help="BiFPN channels")
    p.add_argument("--repeats", type=int, default=2, help="BiFPN layers")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads; on a busy 2-core machine 2 threads ran 20-100x slower than 1")
    p.add_argument("--tag", default="context_levels", help="output file stem")
    p.add_argument("--render-only", action="store_true", help="rewrite the .md from an existing .json")
    add_bench_output_arguments(p, NAME)
    return p.parse_args(argv)


def output_dir(args: argparse.Namespace) -> Path:
    return bench_output(args, NAME)


# --- statistics (pure) -------------------------------------------------------------------------------------
def _t_cdf(x: float, df: int, n: int = 2000) -> float:
    """Student t CDF at ``x >= 0`` by Simpson's rule over the density (error far below 1e-6 here)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    f = [c * (1 + (x * i / n) ** 2 / df) ** (-(df + 1) / 2) for i in range(n + 1)]
    return 0.5 + x / n / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))


@lru_cache(maxsize=64)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with ``df`` degrees of freedom, by bisection."""
    if not (0.5 < p < 1 and df >= 1):
        raise ValueError(f"t_quantile: p={p}, df={df} (allowed: 0.5 < p < 1, df >= 1)")
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def t_interval(values: list[float], confidence: float = 0.95) -> dict[str, float]:
    """Two-sided t interval for the mean of ``values`` (e.g. per-seed paired differences)."""
    n = len(values)
    mean = statistics.fmean(values) if n else float("nan")
    if n < 2:
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "sd": float("nan"), "n": n}
    sd = statistics.stdev(values)
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "sd": sd, "n": n}


def spread(values: list[float | None]) -> dict[str, float]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals), "max": max(vals), "n": len(vals)}


def context_accuracy(confusion: list[list[int]], pair: tuple[int, int]) -> float | None:
    """Of the pixels of class ``pair[0]`` or ``pair[1]`` predicted as one of the two, the share predicted
    right (0.5 = chance); None when no such pixel was predicted as either."""
    a, b = pair
    right = confusion[a][a] + confusion[b][b]
    total = right + confusion[a][b] + confusion[b][a]
    return right / total if total else None


def paired_differences(rows: list[dict], key: str, task: str, hi: int, lo: int) -> list[float]:
    """Per seed, ``key`` at level ``hi`` minus at level ``lo`` on ``task`` (seeds missing either are skipped)."""
    by = {(r["task"], r["max_level"], r["seed"]): r[key] for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    return [by[(task, hi, s)] - by[(task, lo, s)] for s in seeds
            if by.get((task, hi, s)) is not None and by.get((task, lo, s)) is not None]


# --- runs --------------------------------------------------------------------------------------------------
def base_spec(args: argparse.Namespace) -> escale.ESegSpec:
    return escale.preset("ESeg-Lite-S").with_overrides({
        "encoder.width": args.width, "encoder.depth": args.depth, "decoder.channels": args.channels,
        "decoder.repeats": args.repeats, "num_classes": 4})


def task_levels(args: argparse.Namespace) -> dict[str, list[int]]:
    return {task: (args.levels if task == "far" else args.local_levels) for task in args.tasks}


def task_dataset(args: argparse.Namespace, task: str) -> str:
    return dataset_name("cue", args.far_distance if task == "far" else TASKS[task])


def one_run(args: argparse.Namespace, seed: int, task: str, level: int) -> dict:
    """Train and score one (seed, task, level); the row of the report."""
    size = parse_input_size(args.input_size)
    name = task_dataset(args, task)
    ds = make_dataset(name, "val", size=size)
    pair = tuple(ds.class_names.index(c) for c in ds.context_classes)
    base = base_spec(args)
    spec = base.with_overrides({"name": f"{base.name}+tiny+max_level={level}", "decoder.max_level": level})
    rec = escale.train.train(spec, dataset=name, steps=args.steps, input_size=size, batch_size=args.batch_size,
                             lr=args.lr, weight_decay=args.weight_decay, seed=seed, ohem=args.ohem,
                             warmup_steps=round(args.warmup_frac * args.steps), schedule=args.schedule,
                             eval_images=args.eval_images, threads=args.threads)
    return {"task": task, "dataset": name, "max_level": level, "seed": seed, "miou": rec.miou,
            "context_accuracy": context_accuracy(rec.confusion_matrix, pair),
            "context_miou": spread([rec.iou_per_class[c] for c in ds.context_classes])["mean"],
            "pixel_acc": rec.pixel_acc, "final_loss": rec.final_loss, "train_seconds": rec.train_seconds,
            "eval_seconds": rec.eval_seconds, "iou_per_class": rec.iou_per_class, "spec_id": rec.spec_id,
            "params": escale.profile(spec, input_size=size).params, "load_avg": os.getloadavg()[0]}


def run(args: argparse.Namespace) -> list[dict]:
    """Every (seed, task, level), alternating task and level inside each seed; ``args.jobs`` at once."""
    plan = [(seed, task, level) for seed in args.seeds for task in args.tasks for level in task_levels(args)[task]]

    def show(row: dict) -> None:
        print(f"{row['task']} P{row['max_level']} seed {row['seed']}: mIoU {100 * row['miou']:.1f}%  context acc "
              f"{_pct(row['context_accuracy'])}  ({row['train_seconds']:.0f} s, load {row['load_avg']:.1f})",
              flush=True)

    return run_jobs(one_run, args, plan, args.jobs, show)


def summarise(rows: list[dict], task_levels: dict[str, list[int]]) -> dict:
    out: dict = {}
    for task, levels in task_levels.items():
        lo, hi = levels[0], max(levels)
        mine = [r for r in rows if r["task"] == task]
        out[task] = {f"P{lv}": {k: spread([r[k] for r in mine if r["max_level"] == lv])
                                for k in ("miou", "context_accuracy", "context_miou", "pixel_acc", "train_seconds")}
                     for lv in levels}
        for k in ("miou", "context_accuracy"):
            for lv in levels[1:]:
                out[task][f"P{lv}_minus_P{lo}_{k}"] = t_interval(paired_differences(mine, k, task, lv, lo))
        out[task]["deepest"] = f"P{hi}_minus_P{lo}"
    if {"far", "local"} <= set(task_levels) and out["far"]["deepest"] == out["local"]["deepest"]:
        lo, hi = task_levels["far"][0], max(task_levels["far"])  # the far effect beyond the local one:
        far = paired_differences(rows, "miou", "far", hi, lo)
        local = paired_differences(rows, "miou", "local", hi, lo)
        if len(far) == len(local):
            out[f"far_minus_local_P{hi}_minus_P{lo}_miou"] = t_interval([f - v for f, v in zip(far, local, strict=True)])
    return out


def verdict(summary: dict) -> list[str]:
    """The issue's target: far task, deepest beats P5 with a 95% interval above 0; local: the interval holds 0."""
    lines = []
    if "far" in summary:
        d = summary["far"][summary["far"]["deepest"] + "_miou"]
        ok = d["low"] > 0
        lines.append(f"far task: {'MET' if ok else 'MISSED'} (interval {_iv(d)} {'excludes' if ok else 'includes'} 0)")
    if "local" in summary:
        d = summary["local"][summary["local"]["deepest"] + "_miou"]
        ok = d["low"] <= 0 <= d["high"]
        lines.append(f"local control: {'MET' if ok else 'MISSED'} (interval {_iv(d)} "
                     f"{'includes' if ok else 'excludes'} 0)")
    return lines


# --- rendering ---------------------------------------------------------------------------------------------
def _pct(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}%"


def _iv(d: dict) -> str:
    if d["n"] < 2:
        return "n/a"
    return f"{100 * d['mean']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"


def _cell(d: dict, n_all: int) -> str:
    if not d["n"]:
        return "n/a"
    return (f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f} ({100 * d['min']:.1f}–{100 * d['max']:.1f})"
            + ("" if d["n"] == n_all else f" [n={d['n']}]"))


def markdown(result: dict) -> str:
    s, cfg = result["summary"], result["config"]
    n = len(cfg["seeds"])
    levels = {t: cfg["levels"] if t == "far" else cfg.get("local_levels", cfg["levels"]) for t in cfg["tasks"]}
    lines = [f"# How deep the pyramid must go for a far cue (synthetic:task=cue, {cfg['input_size']})", "",
             f"ESeg-Lite-S shape (fused MBConv, no SE, ReLU) shrunk to width {cfg['width']}, depth {cfg['depth']}, "
             f"{cfg['channels']} BiFPN channels x {cfg['repeats']} repeats, head at P3; only decoder.max_level "
             f"varies. {cfg['steps']} steps x batch {cfg['batch_size']}, lr {cfg['lr']} "
             f"({100 * cfg.get('warmup_frac', 0.05):.0f}% warm-up), weight decay {cfg.get('weight_decay', 5e-5):g}, "
             f"{'OHEM' if cfg['ohem'] else 'plain cross-entropy'}, {cfg.get('schedule', 'cosine')} schedule, "
             f"fresh scenes each step; seeds "
             f"{cfg['seeds']}; {cfg['eval_images']} validation scenes, single scale. Far task: the band "
             f"{cfg['far_distance']} H above the objects; local control: on them (distance 0).", "",
             f"Machine: {result['machine']}; wall time {result['wall_seconds']:.0f} s.", "",
             "| task | levels | params | mIoU % | context acc % | object classes IoU % | train s / run |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for task in cfg["tasks"]:
        for lv in levels[task]:
            d = s[task][f"P{lv}"]
            params = next(r["params"] for r in result["runs"] if r["max_level"] == lv)
            lines.append(f"| {task} | P3-P{lv} | {params:,} | {_cell(d['miou'], n)} | "
                         f"{_cell(d['context_accuracy'], n)} | {_cell(d['context_miou'], n)} | "
                         f"{d['train_seconds']['mean']:.0f} |")
    lines += ["", "Mean ± sample std over seeds (min–max). Context acc: of the object pixels predicted as an "
              "object class, the share given the right one (50% = chance).", "",
              "Paired differences vs the base level (same seed), mean [95% t interval over seeds, "
              "mean ± t(0.975, n-1)·sd/√n], points:", "",
              "| task | levels | Δ mIoU | Δ context acc | n |", "|---|---|---:|---:|---:|"]
    for task in cfg["tasks"]:
        lo = levels[task][0]
        for lv in levels[task][1:]:
            dm, dc = s[task][f"P{lv}_minus_P{lo}_miou"], s[task][f"P{lv}_minus_P{lo}_context_accuracy"]
            lines.append(f"| {task} | P{lv} − P{lo} | {_iv(dm)} | {_iv(dc)} | {dm['n']} |")
    for key, did in s.items():
        if key.startswith("far_minus_local_"):
            diff = key.removeprefix("far_minus_local_").removesuffix("_miou").replace("_minus_", " − ")
            lines += ["", f"Far effect beyond the local one, (far − local) of the {diff} mIoU difference, "
                      f"paired by seed: {_iv(did)} points."]
    lines += ["", "Target (issue #11, item 4): " + "; ".join(verdict(s)) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    out = output_dir(args)
    if args.render_only:
        result = json.loads((out / f"{args.tag}.json").read_text())
        (out / f"{args.tag}.md").write_text(markdown(result))
        print(markdown(result))
        return
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    rows = run(args)
    result = {"machine": f"{platform.machine()} {os.cpu_count()} cores (shared), torch {torch.__version__}, "
                         f"{args.threads} intra-op thread(s), load avg {load0:.1f} at start, "
                         f"{os.getloadavg()[0]:.1f} at end",
              "config": vars(args), "wall_seconds": time.perf_counter() - t0,
              "summary": summarise(rows, task_levels(args)), "runs": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{args.tag}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()

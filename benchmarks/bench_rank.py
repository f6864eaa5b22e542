"""Benchmark: does a short training schedule rank architectures the same way from seed to seed?

A search scores candidates by short training (``escale propose --accuracy short-train``); that is useful
only if the ranking does not hinge on the seed. This trains six small ESeg-Lite-style variants that span
encoder width, encoder depth and pyramid levels, each with every seed, all at one fixed resolution and
schedule, and reports the Spearman rank correlation of their mIoU between each pair of seeds (target: a
mean >= 0.8) and each variant's mean +- spread.

Task: the graded cue task ``synthetic:task=cue,context_distance=0..0.6,band_label=colour`` at 768x256 (H x W):
each scene's band lies 0-0.6 H (up to 460 px) above the objects and is labelled by its colour, so a pyramid
level that reaches further solves a further share of the scenes: P5, P6 and P7-P9 score in three tiers there
(reports/rank/earlier/graded_pilots.md). Schedule: 150 steps x batch 8, lr 0.05, weight decay 1e-4, torch's
OneCycleLR with a 30% warm-up, OHEM, scored every 25 steps (learning curves: the report gives each step's
Spearman rho against the end, what a pruner deciding there sees). Batch 8, not 4: with 4 values per channel at
the 1x1 top level BatchNorm made the P9 runs fail at random (the same images as 300 x 4, pilots). The six
default variants, two per tier, were fixed from pilots on seeds 0-1; the default seeds 6-8 are fresh, and the
committed reference merges that run with two more on seeds 9-11 and 12-17 (``--seeds ...``, then ``--merge``). The
report also ranks each variant's mean over ``--group`` seeds between disjoint seed groups: the objective of
``escale propose --train-seeds N``. Earlier designs, kept reproducible: the 512x256 set (``--input-size 512x256
--batch-size 4 --steps 300 --variants`` GRADED_512 ``--seeds 3 4 5``) and the far-cue set of 2026-11-30/12-01
(``--dataset
synthetic:task=cue,context_distance=0.6 --variants w.15-d.3-c12-P5 w.25-d.3-c16-P5 w.25-d.3-c16-P7
w.15-d.3-c12-P9 w.25-d.2-c16-P9 w.25-d.4-c16-P9 --seeds 0 1 2``, same 512x256 schedule).
Writes rank.{json,md} to <home>/bench/rank/ (ignored by git; `escale paths`), to --out DIR, or with
--update-reference to the committed reports/rank/. One intra-op thread per run, ``--jobs`` runs at once; run
with ``nice`` on a shared machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from bench_jobs import run_jobs

import escale
import escale.train
from escale.data import make_dataset
from escale.data.synthetic import dataset_name
from escale.paths import add_bench_output_arguments, bench_output
from escale.spec import parse_input_size

NAME = "rank"  # reports/NAME is the committed reference
TARGET = 0.8
# name -> overrides of ESeg-Lite-S (fused MBConv, ReLU, no SE, head at P3); GMACs at 512x256 in the comment
VARIANTS = {
    "w.15-d.3-c12-P5": {"encoder.width": 0.15, "encoder.depth": 0.3, "decoder.channels": 12,
                        "decoder.repeats": 2, "decoder.max_level": 5},  # 0.14
    "w.25-d.3-c16-P5": {"encoder.width": 0.25, "encoder.depth": 0.3, "decoder.channels": 16,
                        "decoder.repeats": 2, "decoder.max_level": 5},  # 0.22
    "w.25-d.3-c16-P7": {"encoder.width": 0.25, "encoder.depth": 0.3, "decoder.channels": 16,
                        "decoder.repeats": 2, "decoder.max_level": 7},  # 0.22
    "w.15-d.3-c12-P9": {"encoder.width": 0.15, "encoder.depth": 0.3, "decoder.channels": 12,
                        "decoder.repeats": 2, "decoder.max_level": 9},  # 0.14
    "w.25-d.2-c16-P9": {"encoder.width": 0.25, "encoder.depth": 0.2, "decoder.channels": 16,
                        "decoder.repeats": 2, "decoder.max_level": 9},  # 0.18
    "w.25-d.4-c16-P9": {"encoder.width": 0.25, "encoder.depth": 0.4, "decoder.channels": 16,
                        "decoder.repeats": 2, "decoder.max_level": 9},  # 0.32
}
# the same base with only the pyramid levels changed, for the graded task (context_distance=LOW..HIGH)
_BASE = {"encoder.width": 0.25, "encoder.depth": 0.3, "decoder.channels": 16, "decoder.repeats": 2}
VARIANTS.update({f"w.25-d.3-c16-P{lvl}": {**_BASE, "decoder.max_level": lvl} for lvl in (6, 8, 9)})
VARIANTS.update({f"w.25-d.{d}-c16-P5": {**_BASE, "encoder.depth": d / 10, "decoder.max_level": 5} for d in (2, 4)})
_NARROW = {"encoder.width": 0.15, "encoder.depth": 0.3, "decoder.channels": 12, "decoder.repeats": 2}
VARIANTS.update({f"w.15-d.3-c12-P{lvl}": {**_NARROW, "decoder.max_level": lvl} for lvl in (6, 7, 8)})
# the 512x256 set of 2026-12-01 (reports/rank/earlier/rank_graded_512.md), fixed from pilots on seeds 0-1
GRADED_512 = ["w.15-d.3-c12-P5", "w.25-d.2-c16-P5", "w.25-d.3-c16-P6", "w.15-d.3-c12-P9", "w.25-d.2-c16-P9",
              "w.25-d.3-c16-P9"]
# the default set, fixed from pilots at 768x256, batch 8, 150 steps on seeds 0-1 (reports/rank/earlier/
# graded_pilots.md) before the measured run: two variants per reach tier (P5, P6, P7-P9), widths 0.15 / 0.25,
# depths 0.2 / 0.3
DEFAULT_VARIANTS = ["w.15-d.3-c12-P5", "w.25-d.3-c16-P5", "w.15-d.3-c12-P6", "w.25-d.3-c16-P6", "w.15-d.3-c12-P9",
                    "w.25-d.2-c16-P9"]
DEFAULT_DATASET = dataset_name("cue", (0.0, 0.6), "colour")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT_VARIANTS)
    p.add_argument("--seeds", type=int, nargs="+", default=[6, 7, 8],
                   help="default: fresh seeds (the pilots used 0, 1; the 512x256 run 3-5)")
    p.add_argument("--dataset", default=DEFAULT_DATASET, help="dataset name, options included")
    p.add_argument("--input-size", default="768x256", help="HxW pixels, the same for every variant")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--warmup-frac", type=float, default=0.3, help="warm-up, as a fraction of the steps")
    p.add_argument("--schedule", choices=("onecycle", "cosine"), default="onecycle", help="lr schedule")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--ohem", action=argparse.BooleanOptionalAction, default=True,
                   help="the trainer's OHEM loss (default) or plain cross-entropy (--no-ohem)")
    p.add_argument("--eval-images", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=25,
                   help="also score every N steps (learning curves; the report ranks each rung against the end)")
    p.add_argument("--ema-decay", type=float, default=None,
                   help="score timm's EMA of the weights with this decay (default: no EMA, the raw weights)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads")
    p.add_argument("--tag", default="rank", help="output file stem")
    p.add_argument("--render-only", action="store_true", help="rewrite the .md from an existing .json")
    p.add_argument("--group", type=int, default=2, help="also score the mean of this many seeds per variant (what "
                   "`escale propose --train-seeds N` ranks by) between disjoint seed groups (default: 2)")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON",
                   help="write one report from runs of the same design on different seeds (no training)")
    add_bench_output_arguments(p, NAME)
    return p.parse_args(argv)


def output_dir(args: argparse.Namespace) -> Path:
    return bench_output(args, NAME)


# --- statistics (pure) -------------------------------------------------------------------------------------
def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ascending; tied values share the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rho: Pearson's correlation of the ranks (ties averaged); NaN when a side is constant."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"spearman: {len(x)} and {len(y)} values (allowed: equal lengths >= 2)")
    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return sxy / (sxx * syy) ** 0.5 if sxx and syy else float("nan")


def seed_pair_correlations(scores: dict[str, dict[int, float]], seeds: list[int]) -> dict[str, float]:
    """``{"0-1": rho, ...}``: Spearman of the variants' scores between every pair of seeds."""
    names = sorted(scores)
    return {f"{a}-{b}": spearman([scores[n][a] for n in names], [scores[n][b] for n in names])
            for a, b in itertools.combinations(seeds, 2)}


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


# --- runs --------------------------------------------------------------------------------------------------
def variant_spec(name: str, num_classes: int = 4) -> escale.ESegSpec:
    return escale.preset("ESeg-Lite-S").with_overrides({**VARIANTS[name], "num_classes": num_classes})


def one_run(args: argparse.Namespace, name: str, seed: int) -> dict:
    """Train and score one (variant, seed); the row of the report."""
    size = parse_input_size(args.input_size)
    spec = variant_spec(name, make_dataset(args.dataset, "val", size=size).num_classes)
    curve: dict[str, float] = {}
    ema = {"ema": True, "ema_decay": args.ema_decay} if args.ema_decay is not None else {"ema": False}
    rec = escale.train.train(spec, dataset=args.dataset, steps=args.steps, input_size=size,
                             batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=seed,
                             ohem=args.ohem, warmup_steps=round(args.warmup_frac * args.steps),
                             schedule=args.schedule, eval_images=args.eval_images, threads=args.threads,
                             eval_every=args.eval_every, on_eval=lambda step, m: curve.__setitem__(str(step), m),
                             **ema)
    prof = escale.profile(spec, input_size=size)
    return {"variant": name, "seed": seed, "miou": rec.miou, "pixel_acc": rec.pixel_acc,
            "iou_per_class": rec.iou_per_class, "train_seconds": rec.train_seconds, "params": prof.params,
            "macs": prof.macs, "spec_id": rec.spec_id, "load_avg": os.getloadavg()[0], "curve": curve}


def run(args: argparse.Namespace) -> list[dict]:
    """All variants within each seed (load from other processes hits them alike); ``args.jobs`` at once."""
    plan = [(name, seed) for seed in args.seeds for name in args.variants]

    def show(row: dict) -> None:
        print(f"{row['variant']} seed {row['seed']}: mIoU {100 * row['miou']:.1f}%  ({row['train_seconds']:.0f} s, "
              f"load {row['load_avg']:.1f})", flush=True)

    return run_jobs(one_run, args, plan, args.jobs, show)


def _mean_rho(pairs: dict[str, float]) -> float:
    finite = [v for v in pairs.values() if v == v]
    return statistics.fmean(finite) if finite else float("nan")


def grouped_correlations(scores: dict[str, dict[int, float]], seeds: list[int], k: int) -> dict:
    """The objective ``escale propose --train-seeds k`` scores: each variant's mean over ``k`` seeds. The
    seeds are split in their order into disjoint groups of ``k`` (a remainder is left out) and Spearman's
    rho is taken between every pair of groups; ``{}`` with fewer than two groups."""
    groups = [seeds[i:i + k] for i in range(0, len(seeds) - k + 1, k)]
    if k < 2 or len(groups) < 2:
        return {}
    names = sorted(scores)
    means = [[statistics.fmean(scores[n][s] for s in g) for n in names] for g in groups]
    pairs = {f"{'+'.join(map(str, groups[a]))} vs {'+'.join(map(str, groups[b]))}": spearman(means[a], means[b])
             for a, b in itertools.combinations(range(len(groups)), 2)}
    mean_rho = _mean_rho(pairs)
    return {"seeds_per_score": k, "groups": groups, "spearman": pairs, "spearman_mean": mean_rho,
            "met": mean_rho >= TARGET}


def summarise(rows: list[dict], seeds: list[int], group: int = 2) -> dict:
    scores: dict[str, dict[int, float]] = {}
    for r in rows:
        scores.setdefault(r["variant"], {})[r["seed"]] = r["miou"]
    pairs = seed_pair_correlations(scores, seeds)
    mean_rho = _mean_rho(pairs)
    return {"spearman": pairs, "spearman_mean": mean_rho, "target": TARGET, "met": mean_rho >= TARGET,
            "variants": {n: spread([s[k] for k in seeds]) for n, s in scores.items()},
            "rung_vs_final": rung_vs_final(rows, seeds), "grouped": grouped_correlations(scores, seeds, group)}


MERGE_SAME = ("variants", "dataset", "input_size", "steps", "warmup_frac", "schedule", "weight_decay", "batch_size",
              "lr", "ohem", "eval_images", "threads", "eval_every", "ema_decay")


def merge(results: list[dict], group: int = 2) -> dict:
    """One result from runs of the same design on different seeds (e.g. two 3-seed runs); one-line errors."""
    first = results[0]["config"]
    for other in results[1:]:
        diff = [k for k in MERGE_SAME if other["config"].get(k) != first.get(k)]
        if diff:
            raise SystemExit(f"--merge: the runs differ in {diff[0]} ({first.get(diff[0])!r} vs "
                             f"{other['config'].get(diff[0])!r}; allowed: runs that differ in their seeds only)")
    seeds = [s for r in results for s in r["config"]["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--merge: seeds {seeds} repeat (allowed: disjoint seeds)")
    rows = [row for r in results for row in r["runs"]]
    parts = [{"seeds": r["config"]["seeds"], "wall_seconds": r["wall_seconds"], "machine": r["machine"],
              "spearman_mean": r["summary"]["spearman_mean"]} for r in results]
    return {"machine": "; ".join(f"seeds {p['seeds']}: {p['machine']}" for p in parts),
            "config": {**first, "seeds": seeds, "group": group}, "parts": parts,
            "wall_seconds": sum(p["wall_seconds"] for p in parts), "summary": summarise(rows, seeds, group),
            "runs": rows}


def rung_vs_final(rows: list[dict], seeds: list[int]) -> dict[str, float | None]:
    """``{step: rho}``: for each intermediate evaluation, the mean over seeds of Spearman's rho between the
    variants' mIoU at that step and at the end (what a pruner deciding there would see); None where every
    variant scored the same (e.g. all still predict the background); {} without curves."""
    steps = sorted({k for r in rows for k in r.get("curve", {})}, key=int)
    out = {}
    for k in steps:
        rhos = []
        for seed in seeds:
            mine = [r for r in rows if r["seed"] == seed and k in r.get("curve", {})]
            if len(mine) > 2:
                rho = spearman([r["curve"][k] for r in mine], [r["miou"] for r in mine])
                if rho == rho:  # NaN when a side is constant
                    rhos.append(rho)
        out[k] = statistics.fmean(rhos) if rhos else None
    return out


def markdown(result: dict) -> str:
    s, cfg = result["summary"], result["config"]
    by = {r["variant"]: r for r in result["runs"]}
    weights = "raw weights" if cfg.get("ema_decay") is None else f"timm's EMA of the weights (decay {cfg['ema_decay']:g})"
    lines = [f"# Rank stability of short-schedule training ({cfg['dataset']}, {cfg['input_size']})", "",
             f"{len(cfg['variants'])} ESeg-Lite-style variants (fused MBConv, ReLU, no SE, head at P3), seeds {cfg['seeds']}; "
             f"{cfg['steps']} steps x batch {cfg['batch_size']}, lr {cfg['lr']} "
             f"({100 * cfg['warmup_frac']:.0f}% warm-up), weight decay {cfg.get('weight_decay', 5e-5):g}, "
             f"{'OHEM' if cfg['ohem'] else 'plain cross-entropy'}, {cfg.get('schedule', 'cosine')} schedule; "
             f"{cfg['eval_images']} validation scenes, single scale, "
             f"{weights}; torch eager on the CPU, fp32;"
             " the same resolution and schedule for every variant.", "",
             f"Machine: {result['machine']}; wall time {result['wall_seconds']:.0f} s"
             + (" (" + ", ".join(f"{p['wall_seconds']:.0f} s for seeds {p['seeds']}" for p in result["parts"])
                + ", merged with --merge)" if result.get("parts") else "") + ".", "",
             "| variant | params | GMACs | mIoU % mean ± std (min–max) | rank of the mean |",
             "|---|---:|---:|---:|---:|"]
    means = {n: d["mean"] for n, d in s["variants"].items()}
    order = ranks([means[n] for n in cfg["variants"]])
    for n, rank in zip(cfg["variants"], order, strict=True):
        d = s["variants"][n]
        lines.append(f"| {n} | {by[n]['params']:,} | {by[n]['macs'] / 1e9:.2f} | {100 * d['mean']:.1f} ± "
                     f"{100 * d['std']:.1f} ({100 * d['min']:.1f}–{100 * d['max']:.1f}) | {rank:g} |")
    lines += ["", "Spearman's ρ of the variants' mIoU between seeds (ties share ranks): "
              + ", ".join(f"seeds {k}: {v:.2f}" for k, v in s["spearman"].items())
              + f"; mean {s['spearman_mean']:.2f} (target ≥ {s['target']}: {'MET' if s['met'] else 'MISSED'})."]
    lines += [f"Seeds {p['seeds']} alone: mean ρ {p['spearman_mean']:.2f}." for p in result.get("parts", [])]
    lines += ["", "Rank 1 = lowest mIoU."]
    g = s.get("grouped")
    if g:
        lines += ["", f"Scored as the mean of {g['seeds_per_score']} seeds per variant (`escale propose --train-seeds "
                  f"{g['seeds_per_score']}`), Spearman's ρ between disjoint seed groups: "
                  + ", ".join(f"{k}: {v:.2f}" for k, v in g["spearman"].items())
                  + f"; mean {g['spearman_mean']:.2f} (target ≥ {s['target']}: {'MET' if g['met'] else 'MISSED'})."]
    if s.get("rung_vs_final"):
        lines += ["", "Spearman's ρ of the variants' mIoU at an intermediate step against the end, mean over seeds: "
                  + ", ".join(f"step {k}: " + ("n/a (one value for every variant)" if v is None else f"{v:+.2f}")
                              for k, v in s["rung_vs_final"].items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    out = output_dir(args)
    if args.render_only or args.merge:
        if args.merge:
            result = merge([json.loads(f.read_text()) for f in args.merge], args.group)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
        else:
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
              "summary": summarise(rows, args.seeds, args.group), "runs": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{args.tag}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()

"""Benchmark (paper Table 1 / Insight 1 on a CPU): feature levels capped at P5 vs extended to P9.

Trains two ESeg-S-shaped models that differ only in ``decoder.max_level`` (5 vs 9) on the embedded
``synthetic`` dataset, whose two car classes can only be told apart by a traffic light about half the
image above them, with a short schedule over several seeds, and reports mean and spread of mIoU,
of the car classes' IoU and of the context accuracy (of the car pixels predicted as a car, the fraction
given the right one of stopped/moving; 0.5 = chance).

Geometry: ``spec.check_input_size`` needs H, W >= 2**9 = 512 for P9, so scenes are 512x512; to fit
this CPU the encoder is shrunk (width/depth) and the BiFPN made narrow and shallow, identically for
both (``--min-level 3`` puts the head at P3 as the Lite models do, about 10% cheaper).
One intra-op thread by default: with two on a 2-core machine that other processes keep busy, a step
took 20-100x longer (threads waiting on each other at every op).
Runs alternate P5/P9 inside each seed so that load from other processes hits both alike.
Writes context_levels.{json,md} to <home>/bench/context/ (ignored by git; `escale paths`), to --out DIR, or
with --update-reference to the committed reports/context/. Run with ``nice -n 10`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import escale
import escale.train
from escale.data import eval_batches, make_dataset, normalize
from escale.data.synthetic import CAR_MOVING, CAR_STOPPED, LIGHT
from escale.paths import add_bench_output_arguments, bench_output

NAME = "context"  # reports/NAME is the committed reference


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--levels", type=int, nargs="+", default=[5, 9])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=2, help=">= 2: P9 is 1x1 at 512x512 (BatchNorm)")
    p.add_argument("--size", type=int, default=512, help="square input size in pixels")
    p.add_argument("--lr", type=float, default=0.08)
    p.add_argument("--eval-images", type=int, default=16)
    p.add_argument("--reach-images", type=int, default=4, help="validation scenes for the cue-reach diagnostic")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--depth", type=float, default=0.3)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--min-level", type=int, default=2, help="base level of the head (ESeg-S: 2, Lite: 3)")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads; on a busy 2-core machine 2 threads ran 20-100x slower than 1")
    p.add_argument("--tag", default="context_levels", help="output file stem")
    p.add_argument("--render-only", action="store_true", help="rewrite the .md from an existing .json")
    add_bench_output_arguments(p, NAME)
    return p.parse_args(argv)


def output_dir(args: argparse.Namespace) -> Path:
    return bench_output(args, NAME)


def spread(values: list[float]) -> dict[str, float]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals), "max": max(vals), "n": len(vals)}


def cue_reach(model: torch.nn.Module, size: int, num_images: int) -> float:
    """Share (0-1) of the input-gradient mass of the cars' stopped-minus-moving logit margin that lies on
    traffic-light pixels (about 2% of the image): how much the car decision can depend on the cue at all.
    """
    model.eval()
    images, labels = next(eval_batches(make_dataset("synthetic", "val", size=(size, size)), num_images, num_images))
    x = normalize(images).requires_grad_(True)
    logits = model(x)  # (B, K, H, W)
    cars = (labels == CAR_STOPPED) | (labels == CAR_MOVING)
    (logits[:, CAR_STOPPED] - logits[:, CAR_MOVING])[cars].sum().backward()
    grad = x.grad.abs().sum(1)  # (B, H, W)
    return float(grad[labels == LIGHT].sum() / grad.sum())


def light_area_share(size: int, num_images: int) -> float:
    """Fraction of the pixels of the cue-reach scenes that are traffic-light pixels (the 'uniform' reach)."""
    _, labels = next(eval_batches(make_dataset("synthetic", "val", size=(size, size)), num_images, num_images))
    return float((labels == LIGHT).float().mean())


def trained_model(spec: escale.ESegSpec, checkpoint: Path) -> torch.nn.Module:
    state = escale.train.load_checkpoint(checkpoint)
    model = escale.build_model(spec)
    model.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    return model


def run(args: argparse.Namespace) -> list[dict]:
    base = escale.preset("ESeg-S").with_overrides({
        "encoder.width": args.width, "encoder.depth": args.depth, "decoder.channels": args.channels,
        "decoder.repeats": args.repeats, "decoder.min_level": args.min_level})
    rows = []
    for seed in args.seeds:
        for level in args.levels:
            spec = base.with_overrides({"name": f"ESeg-S-tiny-P{level}", "decoder.max_level": level,
                                        "num_classes": 8})
            torch.manual_seed(seed)
            reach_init = cue_reach(escale.build_model(spec), args.size, args.reach_images)
            with tempfile.TemporaryDirectory() as tmp:
                ckpt = Path(tmp) / "run.pt"
                rec = escale.train.train(spec, dataset="synthetic", steps=args.steps,
                                         input_size=(args.size, args.size), batch_size=args.batch_size, lr=args.lr,
                                         seed=seed, eval_images=args.eval_images, checkpoint=ckpt,
                                         checkpoint_every=args.steps)
                reach_trained = cue_reach(trained_model(spec, ckpt), args.size, args.reach_images)
            row = {"max_level": level, "seed": seed, "miou": rec.miou, "pixel_acc": rec.pixel_acc,
                   "context_miou": rec.context_miou, "context_accuracy": rec.context_accuracy,
                   "final_loss": rec.final_loss, "train_seconds": rec.train_seconds,
                   "images_per_second": rec.images_per_second, "iou_per_class": rec.iou_per_class,
                   "spec_id": rec.spec_id, "cue_reach_init": reach_init, "cue_reach_trained": reach_trained,
                   "context_pixels": sum(rec.confusion_matrix[t][p] for t in (CAR_STOPPED, CAR_MOVING)
                                         for p in (CAR_STOPPED, CAR_MOVING)),
                   "params": escale.profile(spec, input_size=(args.size, args.size)).params}
            rows.append(row)
            print(f"P{level} seed {seed}: mIoU {100 * rec.miou:.1f}%  car IoU {_pct(rec.context_miou)}  "
                  f"context acc {_pct(rec.context_accuracy)}  cue reach {_pct(reach_init, 2)} -> "
                  f"{_pct(reach_trained, 2)}  ({rec.train_seconds:.0f} s, {rec.images_per_second:.2f} img/s)",
                  flush=True)
    return rows


def _pct(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}%"


def summarise(rows: list[dict], levels: list[int], seeds: list[int]) -> dict:
    out = {}
    for level in levels:
        mine = [r for r in rows if r["max_level"] == level]
        out[f"P{level}"] = {k: spread([r[k] for r in mine])
                            for k in ("miou", "context_miou", "context_accuracy", "pixel_acc", "train_seconds",
                                      "cue_reach_init", "cue_reach_trained")}
    if len(levels) == 2:
        lo, hi = levels
        by = {(r["max_level"], r["seed"]): r for r in rows}
        for k in ("miou", "context_miou", "context_accuracy", "cue_reach_init", "cue_reach_trained"):
            diffs = [by[(hi, s)][k] - by[(lo, s)][k] for s in seeds
                     if by[(hi, s)][k] is not None and by[(lo, s)][k] is not None]
            out[f"P{hi}_minus_P{lo}_{k}"] = spread(diffs)
    return out


def _spread_text(d: dict, n_all: int, digits: int = 1) -> str:
    if not d["n"]:
        return "n/a"
    f = f".{digits}f"
    return (f"{100 * d['mean']:{f}} ± {100 * d['std']:{f}} ({100 * d['min']:{f}}–{100 * d['max']:{f}})"
            + ("" if d["n"] == n_all else f" [n={d['n']}]"))


def markdown(result: dict) -> str:
    s, cfg = result["summary"], result["config"]
    n = len(cfg["seeds"])
    lines = [f"# Feature levels P5 vs P9 on the synthetic context dataset ({cfg['size']}x{cfg['size']})", "",
             f"ESeg-S shape (MBConv+SE encoder, BiFPN) shrunk to width {cfg['width']}, depth {cfg['depth']}, "
             f"{cfg['channels']} BiFPN channels x {cfg['repeats']} repeats, head at P{cfg['min_level']}; "
             f"{cfg['steps']} steps x batch {cfg['batch_size']}, lr {cfg['lr']}, OHEM, cosine; seeds {cfg['seeds']}; "
             f"{cfg['eval_images']} validation scenes, single scale.", "",
             f"Machine: {result['machine']}; wall time {result['wall_seconds']:.0f} s.", "",
             "| levels | params | mIoU % | car classes IoU % | context acc % | pixel acc % | cue reach % init "
             "| cue reach % trained | train s / run |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for level in cfg["levels"]:
        d = s[f"P{level}"]
        params = next(r["params"] for r in result["runs"] if r["max_level"] == level)
        lines.append(f"| P{cfg['min_level']}-P{level} | {params:,} | {_spread_text(d['miou'], n)} | "
                     f"{_spread_text(d['context_miou'], n)} | {_spread_text(d['context_accuracy'], n)} | "
                     f"{_spread_text(d['pixel_acc'], n)} | {_spread_text(d['cue_reach_init'], n, 2)} | "
                     f"{_spread_text(d['cue_reach_trained'], n, 2)} | {d['train_seconds']['mean']:.0f} |")
    lines += ["", "Mean ± sample std over seeds (min–max); [n=k] when a value exists for k seeds only. "
              "Context acc: of the car pixels predicted as a car, the fraction given the right class "
              "(stopped/moving; 50% is chance; n/a when no pixel was predicted as a car). Cue reach: share of "
              "the input-gradient mass of the cars' stopped-minus-moving logit margin that lies on the "
              f"traffic-light pixels, which cover {100 * result['light_area_share']:.2f}% of those scenes (a "
              "decision that weighed every pixel alike would score that; a local one scores less).", ""]
    names = list(result["runs"][0]["iou_per_class"])
    lines += ["| levels | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for level in cfg["levels"]:
        mine = [r["iou_per_class"] for r in result["runs"] if r["max_level"] == level]
        cells = [spread([m[n] for m in mine]) for n in names]
        lines.append(f"| P{cfg['min_level']}-P{level} | "
                     + " | ".join("n/a" if not c["n"] else f"{100 * c['mean']:.0f}" for c in cells) + " |")
    lines += ["", "Per-class IoU %, mean over seeds.", ""]
    if max(s[f"P{lv}"]["context_miou"]["mean"] for lv in cfg["levels"]) < 0.10:
        lines += ["Caution: with car IoU of a few %, the models have not learned to segment cars yet, so "
                  "mIoU differences are noise and context acc rests on few pixels; cue reach is the measure "
                  "that does not need a converged model.", ""]
    elif all(s[f"P{lv}"]["context_accuracy"]["n"] and s[f"P{lv}"]["context_accuracy"]["mean"] < 0.6
             for lv in cfg["levels"]):
        lines += ["Caution: context acc is near chance for every model: none uses the lights yet (the schedule "
                  "is too short), so the mIoU gap comes from the locally separable classes.", ""]
    for k, v in s.items():
        if "_minus_" in k and v["n"]:
            lines.append(f"- {k}: {100 * v['mean']:+.2f} ± {100 * v['std']:.2f} points (paired by seed; "
                         f"min {100 * v['min']:+.2f}, max {100 * v['max']:+.2f}; n={v['n']})")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    out = output_dir(args)
    if args.render_only:
        result = json.loads((out / f"{args.tag}.json").read_text())
        result.setdefault("light_area_share", light_area_share(result["config"]["size"],
                                                               result["config"]["reach_images"]))
        (out / f"{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / f"{args.tag}.md").write_text(markdown(result))
        print(markdown(result))
        return
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = run(args)
    result = {"machine": f"{platform.machine()} {os.cpu_count()} cores (shared), torch {torch.__version__}, "
                         f"{torch.get_num_threads()} threads, load avg {os.getloadavg()[0]:.1f} at end",
              "config": vars(args), "wall_seconds": time.perf_counter() - t0,
              "light_area_share": light_area_share(args.size, args.reach_images),
              "summary": summarise(rows, args.levels, args.seeds), "runs": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{args.tag}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()

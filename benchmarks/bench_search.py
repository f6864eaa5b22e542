"""Benchmark: does pruning (multi-fidelity) find the same answer as a full budget-mode study, for fewer steps?

Two budget-mode studies (``escale propose --mode budget``: maximise short-train mIoU subject to predicted
latency <= budget) over the same small ESeg-Lite space, with the same sampler seed and trial count: one with
SuccessiveHalving pruning on mIoU reported at evaluation rungs of the short training, one without. Reported:
each study's best feasible mIoU and candidate, and the training steps each spent. Target: the pruned study
reaches the unpruned study's best mIoU within 1 point (or finds the same best candidate) with <= 40% of its
training steps. Also: Spearman's rho of the ``paper-trend`` estimate, of MACs and of a training-free score
(NASWOT, Mellor et al. 2021: log|K| of the ReLU activation codes of 8 validation scenes through the untrained
model, :func:`naswot`) against short-train mIoU over the candidates the unpruned study trained fully (how far
to trust the instant screens; escale offers a training-free objective only if it beats MACs here). The
unpruned study reports the same rungs to Optuna as learning curves (no pruner reads them); the report gives
Spearman's rho of each rung's mIoU against the final mIoU, i.e. what a pruner deciding there can know.

Task and schedule of the 512x256 design of benchmarks/bench_rank.py (reports/rank/earlier/rank_graded_512.md;
the rank benchmark has since moved to 768x256, batch 8, 150 steps, which ranks more stably): the graded cue task
``synthetic:task=cue,context_distance=0..0.6,band_label=colour`` at 512x256 (each pyramid level that reaches
further solves a further share of the scenes), 300 steps x batch 4, lr 0.05, weight decay 1e-4, torch's OneCycleLR with a 30% warm-up, OHEM
(earlier references on the far-cue task ``context_distance=0.6``: reports/search/earlier/); latency predicted at 512x1024 by the committed kernel table
(ONNX Runtime, CPU, 1 thread). The two studies run side by side (one process and one thread each).
Writes search.{json,md} to <home>/bench/search/ (`escale paths`), to --out DIR, or with --update-reference
to the committed reports/search/. Not a timed test. Pooled over runs of one design on different sampler seeds
(``--seed``; each run in its own folder): ``--seeds-summary DIR...`` writes seeds.md (how often the target was
met), ``--replay DIR...`` writes replay.md (Optuna's SuccessiveHalving and Hyperband with other settings told the
unpruned studies' recorded learning curves again: the steps and gap each setting would have given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench_rank import spearman

from escale.data.synthetic import dataset_name
from escale.paths import add_bench_output_arguments, bench_output
from escale.spec import parse_input_size

NAME = "search"
ROOT = Path(__file__).resolve().parents[1]
LUT = ROOT / "reports" / "lut" / "onnxruntime-cpu-fp32-512x1024-t1.json"
SPACE = {"name": "bench-lite", "base": "ESeg-Lite-S", "params": {
    "encoder.width": {"type": "float", "low": 0.15, "high": 0.35, "step": 0.05},
    "encoder.depth": {"type": "float", "low": 0.2, "high": 0.4, "step": 0.1},
    "decoder.channels": {"type": "int", "low": 12, "high": 20, "step": 4},
    "decoder.repeats": {"type": "int", "low": 1, "high": 2},
    "decoder.max_level": {"type": "int", "low": 5, "high": 9}}}
TARGET_STEPS, TARGET_POINTS = 0.40, 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=12, help="evaluated trials per study (default: 12)")
    p.add_argument("--budget-ms", type=float, default=45.0, help="predicted latency budget at 512x1024 (ms)")
    p.add_argument("--dataset", default=dataset_name("cue", (0.0, 0.6), "colour"))
    p.add_argument("--train-size", default="512x256")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--warmup-frac", type=float, default=0.3)
    p.add_argument("--schedule", choices=("onecycle", "cosine"), default="onecycle", help="lr schedule")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--eval-images", type=int, default=32)
    p.add_argument("--rungs", type=int, default=5, help="evaluations during training (every 50 steps of 300)")
    p.add_argument("--pruner", default="sha", help="sha or hyperband")
    p.add_argument("--min-resource", type=int, default=None, help="steps before the pruner's first decision "
                   "(default: the first rung)")
    p.add_argument("--reduction-factor", type=int, default=3, help="the pruner's reduction factor")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--render-only", action="store_true", help="rewrite the .md from an existing .json")
    p.add_argument("--trainfree", action="store_true", help="with --render-only: add the training-free scores")
    pooled = p.add_mutually_exclusive_group()
    pooled.add_argument("--replay", nargs="+", metavar="DIR",
                        help="write replay.md: Optuna's SuccessiveHalving and Hyperband with other settings replayed "
                        "on the learning curves the unpruned studies of the DIRs recorded")
    pooled.add_argument("--seeds-summary", nargs="+", metavar="DIR",
                        help="write seeds.md: one row per search.json in the DIRs (runs of one design on different "
                        "sampler seeds) and how often the target was met")
    add_bench_output_arguments(p, NAME)
    return p.parse_args(argv)


def run_one(args: argparse.Namespace, pruner: str, storage: str) -> dict:
    """One study in this process (1 thread); returns its trials as plain rows."""
    import torch

    from escale.search import (
        LatencyPredictor,
        StudyConfig,
        TrainSettings,
        load_table,
        run_study,
        space_from_dict,
    )
    from escale.search.proxy import trend_miou

    torch.set_num_threads(1)
    train = TrainSettings(steps=args.steps, input_size=parse_input_size(args.train_size), batch_size=args.batch_size,
                          seed=args.seed, dataset=args.dataset, lr=args.lr,
                          warmup_steps=round(args.warmup_frac * args.steps), ohem=True, eval_images=args.eval_images,
                          rungs=args.rungs, threads=1, schedule=args.schedule, weight_decay=args.weight_decay)
    cfg = StudyConfig(space_from_dict(SPACE), input_size=(512, 1024), cost="latency", budget_ms=args.budget_ms,
                      accuracy="short-train", predictor=LatencyPredictor(load_table(LUT)), measure=False,
                      train=train, storage=storage, study_name=f"bench-{pruner}", seed=args.seed, pruner=pruner,
                      min_resource=args.min_resource if pruner != "none" else None,
                      reduction_factor=args.reduction_factor)
    t0 = time.perf_counter()
    study = run_study(cfg, args.trials)
    rows = []
    for t in study.trials:
        ua = t.user_attrs
        spec = cfg.space.to_spec(t.params) if t.params else None
        rows.append({"trial": t.number, "state": t.state.name, "params": t.params, "miou": ua.get("miou"),
                     "rejected_reason": ua.get("rejected_reason"), "pruned_at_step": ua.get("pruned_at_step"),
                     "train_steps_done": ua.get("train_steps_done", 0 if ua.get("rejected_reason") else None),
                     "predicted_latency_ms": ua.get("predicted_latency_ms"), "macs": ua.get("macs"),
                     "paper_trend": trend_miou(spec, ua["macs"], (512, 1024)).miou if spec and ua.get("macs") else None,
                     "intermediate": {str(k): v for k, v in t.intermediate_values.items()}})
    return {"pruner": pruner, "wall_seconds": time.perf_counter() - t0, "trials": rows,
            "storage": storage, "study": cfg.name, "pruner_settings": cfg.pruner_settings()}


def naswot(spec, images, seed: int = 0) -> float:  # noqa: ANN001 - ESegSpec, (N, 3, H, W) normalised
    """NASWOT score (Mellor et al. 2021, "Neural Architecture Search without Training"): log|K| with
    K[i, j] = the number of ReLU units that agree (both on or both off) between samples i and j, over every
    ReLU of the untrained model (seeded init, train-mode BatchNorm as in the paper's code)."""
    import torch

    import escale

    torch.manual_seed(seed)
    model = escale.build_model(spec).train()
    n = images.shape[0]
    k = torch.zeros(n, n, dtype=torch.float64)

    def hook(_module, _inputs, out) -> None:  # noqa: ANN001
        c = (out.detach().flatten(1) > 0).double()
        k.add_(c @ c.T + (1 - c) @ (1 - c).T)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for h in handles:
            h.remove()
    return float(torch.linalg.slogdet(k)[1])


def trainfree_scores(result: dict) -> None:
    """Add ``naswot`` to every fully trained trial of the unpruned study (in place)."""
    import torch

    from escale.data import make_dataset, normalize
    from escale.search import space_from_dict

    cfg = result["config"]
    size = parse_input_size(cfg["train_size"])
    val = make_dataset(cfg["dataset"], "val", size=size)
    images = normalize(torch.stack([val[i][0] for i in range(8)]))
    space = space_from_dict(SPACE)
    for st in result["studies"]:
        if st["pruner"] == "none":
            for r in st["trials"]:
                if r["state"] == "COMPLETE":
                    r["naswot"] = naswot(space.to_spec(r["params"]).with_overrides({"num_classes": val.num_classes}),
                                         images, cfg["seed"])


def summarise(result: dict) -> dict:
    by = {s["pruner"]: s for s in result["studies"]}
    pruned, full = by[result["config"]["pruner"]], by["none"]

    def best(study: dict) -> dict | None:
        done = [r for r in study["trials"] if r["state"] == "COMPLETE"]
        return max(done, key=lambda r: r["miou"]) if done else None

    def steps(study: dict) -> int:
        return sum(r["train_steps_done"] or 0 for r in study["trials"])

    bp, bf = best(pruned), best(full)
    ratio = steps(pruned) / steps(full) if steps(full) else float("nan")
    gap = (bf["miou"] - bp["miou"]) if bp and bf else float("nan")
    same = bool(bp and bf and bp["params"] == bf["params"])
    trained = [r for r in full["trials"] if r["state"] == "COMPLETE"]
    miou = [r["miou"] for r in trained]
    rho = {"paper_trend": spearman([r["paper_trend"] for r in trained], miou) if len(trained) > 2 else None,
           "macs": spearman([r["macs"] for r in trained], miou) if len(trained) > 2 else None,
           "naswot": spearman([r["naswot"] for r in trained], miou)
           if len(trained) > 2 and all("naswot" in r for r in trained) else None}
    # how well each rung of the unpruned study's learning curves ranks the final mIoU (what a pruner relies on)
    rungs = sorted({int(k) for r in trained for k in r.get("intermediate", {})})
    rung_rho = {str(k): spearman([r["intermediate"][str(k)] for r in trained], miou)
                for k in rungs if len(trained) > 2 and all(str(k) in r["intermediate"] for r in trained)}
    return {"best_pruned": bp, "best_unpruned": bf, "rung_vs_final": rung_rho, "steps_pruned": steps(pruned), "steps_unpruned": steps(full),
            "steps_ratio": ratio, "miou_gap_points": gap, "same_best": same,
            "met": bool(ratio <= TARGET_STEPS and (gap <= TARGET_POINTS or same)), "spearman_vs_short_train": rho,
            "n_fully_trained": len(trained)}


def markdown(result: dict) -> str:
    s, cfg = result["summary"], result["config"]

    lines = [f"# Budget-mode search with and without pruning ({cfg['dataset']}, {cfg['train_size']})", "",
             f"Space: {json.dumps(SPACE['params'])} over ESeg-Lite-S. Budget: predicted latency <= {cfg['budget_ms']:g} "
             "ms at 512x1024 (ONNX Runtime CPU, 1 thread, committed kernel table). "
             f"{cfg['trials']} evaluated trials per study, sampler seed {cfg['seed']} (TPE, 8 random start-up "
             f"trials); short training {cfg['steps']} steps x batch {cfg['batch_size']}, lr {cfg['lr']}, "
             f"{100 * cfg['warmup_frac']:.0f}% warm-up, weight decay {cfg.get('weight_decay', 5e-5):g}, "
             f"{cfg.get('schedule', 'cosine')} schedule, OHEM; {cfg['eval_images']} validation scenes; pruner "
             f"{cfg['pruner']} ({_settings(result)}) on {cfg['rungs']} evaluation rungs.", "",
             f"Machine: {result['machine']}; wall time {result['wall_seconds']:.0f} s (both studies side by side). "
             f"Command: `python benchmarks/bench_search.py{_changed(cfg)}`.", "",
             "| study | best feasible candidate (mIoU) | training steps | complete / pruned / rejected | wall s |",
             "|---|---|---:|---|---:|"]
    for st in result["studies"]:
        states = [r["state"] for r in st["trials"]]
        rejected = sum(r["rejected_reason"] is not None for r in st["trials"])
        best = s["best_pruned"] if st["pruner"] != "none" else s["best_unpruned"]
        steps = s["steps_pruned"] if st["pruner"] != "none" else s["steps_unpruned"]
        lines.append(f"| pruner {st['pruner']} | {_cand(best)} | {steps:,} | {states.count('COMPLETE')} / "
                     f"{states.count('PRUNED') - rejected} / {rejected} | {st['wall_seconds']:.0f} |")
    rho = s["spearman_vs_short_train"]
    lines += ["", f"Pruned / unpruned training steps: {s['steps_ratio']:.1%} (target <= {TARGET_STEPS:.0%}); best "
              f"mIoU gap {s['miou_gap_points']:+.2f} points (target <= {TARGET_POINTS:g}), same best candidate: "
              f"{'yes' if s['same_best'] else 'no'}. Target: {'MET' if s['met'] else 'MISSED'}.", "",
              f"Spearman's rho against short-train mIoU over the {s['n_fully_trained']} candidates the unpruned "
              f"study trained fully: paper-trend {_rho(rho['paper_trend'])}, MACs {_rho(rho['macs'])}, training-free "
              f"NASWOT score {_rho(rho.get('naswot'))}."]
    if s.get("rung_vs_final"):
        lines += ["", "Spearman's rho of the unpruned study's mIoU at each rung against its final mIoU (how much a "
                  "pruner deciding there can know): " + ", ".join(
                      f"step {k}: {_rho(v)}" for k, v in s["rung_vs_final"].items()) + "."]
    return "\n".join(lines) + "\n"


# arguments that say what to do with results, not how a run trains and searches
NOT_RUN_SETTINGS = {"out", "update_reference", "render_only", "trainfree", "seeds_summary", "replay"}


def _design(cfg: dict) -> dict:
    """A run's settings that must agree for its result to be pooled with others (all but the seed)."""
    return {k: v for k, v in cfg.items() if k not in NOT_RUN_SETTINGS | {"seed"}}


def check_pooled(results: list[tuple[str, dict]], option: str = "--seeds-summary") -> None:
    """Raise ValueError (one line naming ``option``) unless the (folder, result) pairs are runs of one design
    on different sampler seeds."""
    first = _design(results[0][1]["config"])
    for where, r in results[1:]:
        diff = sorted(k for k in set(first) | set(_design(r["config"])) if first.get(k) != r["config"].get(k))
        if diff:
            raise ValueError(f"{option}: {where} differs from {results[0][0]} in {', '.join(diff)} "
                             "(allowed: runs that differ only in --seed)")
    seeds = [r["config"]["seed"] for _, r in results]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{option}: sampler seeds {seeds} repeat (allowed: each seed once)")


def seeds_summary(results: list[tuple[str, dict]]) -> str:
    """Markdown: one row per (folder, result) of one design on different sampler seeds, then how often the
    target was met and the spread of the step ratio and the best-mIoU gap. Raises ValueError (one line) for
    runs of different designs or a repeated seed."""
    import statistics

    check_pooled(results, "--seeds-summary")
    cfg = results[0][1]["config"]
    lines = [f"# Pruning across sampler seeds ({cfg['dataset']}, {cfg['train_size']}, {cfg['steps']} steps x batch "
             f"{cfg['batch_size']}, pruner {cfg['pruner']} ({_settings(results[0][1])}))", "",
             "Each row is one run of `benchmarks/bench_search.py` (budget mode, both studies with the same sampler "
             "seed; steps are training steps, mIoU in % on the synthetic validation scenes, torch eager on the CPU, "
             "fp32).", "",
             "| sampler seed | pruned: best (candidate) | unpruned: best (candidate) | gap (points) | steps pruned / "
             "unpruned | same best | target | rung rho at the first decision | report |",
             "|---:|---|---|---:|---:|---|---|---:|---|"]
    for where, r in sorted(results, key=lambda wr: wr[1]["config"]["seed"]):
        s = r["summary"]
        pruned = next(st for st in r["studies"] if st["pruner"] != "none")
        first_rung = (pruned.get("pruner_settings") or {}).get("min_resource")
        rho = s.get("rung_vs_final", {}).get(str(first_rung)) if first_rung else None
        lines.append(f"| {r['config']['seed']} | {_cand(s['best_pruned'])} | {_cand(s['best_unpruned'])} | "
                     f"{s['miou_gap_points']:+.2f} | {s['steps_pruned']:,} / {s['steps_unpruned']:,} = "
                     f"{s['steps_ratio']:.1%} | {'yes' if s['same_best'] else 'no'} | "
                     f"{'met' if s['met'] else 'MISSED'} | {_rho(rho)} | {where} |")
    sums = [r["summary"] for _, r in results]
    met = sum(s["met"] for s in sums)
    ratios, gaps = [s["steps_ratio"] for s in sums], [s["miou_gap_points"] for s in sums]
    lines += ["", f"Target (<= {TARGET_POINTS:g} point gap or the same best candidate, with <= {TARGET_STEPS:.0%} of "
              f"the steps) met in **{met} of {len(sums)}** sampler seeds. Steps pruned / unpruned: median "
              f"{statistics.median(ratios):.1%} (range {min(ratios):.1%}-{max(ratios):.1%}); best-mIoU gap: median "
              f"{statistics.median(gaps):+.2f} points (range {min(gaps):+.2f} to {max(gaps):+.2f}); same best "
              f"candidate in {sum(s['same_best'] for s in sums)} of {len(sums)}."]
    return "\n".join(lines) + "\n"


# (pruner, first decision as a fraction of the training steps, reduction factor): at 300 steps min_resource 50, 50,
# 100, 100, 150, 200 for SuccessiveHalving; Hyperband (max_resource = the steps) with 2 brackets at factor 3, 3 at 2
REPLAY_GRID = [("sha", 1 / 6, 3), ("sha", 1 / 6, 2), ("sha", 1 / 3, 2), ("sha", 1 / 3, 3), ("sha", 1 / 2, 3),
               ("sha", 2 / 3, 4), ("hyperband", 1 / 6, 3), ("hyperband", 1 / 6, 2)]


def replay(trials: list[dict], min_resource: int, reduction_factor: int, steps: int, pruner: str = "sha") -> dict:
    """Optuna's SuccessiveHalvingPruner (``pruner="sha"``) or HyperbandPruner (``"hyperband"``, max_resource =
    ``steps``) replayed on recorded learning curves: the trials of an unpruned study, in their order, re-told to an
    in-memory study step by step (the rungs they recorded, then their final mIoU); a trial the pruner stops costs
    the steps it had reached. Returns ``{"steps", "best", "complete"}``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if pruner == "sha":
        p = optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource, reduction_factor=reduction_factor)
    else:
        p = optuna.pruners.HyperbandPruner(min_resource=min_resource, max_resource=steps,
                                           reduction_factor=reduction_factor)
    # a fixed name: Hyperband puts trials into brackets by a hash of the study name and the trial number
    study = optuna.create_study(direction="maximize", pruner=p, study_name="replay")
    spent, best, complete = 0, None, 0
    for r in trials:
        if r["state"] != "COMPLETE":
            continue  # rejected before training (over the latency budget)
        trial, stopped = study.ask(), None
        for step, value in sorted((int(k), v) for k, v in r["intermediate"].items()):
            trial.report(value, step)
            if trial.should_prune():
                stopped = step
                break
        if stopped is None:
            study.tell(trial, r["miou"])
            spent, complete = spent + steps, complete + 1
            best = r if best is None or r["miou"] > best["miou"] else best
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            spent += stopped
    return {"steps": spent, "best": best, "complete": complete}


def replay_markdown(results: list[tuple[str, dict]]) -> str:
    """Markdown: for each pruner setting of :data:`REPLAY_GRID`, the steps and the best-mIoU gap it would have
    given on each run's unpruned candidates (same candidates, same order), and how often it met the target.
    Raises ValueError (one line) for runs of different designs or a repeated seed."""
    check_pooled(results, "--replay")
    cfg = results[0][1]["config"]
    runs = sorted(results, key=lambda wr: wr[1]["config"]["seed"])
    seeds = [r["config"]["seed"] for _, r in runs]
    lines = [f"# SuccessiveHalving and Hyperband replayed on recorded learning curves ({cfg['dataset']}, "
             f"{cfg['train_size']}, {cfg['steps']} steps x batch {cfg['batch_size']}, rungs every "
             f"{cfg['steps'] // (cfg['rungs'] + 1)} steps)", "",
             "Each unpruned study of `benchmarks/bench_search.py` records every candidate's mIoU at each rung. Here "
             "they are told again, in their order, to an in-memory Optuna study with `SuccessiveHalvingPruner("
             "min_resource, reduction_factor)` or `HyperbandPruner(min_resource, max_resource=steps, "
             "reduction_factor)` (its brackets: SuccessiveHalving with first decisions at min_resource x factor^i; "
             "a trial's bracket comes from a hash of study name and trial number); a stopped candidate costs the "
             "steps it had reached. The candidates are the unpruned study's: a real pruned study's sampler (TPE) "
             "would pick its last candidates from what it saw, so this isolates the pruner's decisions. Cells: "
             "steps spent / the unpruned study's, then the best-mIoU gap in points (mIoU in %, torch eager on the "
             "CPU, fp32).", "",
             "| pruner: min_resource, factor | " + " | ".join(f"seed {s}" for s in seeds) + " | target met |",
             "|---|" + "---|" * len(seeds) + "---|"]
    for kind, frac, rf in REPLAY_GRID:
        mr, cells, met = round(frac * cfg["steps"]), [], 0
        for _, r in runs:
            full = next(st for st in r["studies"] if st["pruner"] == "none")
            rep = replay(full["trials"], mr, rf, r["config"]["steps"], kind)
            total = r["summary"]["steps_unpruned"]
            gap = r["summary"]["best_unpruned"]["miou"] - rep["best"]["miou"] if rep["best"] else float("nan")
            ok = rep["steps"] / total <= TARGET_STEPS and gap <= TARGET_POINTS
            met += ok
            cells.append(f"{rep['steps'] / total:.1%}, {gap:+.2f}{' (met)' if ok else ''}")
        name = "SuccessiveHalving" if kind == "sha" else "Hyperband"
        lines.append(f"| {name}: {mr}, {rf} | " + " | ".join(cells) + f" | {met} of {len(runs)} |")
    return "\n".join(lines) + "\n"


def _rho(v: float | None) -> str:
    """Spearman's rho with its sign; NaN (one side constant: e.g. every candidate tied at a rung) says so."""
    return "n/a" if v is None else "n/a (all tied)" if v != v else f"{v:+.2f}"


def _cand(r: dict | None) -> str:
    if r is None:
        return "-"
    p = r["params"]
    return (f"#{r['trial']} w{p['encoder.width']:g} d{p['encoder.depth']:g} c{p['decoder.channels']} "
            f"r{p['decoder.repeats']} P3-P{p['decoder.max_level']}: {r['miou']:.1f}%")


def _settings(result: dict) -> str:
    """The pruned study's pruner arguments in words (reports made before they were stored: Optuna's defaults
    as escale set them then, reduction factor 3 from the first rung)."""
    st = next(s for s in result["studies"] if s["pruner"] != "none")
    ps = st.get("pruner_settings")
    if not ps:
        return "reduction factor 3, first decision at the first rung"
    return f"reduction factor {ps['reduction_factor']}, first decision at step {ps['min_resource']}"


def _changed(cfg: dict) -> str:
    """The arguments of a run that differ from the defaults, as command-line flags."""
    defaults = vars(parse_args([]))
    return "".join(f" --{k.replace('_', '-')} {v}" for k, v in cfg.items()
                   if k not in NOT_RUN_SETTINGS and defaults.get(k) != v)


def load_run(folder: str, option: str) -> dict:
    """The search.json of one run's folder; ValueError (one line naming ``option`` and the folder) if unreadable."""
    path = Path(folder) / "search.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else f"not JSON: {exc}"
        raise ValueError(f"{option}: {path} cannot be read ({why}; allowed: folders a bench_search run wrote "
                         "search.json to)") from None


def main() -> None:
    args = parse_args()
    out = bench_output(args, NAME)
    if args.seeds_summary or args.replay:
        dirs, name = (args.seeds_summary, "seeds.md") if args.seeds_summary else (args.replay, "replay.md")
        try:
            results = [(d, load_run(d, "--replay" if args.replay else "--seeds-summary")) for d in dirs]
            text = replay_markdown(results) if args.replay else seeds_summary(results)
        except ValueError as exc:  # a missing folder, a broken file, runs of different designs
            raise SystemExit(f"bench_search: {exc}") from None
        out.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
        print(text)
        return
    if args.render_only:
        result = json.loads((out / "search.json").read_text())
        if args.trainfree:  # add the training-free scores to an existing run
            trainfree_scores(result)
            result["summary"] = summarise(result)
            (out / "search.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        (out / "search.md").write_text(markdown(result))
        print(markdown(result))
        return
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-search-"))
    with ProcessPoolExecutor(2) as pool:
        jobs = [pool.submit(run_one, args, pruner, str(work / f"{pruner}.db")) for pruner in (args.pruner, "none")]
        studies = [j.result() for j in jobs]
    import torch

    result = {"machine": f"{platform.machine()} {os.cpu_count()} cores (shared), torch {torch.__version__}, 1 intra-op "
                         f"thread per study, load avg {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end",
              "config": vars(args), "wall_seconds": time.perf_counter() - t0, "studies": studies}
    trainfree_scores(result)
    result["summary"] = summarise(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "search.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "search.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()

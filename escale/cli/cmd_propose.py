"""``escale propose``: search a space under a latency budget and print the best proposals."""

from __future__ import annotations

import argparse

from escale.cli import progress, render
from escale.cli.cmd_study import train_phrase
from escale.cli.helptext import with_example

SHOWN = [("rank", "right"), ("preset", "left"), ("width", "right"), ("depth", "right"), ("block", "left"),
         ("BiFPN ch", "right"), ("repeats", "right"), ("levels", "left"), ("pred. ms", "right"),
         ("meas. ms", "right"), ("mIoU", "right"), ("acc. from", "left"), ("FLOPs (G MACs)", "right"),
         ("params (M)", "right"), ("nearest preset", "left"), ("spec file", "left")]


def add_study_args(p: argparse.ArgumentParser) -> None:
    """Arguments shared by commands that run a study."""
    p.add_argument("--space", required=True, help="search space YAML, e.g. spaces/eseg-lite.yaml")
    p.add_argument("--budget-ms", type=float, default=None, help="latency budget in ms (a constraint)")
    p.add_argument("--mode", default=None, help="budget (default with --budget-ms): maximise mIoU subject to "
                   "latency <= budget, pruning poor short-train candidates early; front (default without a budget): "
                   "two objectives (mIoU, cost), the Pareto front, no pruning (Optuna does not prune multi-objective "
                   "studies)")
    p.add_argument("--pruner", default=None, help="budget mode: sha (SuccessiveHalving, default), hyperband or none; "
                   "it acts on the mIoU short-train reports at --rungs evaluations")
    p.add_argument("--min-resource", type=int, default=None, metavar="STEPS", help="training steps before the "
                   "pruner's first decision (Optuna's min_resource; default: the first rung); SuccessiveHalving "
                   "decides again at STEPS x reduction factor, x its square, ...")
    p.add_argument("--reduction-factor", type=int, default=3, help="the pruner's reduction factor: about 1 in this "
                   "many candidates goes on at each decision (default: 3)")
    p.add_argument("--backend", default="onnxruntime", help="latency backend (default: onnxruntime)")
    p.add_argument("--device", default="cpu", help="device for latency and training (default: cpu)")
    p.add_argument("--precision", default="fp32", help="precision (default: fp32)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for latency (default: 1)")
    p.add_argument("--input-size", default="512x1024", metavar="HxW", help="input size (default: 512x1024)")
    p.add_argument("--trials", type=int, default=20, help="evaluated trials the study should hold: complete or "
                   "pruned at a rung; candidates rejected over budget do not count (default: 20)")
    p.add_argument("--accuracy", default="paper-trend", help="accuracy objective: paper-trend (default; an instant "
                   "Cityscapes estimate from the paper's FLOPs trend, a monotone function of MACs) or short-train "
                   "(mIoU measured after short training); 'proxy' is the old name of paper-trend")
    p.add_argument("--cost", default="latency", help="cost axis: latency (default), macs or params")
    p.add_argument("--lut", default=None, help="latency table JSON for screening (default: the first "
                   "<backend>-<device>-<precision>-<HxW>-t<threads>.json in <home>/lut-local/, then the committed "
                   "reports/lut/; `escale paths` shows the folders)")
    p.add_argument("--calibration", default=None, metavar="FILE", help="this machine's calibration of the table "
                   "(default: <home>/lut-calibrations/<table stem>@<fingerprint id>.json when it matches)")
    p.add_argument("--no-calibrate", action="store_true", help="refuse a table made on another machine that has "
                   "no calibration for this one (default: calibrate it first, about 30 s)")
    p.add_argument("--no-measure", action="store_true", help="do not measure candidates (predictions only)")
    p.add_argument("--storage", default=None, help="sqlite:///FILE.db, postgresql://USER@HOST:PORT/DB (pip install "
                   "'escale[postgres]'), journal:FILE or FILE.log (Optuna journal file, for a shared filesystem) "
                   "(default: sqlite <home>/studies/<name>.db)")
    p.add_argument("--study-name", default=None, help="study name (default: derived from the settings)")
    p.add_argument("--max-failures", type=int, default=5, help="stop (exit 1) after this many failed trials in a "
                   "row (default: 5)")
    p.add_argument("--seed", type=int, default=None, help="sampler seed (and training seed)")
    t = p.add_argument_group("short-train (--accuracy short-train; the same for every candidate of a study)")
    t.add_argument("--dataset", default="synthetic", help="synthetic (default; options like "
                   "synthetic:task=cue,context_distance=0.6), cityscapes or ade20k")
    t.add_argument("--data-root", default=None, metavar="PATH", help="folder of the cityscapes/ade20k files")
    t.add_argument("--train-size", default=None, metavar="HxW", help="training crop of every candidate (default: "
                   "the dataset's, synthetic 128x256)")
    t.add_argument("--train-steps", type=int, default=100, help="short-train steps (default: 100)")
    t.add_argument("--batch", type=int, default=2, help="training batch (default: 2)")
    t.add_argument("--train-seeds", type=int, default=1, metavar="K",
                   help="train every candidate with K seeds and score the mean mIoU (default: 1; 2 ranked far more "
                   "stably in benchmarks/bench_rank.py: rho 0.86 vs 0.61 between seeds)")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: the dataset's)")
    t.add_argument("--warmup-steps", type=int, default=None, help="warm-up steps (default: 5%% of the steps)")
    t.add_argument("--schedule", choices=("cosine", "onecycle"), default=None,
                   help="lr schedule: cosine (timm, linear warm-up; default) or onecycle (torch OneCycleLR)")
    t.add_argument("--weight-decay", type=float, default=None, help="weight decay (default: the dataset's)")
    t.add_argument("--rungs", type=int, default=None, help="budget mode: evaluations during training, reported to "
                   "Optuna (the pruner judges them; with --pruner none they are the learning curves) (default: 3, "
                   "i.e. every quarter, with a pruner; 0 with --pruner none)")
    t.add_argument("--eval-images", type=int, default=16, help="validation images per evaluation (default: 16)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("propose", help="propose ESeg variants within a latency budget (Optuna study)",
                       **with_example("Run or resume an Optuna study over a search space (maximise mIoU, minimise "
                                      "cost, latency budget as a constraint) and print the best proposals. "
                                      "Progress goes to stderr: a bar in a terminal, one line per trial in logs.",
                                      "escale propose --budget-ms 150 --space spaces/eseg-lite.yaml "
                                      "--input-size 512x1024 --trials 30"))
    add_study_args(p)
    p.add_argument("--top", type=int, default=5, help="proposals to print and write (default: 5)")
    p.add_argument("--out", default=None, help="folder for proposal spec YAMLs (default: <home>/proposals/<study>)")
    p.add_argument("--format", choices=render.FORMATS, default="table", help="output format")
    p.set_defaults(func=run)


def study_config(args: argparse.Namespace):  # noqa: ANN201 - StudyConfig, imported lazily
    from escale.search import StudyConfig, TrainSettings, load_space
    from escale.search.proposals import load_predictor
    from escale.spec import parse_input_size

    size = parse_input_size(args.input_size)
    space = load_space(args.space)
    predictor = load_predictor(args.lut, args.backend, args.device, args.precision, size, args.threads,
                               calibration=args.calibration)
    train = TrainSettings(steps=args.train_steps, seed=args.seed or 0, dataset=args.dataset, device=args.device,
                          data_root=args.data_root, batch_size=args.batch, lr=args.lr, warmup_steps=args.warmup_steps,
                          eval_images=args.eval_images,
                          rungs=args.rungs if args.rungs is not None else (0 if args.pruner == "none" else 3),
                          schedule=args.schedule,
                          weight_decay=args.weight_decay, seeds=args.train_seeds,
                          input_size=parse_input_size(args.train_size) if args.train_size else None)
    return StudyConfig(space=space, input_size=size, cost=args.cost, budget_ms=args.budget_ms,
                       accuracy=args.accuracy, backend=args.backend, device=args.device, precision=args.precision,
                       threads=args.threads, predictor=predictor, measure=not args.no_measure, train=train,
                       study_name=args.study_name, storage=args.storage, seed=args.seed, mode=args.mode,
                       pruner=args.pruner, max_failures=args.max_failures, min_resource=args.min_resource,
                       reduction_factor=args.reduction_factor)


def run(args: argparse.Namespace) -> int:
    from escale.search.proposals import propose
    from escale.search.study import check_feasible, open_study, shown_url, storage_url

    cfg = study_config(args)
    cfg.check()  # bad settings fail before any calibration
    _machine(cfg.predictor, args)
    open_study(cfg)  # bad storage or budget fail before the progress bar starts
    check_feasible(cfg)
    _say_table(cfg.predictor, args, cfg.input_size)
    with progress.reporter(live=args.format == "table") as rep:
        task = rep.task("propose", total=args.trials, unit="evaluated")
        plan = _plan(cfg)

        def on_start(trial) -> None:  # noqa: ANN001 - an optuna.Trial, about to be evaluated
            preset = trial.user_attrs.get("preset")
            task.status(f"trial {trial.number}{f' ({preset})' if preset else ''}: {plan}")

        def on_trial(trial, done: int) -> None:  # noqa: ANN001 - a FrozenTrial, finished
            task.advance(outcome(trial), completed=done)
            if trial.user_attrs.get("latency_guard"):  # set on the one trial at which the guard fired
                progress.note(trial.user_attrs["latency_guard"])

        try:
            frame = propose(cfg, args.trials, top=args.top, out_dir=args.out, on_trial=on_trial, on_start=on_start)
        except KeyboardInterrupt:
            progress.note(f"interrupted: the running trial ended as FAIL; finished trials are kept in "
                          f"{shown_url(storage_url(cfg.storage, cfg.name))} (run the same command to resume)")
            return 130
    show(frame, args.format, cfg)
    return 0


def _machine(predictor, args: argparse.Namespace) -> None:  # noqa: ANN001 - a LatencyPredictor or None
    """A table from another machine never screens silently: calibrate it here first (one line), or refuse."""
    from escale.errors import EscaleError
    from escale.search.proposals import calibrate_here

    if predictor is None or predictor.status is None or not predictor.status.foreign:
        return
    src, why = predictor.table.source, predictor.status.table_mismatch
    if args.no_calibrate:
        raise EscaleError(f"--lut: {src} was built on another machine ({why}) and has no calibration for this "
                          f"one; run `escale lut calibrate --lut {src}` (about 30 s), or drop --no-calibrate")
    cal = calibrate_here(predictor)
    progress.note(f"latency table {src} was built on another machine ({why}): calibrated it for this one in "
                  f"{cal.seconds:.1f} s -> {cal.source}")


def _say_table(predictor, args: argparse.Namespace, size: tuple[int, int]) -> None:  # noqa: ANN001
    """One line on stderr: which latency table screens the candidates (and which calibration), or none."""
    from escale.paths import lut_search_path
    from escale.search.lut import table_name

    if predictor is not None:
        status = f", {predictor.status.describe()}" if predictor.status is not None else ""
        if args.lut is None or predictor.machine is not None:
            progress.note(f"latency table: {predictor.table.source}{status}")
        return
    if args.lut is not None:
        return
    name = table_name(args.backend, args.device, args.precision, size, args.threads or 1)
    folders = ", ".join(str(d) for d in lut_search_path())
    if args.cost == "latency" or args.budget_ms is not None:
        then = "no screening, every candidate is measured" if not args.no_measure else "no latency screening"
    else:
        then = "no predicted latency is recorded"
    progress.note(f"no latency table {name} in {folders}: {then} (build one with `escale lut build`, or pass --lut)")


def _plan(cfg) -> str:  # noqa: ANN001 - a StudyConfig
    """What each trial does, in order, e.g. ``profiling, predicting, measuring onnxruntime/cpu, proxy mIoU``."""
    steps = ["profiling"]
    if cfg.predictor is not None:
        steps.append("predicting latency")
    if cfg.measure and (cfg.cost == "latency" or cfg.budget_ms is not None):
        steps.append(f"measuring {cfg.backend}/{cfg.device}")
    if cfg.accuracy == "short-train":
        h, w = cfg.train.input_size or (0, 0)
        steps.append(f"training {cfg.train.steps} steps at {h}x{w} on {cfg.train.dataset}")
    else:
        steps.append(f"{cfg.accuracy} mIoU")
    return ", ".join(steps) + " ..."


def outcome(trial) -> str:  # noqa: ANN001 - a FrozenTrial
    """A finished trial in one line: values, or why it was rejected or failed."""
    ua = trial.user_attrs
    head = f"trial {trial.number}" + (f" ({ua['preset']})" if ua.get("preset") else "")
    if trial.state.name == "COMPLETE":
        ms = ua.get("latency_ms", ua.get("predicted_latency_ms"))
        lat = f", {ms:.1f} ms" if isinstance(ms, (int, float)) else ""
        return f"{head} complete: mIoU {trial.values[0]:.1f}{lat}, {ua.get('macs', 0) / 1e9:.2f} G MACs"
    if trial.state.name == "PRUNED" and ua.get("rejected_reason"):
        return f"{head} rejected: {ua['rejected_reason']}"
    if trial.state.name == "PRUNED":
        return f"{head} pruned at step {ua.get('pruned_at_step', '?')} (mIoU below the rung's cut)"
    return f"{head} {trial.state.name.lower()}" + (f": {ua['error']}" if ua.get("error") else "")


def show(frame, fmt: str, cfg) -> None:  # noqa: ANN001
    rows = frame.to_dict(orient="records")
    if fmt == "json":
        render.emit_json(rows)
        return
    if fmt == "csv":
        render.emit_csv(rows)
        return
    out = []
    for rank, r in enumerate(rows, start=1):
        out.append([str(rank), r["preset"] if isinstance(r["preset"], str) else "-", f"{r['width']:g}", f"{r['depth']:g}", r["block"],
                    str(r["channels"]), str(r["repeats"]), f"P{r['min_level']}-P{r['max_level']}",
                    render.fmt(r["predicted_latency_ms"], ".1f"), render.fmt(r["latency_ms"], ".1f"),
                    f"{r['miou']:.1f}", r["accuracy_objective"], f"{r['gmacs']:.2f}", f"{r['params_m']:.2f}",
                    r["nearest_preset"], r["spec_file"]])
    h, w = cfg.input_size
    budget = f"budget {cfg.budget_ms:g} ms" if cfg.budget_ms is not None else "no budget"
    mode = (f"budget mode (max mIoU s.t. latency <= budget, pruner {cfg.pruner})" if cfg.mode == "budget"
            else f"front mode (max mIoU, min {cfg.cost})")
    caption = (f"Study {cfg.name}: {mode}; {cfg.backend}/{cfg.device}/{cfg.precision}, {cfg.threads} thread(s), "
               f"input {h}x{w}, {budget}, cost axis {cfg.cost}. mIoU from '{cfg.accuracy}'"
               + (" (a Cityscapes estimate from the paper's FLOPs trend, not a measurement)"
                  if cfg.accuracy == "paper-trend" else train_phrase(cfg.train.to_dict(), "short training: "))
               + ". FLOPs are multiply-adds at the input size. pred./meas.: latency predicted from the kernel table"
               + (f" (calibrated for this machine: {cfg.predictor.machine.source})"
                  if getattr(cfg.predictor, "machine", None) is not None else "")
               + " / measured."
               + "".join(f"\nRank {i}: {r['input_size_note']}" for i, r in enumerate(rows, start=1)
                         if isinstance(r.get("input_size_note"), str)))
    render.table(f"ESeg proposals — {cfg.mode} mode, {budget}", SHOWN, out, caption)

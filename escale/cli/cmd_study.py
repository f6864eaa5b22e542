"""``escale study show NAME`` (Pareto front or all trials) and ``escale study list``."""

from __future__ import annotations

import argparse

from escale.cli import render
from escale.cli.helptext import with_example

COLUMNS = [("trial", "right"), ("state", "left"), ("preset", "left"), ("width", "right"), ("depth", "right"),
           ("block", "left"), ("BiFPN ch", "right"), ("repeats", "right"), ("levels", "left"),
           ("mIoU", "right"), ("acc. from", "left"), ("pred. ms", "right"), ("meas. ms", "right"),
           ("FLOPs (G MACs)", "right"), ("params (M)", "right"), ("note", "left")]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="show saved Optuna studies",
                       **with_example("Saved Optuna studies (escale propose): `show` a front, `list` the studies. "
                                      "Default storage: <home>/studies/NAME.db (`escale paths`).",
                                      "escale study show my-study --format json"))
    ssub = p.add_subparsers(dest="study_command", metavar="ACTION")
    ssub.required = True
    show = ssub.add_parser("show", help="print a study's feasible Pareto front (or every trial with --all)",
                           **with_example("A study's feasible Pareto front (max mIoU, min cost), or every trial "
                                          "with --all, rejected and failed ones included.",
                                          "escale study show my-study --all"))
    show.add_argument("name", help="study name")
    show.add_argument("--storage", default=None, help="Optuna storage: a URL (sqlite:///, postgresql://), journal:FILE "
                      "or FILE.log (default: <home>/studies/<name>.db)")
    show.add_argument("--all", action="store_true", help="every trial, rejected and failed ones included")
    show.add_argument("--format", choices=render.FORMATS, default="table", help="output format")
    show.set_defaults(func=_show)
    lst = ssub.add_parser("list", help="list studies in a storage (default: <home>/studies/*.db and *.log)",
                          **with_example("Studies in a storage, or in every database under <home>/studies/.",
                                         "escale study list --storage postgresql://user@host/escale"))
    lst.add_argument("--storage", default=None, help="Optuna storage URL")
    lst.set_defaults(func=_list)


def _show(args: argparse.Namespace) -> int:
    from escale.search import load_study, pareto_frame, trials_frame

    study = load_study(args.name, storage=args.storage)
    frame = trials_frame(study) if args.all else pareto_frame(study)
    rows = frame.to_dict(orient="records")
    if render.emit_machine(rows, args.format):
        return 0
    out = [_row(r) for r in rows]
    ua = study.user_attrs
    size = "x".join(map(str, ua.get("input_size", [])))
    budget_mode = len(study.directions) == 1
    mode = (f"budget mode (max mIoU s.t. latency <= budget, pruner {ua.get('pruner')})" if budget_mode
            else "front mode (max mIoU, min cost)")
    caption = (f"{mode}; {ua.get('space')} on {ua.get('backend')}/{ua.get('device')}, {ua.get('threads')} "
               f"thread(s), input {size}, budget {ua.get('budget_ms')} ms, cost axis {ua.get('cost_axis')}; "
               f"{len(study.trials)} trials. mIoU from '{ua.get('accuracy_objective')}': 'paper-trend' (formerly "
               "'proxy') = estimate from the paper's FLOPs trend, 'short-train' = measured after short training"
               f"{train_phrase(ua.get('train'))}. pred./meas. ms: latency predicted by the kernel table / measured.")
    shown = "feasible trials, best mIoU first" if budget_mode else "feasible Pareto front"
    title = f"Study {args.name} — " + ("all trials (rejected: why, in the note)" if args.all else shown)
    render.table(title, COLUMNS, out, caption)
    return 0


def train_phrase(train: dict | None, prefix: str = "") -> str:
    """`` (dataset, N steps x batch B at HxW[, mean of K seeds], device)`` from a study's stored training
    settings (``TrainSettings.to_dict()``; "" without them), for the captions of ``study show`` and ``propose``."""
    if not train:
        return ""
    size = "x".join(map(str, train.get("input_size") or [])) or "?"
    seeds = f", mean of {train['seeds']} seeds" if train.get("seeds", 1) > 1 else ""
    return (f" ({prefix}{train.get('dataset')}, {train.get('steps')} steps x batch {train.get('batch_size')} at "
            f"{size}{seeds}, {train.get('device')})")


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v)  # None or NaN (pandas fills gaps with NaN)


def _row(r: dict) -> list[str]:
    def f(key: str, spec: str) -> str:
        v = r.get(key)
        return "-" if _missing(v) else format(v, spec)

    def text(key: str) -> str:
        v = r.get(key)
        return "-" if _missing(v) else str(v)

    levels = "-" if _missing(r.get("min_level")) else f"P{int(r['min_level'])}-P{int(r['max_level'])}"
    note = next((str(r[k]) for k in ("rejected_reason", "error") if not _missing(r.get(k))), "")
    if not note and not _missing(r.get("pruned_at_step")):
        note = f"pruned at step {int(r['pruned_at_step'])}"
    note = note or ("pareto" if r.get("pareto") is True else "")
    return [str(r["trial"]), r["state"].lower(), text("preset"), f("width", "g"), f("depth", "g"), text("block"),
            f("channels", ".0f"), f("repeats", ".0f"), levels, f("miou", ".1f"), text("accuracy_objective"),
            f("predicted_latency_ms", ".1f"), f("latency_ms", ".1f"), f("gmacs", ".2f"), f("params_m", ".2f"), note]


def _list(args: argparse.Namespace) -> int:
    import optuna

    from escale.paths import studies_dir
    from escale.search.storage import normalise, open_storage, shown_url

    found = sorted([*studies_dir().glob("*.db"), *studies_dir().glob("*.log")])  # SQLite files and journals
    urls = [normalise(args.storage)] if args.storage else [normalise(str(p)) for p in found]
    rows = []
    for url in urls:
        for s in optuna.get_all_study_summaries(storage=open_storage(url, None)):
            rows.append([s.study_name, str(s.n_trials), str(s.user_attrs.get("space", "-")),
                         str(s.user_attrs.get("budget_ms", "-")), shown_url(url)])
    render.table("Studies", [("name", "left"), ("trials", "right"), ("space", "left"), ("budget ms", "right"),
                             ("storage", "left")], rows)
    return 0

"""Reading a saved Optuna study into a trials table, and its Pareto front (max mIoU, min cost).

Studies (``escale propose``) are stored by default in ``<home>/studies/<NAME>.db`` (SQLite;
:func:`escale.paths.studies_dir`, the checkout's ``reports/studies/`` unless ``$ESCALE_HOME`` is set). Each
complete trial has ``values = [miou, cost]`` and user attributes such as ``miou``, ``latency_ms``,
``macs``, ``params``, ``spec`` and ``preset`` (the paper preset it reproduces, or None).
"""

from __future__ import annotations

import numpy as np

# Cost axis names an Optuna study may carry (metric_names[1] / user_attrs["cost_axis"|"cost"])
# -> (column, axis label, divisor from the stored value to the label's unit).
COST_AXES = {
    "latency_ms": ("latency_ms", "Latency (ms)", 1.0),
    "latency": ("latency_ms", "Latency (ms)", 1.0),
    "macs": ("gmacs", "FLOPs (B multiply-adds)", 1e9),
    "gmacs": ("gmacs", "FLOPs (B multiply-adds)", 1.0),
    "params": ("params_m", "Params (M)", 1e6),
    "params_m": ("params_m", "Params (M)", 1.0),
}


def load_study(name: str, storage: str | None = None):
    """Load study ``name`` (default ``<home>/studies/NAME.db``); see :func:`escale.search.load_study`."""
    from escale.search.study import load_study as _load

    return _load(name, storage)


def _cost_spec(study) -> tuple[str, str, float]:
    names = getattr(study, "metric_names", None) or []
    candidates = [names[1]] if len(names) > 1 else []
    candidates += [study.user_attrs.get("cost_axis"), study.user_attrs.get("cost")]
    size = study.user_attrs.get("input_size")
    for name in candidates:
        if name in COST_AXES:
            column, label, divisor = COST_AXES[name]
            if column == "latency_ms" and _latency_source(study):
                label = f"{label[:-1]}, {_latency_source(study)})"  # measured or predicted, where, how
            if isinstance(size, (list, tuple)) and len(size) == 2:
                label = f"{label[:-1]}, {size[0]}×{size[1]})"  # the study's input size
            return column, label, divisor
    return "cost", "Cost (second objective)", 1.0


def cost_axis(study) -> tuple[str, str]:
    """(column, axis label) of the study's cost objective, from its metric names or user attributes."""
    column, label, _ = _cost_spec(study)
    return column, label


def settings_line(study) -> str:
    """The study's recorded settings (escale propose's user attributes) in one line, or ''."""
    keys = ("space", "cost_axis", "budget_ms", "accuracy_objective", "backend", "device", "precision", "threads",
            "input_size")
    attrs = study.user_attrs
    parts = [f"{k}={'x'.join(map(str, attrs[k])) if isinstance(attrs[k], list) else attrs[k]}"
             for k in keys if attrs.get(k) is not None]
    return ", ".join(parts)


def _latency_source(study) -> str:
    """``measured, onnxruntime/cpu, 1 thread`` (or ``predicted``): where a study's latency axis comes from."""
    ua = study.user_attrs
    how = {True: "measured", False: "predicted"}.get(ua.get("measure"), "")
    threads = ua.get("threads")
    where = "/".join(str(ua[k]) for k in ("backend", "device") if ua.get(k))
    parts = [how, where, f"{threads} thread{'s' if threads != 1 else ''}" if threads else ""]
    return ", ".join(p for p in parts if p)


def mode_line(study) -> str:
    """``budget mode, short-train`` / ``front mode, paper-trend``: what produced a study's numbers."""
    mode = study.user_attrs.get("mode") or ("budget" if len(study.directions) == 1 else "front")
    accuracy = study.user_attrs.get("accuracy_objective")
    accuracy = "paper-trend" if accuracy == "proxy" else accuracy
    return f"{mode} mode" + (f", {accuracy}" if accuracy else "")


def budget(study) -> float | None:
    """The study's latency budget in ms (``user_attrs["budget_ms"]``) when its cost axis is latency."""
    value = study.user_attrs.get("budget_ms")
    return float(value) if value is not None and cost_axis(study)[0] == "latency_ms" else None


def pareto_mask(miou: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """True where no other point has mIoU >= and cost <= with one of them strict (max mIoU, min cost)."""
    miou, cost = np.asarray(miou, float), np.asarray(cost, float)
    mask = np.zeros(len(miou), dtype=bool)
    for i in range(len(miou)):
        if not (np.isfinite(miou[i]) and np.isfinite(cost[i])):
            continue
        better_eq = (miou >= miou[i]) & (cost <= cost[i])
        strict = (miou > miou[i]) | (cost < cost[i])
        mask[i] = not np.any(better_eq & strict)
    return mask


def trials_frame(study):
    """A DataFrame of the study's complete trials with ``cost``, ``feasible`` and ``on_front`` columns.

    mIoU in %, ``latency_ms`` in ms, ``gmacs`` in billions of multiply-adds, ``params_m`` in millions;
    ``cost`` is the second objective in the unit of :func:`cost_axis`. Infeasible trials (over the
    latency budget) are never on the front.
    """
    import optuna
    import pandas as pd

    from escale.search.results import trial_row  # the one reader of a trial's user attributes

    divisor = _cost_spec(study)[2]
    axis = study.user_attrs.get("cost_axis")  # budget-mode trials carry their cost in attributes, not values
    rows = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        r = trial_row(t, axis)
        rows.append({"trial": r["trial"], "miou": r["miou"], "cost": _scale(r["cost"], divisor),
                     "latency_ms": r["latency_ms"], "gmacs": r["gmacs"], "params_m": r["params_m"],
                     "preset": r["preset"], "accuracy": r["accuracy_objective"], "feasible": r["feasible"],
                     "spec": r["spec"]})
    columns = ["trial", "miou", "cost", "latency_ms", "gmacs", "params_m", "preset", "accuracy", "feasible", "spec"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["on_front"] = False
    feasible = frame["feasible"].astype(bool)
    if feasible.any():
        sub = frame[feasible]
        frame.loc[sub.index, "on_front"] = pareto_mask(sub["miou"].astype(float), sub["cost"].astype(float))
    return frame


def _scale(value: float | None, unit: float) -> float | None:
    return None if value is None else float(value) / unit


def front_table(frame):
    """The Pareto-front rows, cheapest first, with the scaling parameters pulled out of ``spec``."""
    front = frame[frame["on_front"]].sort_values("cost").copy()
    for key, path in (("width", ("encoder", "width")), ("depth", ("encoder", "depth")),
                      ("channels", ("decoder", "channels")), ("repeats", ("decoder", "repeats"))):
        front[key] = [(s or {}).get(path[0], {}).get(path[1]) for s in front["spec"]]
    front["levels"] = [f"P{s['decoder']['min_level']}-P{s['decoder']['max_level']}" if s else None
                       for s in front["spec"]]
    return front.drop(columns=["spec", "on_front"]).reset_index(drop=True)

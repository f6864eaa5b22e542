"""Reading a saved Optuna study into a trials table, and its Pareto front (max mIoU, min cost).

Studies (``escale propose``) are stored by default in ``reports/studies/<NAME>.db`` (SQLite). Each
complete trial has ``values = [miou, cost]`` and user attributes such as ``miou``, ``latency_ms``,
``macs``, ``params``, ``spec`` and ``preset`` (the paper preset it reproduces, or None).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from escale.errors import EscaleError

DEFAULT_STUDY_DIR = Path("reports") / "studies"
# Cost axis names an Optuna study may carry (metric_names / user_attrs["cost"]) -> (column, label).
COST_AXES = {
    "latency_ms": ("latency_ms", "Latency (ms)"),
    "latency": ("latency_ms", "Latency (ms)"),
    "macs": ("gmacs", "FLOPs (B multiply-adds)"),
    "gmacs": ("gmacs", "FLOPs (B multiply-adds)"),
    "flops": ("gmacs", "FLOPs (B multiply-adds)"),
    "params": ("params_m", "Params (M)"),
    "params_m": ("params_m", "Params (M)"),
}


def default_storage(name: str) -> str:
    return f"sqlite:///{DEFAULT_STUDY_DIR / f'{name}.db'}"


def load_study(name: str, storage: str | None = None):
    """Load study ``name`` from ``storage`` (default ``sqlite:///reports/studies/NAME.db``) via Optuna."""
    import optuna

    storage = storage or default_storage(name)
    if storage.startswith("sqlite:///"):
        db = Path(storage[len("sqlite:///"):])
        if not db.is_file():  # Optuna would create an empty database; say what is missing instead
            raise EscaleError(f"study: {name!r} not found: no database at {db} (run escale propose first, "
                              f"or pass --storage URL)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = [s.study_name for s in optuna.get_all_study_summaries(storage=storage)]
        raise EscaleError(f"study: {name!r} not found in {storage} (studies there: "
                          f"{', '.join(known) or 'none'})") from None
    except Exception as exc:  # storage URL that cannot be opened (driver missing, host down, ...)
        raise EscaleError(f"--storage: cannot open {storage} ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def cost_axis(study) -> tuple[str, str]:
    """(column, axis label) of the study's cost objective, from its metric names or user attributes."""
    names = getattr(study, "metric_names", None) or []
    candidates = [names[1]] if len(names) > 1 else []
    candidates.append(study.user_attrs.get("cost"))
    for name in candidates:
        if name in COST_AXES:
            return COST_AXES[name]
    return "cost", "Cost (second objective)"


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


def _feasible(trial: Any) -> bool:
    constraints = trial.system_attrs.get("constraints")
    return constraints is None or all(c <= 0 for c in constraints)


def trials_frame(study):
    """A DataFrame of the study's complete trials with ``cost``, ``feasible`` and ``on_front`` columns.

    mIoU in %, ``latency_ms`` in ms, ``gmacs`` in billions of multiply-adds, ``params_m`` in millions;
    ``cost`` is the second objective in the unit of :func:`cost_axis`. Infeasible trials (over the
    latency budget) are never on the front.
    """
    import optuna
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        a = t.user_attrs
        values = t.values or [None, None]
        rows.append({
            "trial": t.number, "miou": a.get("miou", values[0]), "cost": values[1] if len(values) > 1 else None,
            "latency_ms": a.get("latency_ms"), "gmacs": _scale(a.get("macs"), 1e9),
            "params_m": _scale(a.get("params"), 1e6), "preset": a.get("preset"),
            "feasible": _feasible(t), "spec": a.get("spec"),
        })
    columns = ["trial", "miou", "cost", "latency_ms", "gmacs", "params_m", "preset", "feasible", "spec"]
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

"""Study results as DataFrames: every trial, the best feasible trials (budget mode: by mIoU; front mode: the
Pareto front), the nearest paper preset."""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from escale.spec import ESegSpec, family

SCALING = ("width", "depth", "channels", "repeats")


def nearest_preset(spec: ESegSpec | dict[str, Any]) -> str:
    """The paper preset closest in scaling parameters: sum of |ln ratio| over width, depth, BiFPN
    channels and repeats, plus 1 per differing base level and 0.5 per differing encoder block type."""
    spec = spec if isinstance(spec, ESegSpec) else ESegSpec.from_dict(spec)

    def dist(p: ESegSpec) -> float:
        a, b = _scaling(spec), _scaling(p)
        d = sum(abs(math.log(a[k] / b[k])) for k in SCALING)
        d += abs(spec.decoder.min_level - p.decoder.min_level)
        return d + 0.5 * (spec.encoder.block_label != p.encoder.block_label)

    return min(family("eseg"), key=dist).name


def _scaling(spec: ESegSpec) -> dict[str, float]:
    return {"width": spec.encoder.width, "depth": spec.encoder.depth, "channels": spec.decoder.channels,
            "repeats": spec.decoder.repeats}


def within_constraints(t: FrozenTrial) -> bool:
    """No constraint above 0: Optuna 5's named constraints, or older studies' ``system_attrs["constraints"]``."""
    named = getattr(t, "constraints", None)
    values = list(named.values()) if isinstance(named, dict) else t.system_attrs.get("constraints") or []
    return all(c <= 0 for c in values)


def trial_row(t: FrozenTrial, cost_axis: str | None = None) -> dict[str, Any]:
    """One flat row for a trial (spec scaling parameters, objectives, sizes, state, reasons)."""
    ua = t.user_attrs
    row: dict[str, Any] = {"trial": t.number, "state": t.state.name, "preset": ua.get("preset"),
                           "spec_id": ua.get("spec_id")}
    spec = ESegSpec.from_dict(ua["spec"]) if "spec" in ua else None
    if spec is not None:
        row.update(width=spec.encoder.width, depth=spec.encoder.depth, block=spec.encoder.block_label,
                   act=spec.encoder.act, se=spec.encoder.se, channels=spec.decoder.channels,
                   repeats=spec.decoder.repeats, min_level=spec.decoder.min_level, max_level=spec.decoder.max_level,
                   nearest_preset=nearest_preset(spec))
    row.update(miou=ua.get("miou", t.values[0] if t.values else None), accuracy_objective=ua.get("accuracy_objective"),
               predicted_latency_ms=ua.get("predicted_latency_ms"), latency_ms=ua.get("latency_ms"),
               macs=ua.get("macs"), gmacs=ua["macs"] / 1e9 if ua.get("macs") is not None else None,
               params=ua.get("params"), params_m=ua["params"] / 1e6 if ua.get("params") is not None else None)
    if cost_axis:
        row["cost_axis"] = cost_axis
    row["cost"] = t.values[1] if t.values and len(t.values) > 1 else _cost_attr(ua, cost_axis)
    row["latency_source"] = ("measured" if ua.get("latency_ms") is not None
                             else "predicted" if ua.get("predicted_latency_ms") is not None else None)
    row["train_steps_done"] = ua.get("train_steps_done")
    row["pruned_at_step"] = ua.get("pruned_at_step")
    row["feasible"] = t.state == TrialState.COMPLETE and within_constraints(t)
    row["rejected_reason"] = ua.get("rejected_reason")
    row["error"] = ua.get("error")
    row["spec"] = ua.get("spec")
    return row


def _cost_attr(ua: dict[str, Any], axis: str | None) -> float | None:
    """A budget-mode trial's cost (not one of its values): measured latency, else predicted; MACs; params."""
    if axis == "latency":
        return ua.get("latency_ms", ua.get("predicted_latency_ms"))
    return ua.get(axis) if axis in ("macs", "params") else None


def is_budget_mode(study: optuna.Study) -> bool:
    """One objective (mIoU under a latency constraint) rather than a front."""
    return len(study.directions) == 1


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Front mode: the feasible Pareto front. Budget mode: the feasible complete trials, best mIoU first."""
    if not is_budget_mode(study):
        return list(study.best_trials)
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if within_constraints(t)]
    return sorted(done, key=lambda t: -t.value)


def trials_frame(study: optuna.Study):  # -> pandas.DataFrame
    """Every trial of a study, one row each, with a ``pareto`` flag: the feasible front (front mode) or the
    best feasible trial (budget mode)."""
    import pandas as pd

    best = best_trials(study)
    front = {t.number for t in (best[:1] if is_budget_mode(study) else best)}
    axis = study.user_attrs.get("cost_axis")
    rows = [{**trial_row(t, axis), "pareto": t.number in front} for t in study.get_trials(deepcopy=False)]
    return pd.DataFrame(rows)


def pareto_frame(study: optuna.Study):  # -> pandas.DataFrame
    """The best feasible trials, best mIoU first: the Pareto front (max mIoU, min cost) in front mode, every
    feasible complete trial in budget mode (``pareto`` marks the best)."""
    import pandas as pd

    axis = study.user_attrs.get("cost_axis")
    best = best_trials(study)
    rows = [{**trial_row(t, axis), "pareto": not is_budget_mode(study) or i == 0} for i, t in enumerate(best)]
    frame = pd.DataFrame(rows)
    return frame.sort_values(["miou", "cost"], ascending=[False, True]).reset_index(drop=True) if rows else frame


def fastest_seen(study: optuna.Study) -> float | None:
    """The lowest latency (measured, else predicted) among all trials, in ms."""
    values = [t.user_attrs.get("latency_ms", t.user_attrs.get("predicted_latency_ms"))
              for t in study.get_trials(deepcopy=False)]
    values = [v for v in values if v is not None]
    return min(values) if values else None

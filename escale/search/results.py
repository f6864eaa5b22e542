"""Study results as DataFrames: every trial, the feasible Pareto front, the nearest paper preset."""

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
    row["cost"] = t.values[1] if t.values and len(t.values) > 1 else None
    row["feasible"] = t.state == TrialState.COMPLETE and within_constraints(t)
    row["rejected_reason"] = ua.get("rejected_reason")
    row["error"] = ua.get("error")
    row["spec"] = ua.get("spec")
    return row


def trials_frame(study: optuna.Study):  # -> pandas.DataFrame
    """Every trial of a study, one row each, with a ``pareto`` flag for the feasible front."""
    import pandas as pd

    front = {t.number for t in study.best_trials}
    axis = study.user_attrs.get("cost_axis")
    rows = [{**trial_row(t, axis), "pareto": t.number in front} for t in study.get_trials(deepcopy=False)]
    return pd.DataFrame(rows)


def pareto_frame(study: optuna.Study):  # -> pandas.DataFrame
    """The feasible Pareto front (max mIoU, min cost), best mIoU first."""
    import pandas as pd

    axis = study.user_attrs.get("cost_axis")
    rows = [{**trial_row(t, axis), "pareto": True} for t in study.best_trials]
    frame = pd.DataFrame(rows)
    return frame.sort_values(["miou", "cost"], ascending=[False, True]).reset_index(drop=True) if rows else frame


def fastest_seen(study: optuna.Study) -> float | None:
    """The lowest latency (measured, else predicted) among all trials, in ms."""
    values = [t.user_attrs.get("latency_ms", t.user_attrs.get("predicted_latency_ms"))
              for t in study.get_trials(deepcopy=False)]
    values = [v for v in values if v is not None]
    return min(values) if values else None

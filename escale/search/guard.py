"""The latency guard of a study: predictions that drift from measurements are corrected, once, visibly.

A latency table predicts well where it was made (or calibrated for). Each measured candidate of a
study is compared with its prediction; when the running median of measured / predicted latency over
the study's measured candidates leaves 1 ± :data:`GUARD_BAND` (after at least :data:`GUARD_MIN_TRIALS`),
later predictions are multiplied by that median -- the model-level correction refitted on the
study's own measurements -- and the study's user attribute ``latency_guard`` (and the trial's at
which it fired) records it. Only Optuna's public API is used (``set_user_attr``, ``get_trials``).
"""

from __future__ import annotations

import copy
import statistics
from typing import Any

import optuna
from optuna.trial import TrialState

from escale.spec import ESegSpec

GUARD_ATTR = "latency_guard"
GUARD_MIN_TRIALS = 3   # measured candidates before the guard judges
GUARD_BAND = 0.15      # the running median of measured / predicted may leave 1 by this much


def latency_guard(study: optuna.Study, trial: optuna.Trial, cfg: Any) -> str | None:
    """Once per study: when the median of measured / predicted latency over the study's measured candidates
    (this one included, at least :data:`GUARD_MIN_TRIALS`) leaves 1 ± :data:`GUARD_BAND`, multiply later
    predictions by that median (a refitted model-level correction), and record it in the study's and this
    trial's user attributes (``latency_guard``; the CLI prints the trial's). Returns the message, or None."""
    if cfg.predictor is None or GUARD_ATTR in study.user_attrs:
        return None
    pairs = [t.user_attrs for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))]
    pairs.append({k: trial.user_attrs.get(k) for k in ("latency_ms", "predicted_latency_ms")})
    ratios = [a["latency_ms"] / a["predicted_latency_ms"] for a in pairs
              if a.get("latency_ms") and a.get("predicted_latency_ms")]
    if len(ratios) < GUARD_MIN_TRIALS:
        return None
    median = statistics.median(ratios)
    if abs(median - 1) <= GUARD_BAND:
        return None
    message = (f"latency guard: measured/predicted latency is {median:.2f} (median of {len(ratios)} measured "
               f"candidates, allowed 1 ± {GUARD_BAND:g}); later predictions are multiplied by {median:.2f}")
    guard = {"median_ratio": round(median, 4), "measured_candidates": len(ratios), "trial": trial.number,
             "action": "recalibrated", "message": message}
    study.set_user_attr(GUARD_ATTR, guard)
    trial.set_user_attr(GUARD_ATTR, message)
    apply_guard(cfg, guard)
    return message


class _Corrected:
    """A predictor whose predictions are multiplied by ``factor`` (the latency guard's correction)."""

    def __init__(self, inner: Any, factor: float) -> None:
        self.inner, self.factor = inner, factor

    def predict(self, spec: ESegSpec, *args: Any, **kwargs: Any) -> Any:
        p = copy.copy(self.inner.predict(spec, *args, **kwargs))
        p.latency_ms *= self.factor
        return p

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def apply_guard(cfg: Any, guard: dict[str, Any] | None) -> None:
    if guard and cfg.predictor is not None and not isinstance(cfg.predictor, _Corrected):
        cfg.predictor = _Corrected(cfg.predictor, float(guard["median_ratio"]))

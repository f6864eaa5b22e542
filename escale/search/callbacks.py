"""Callbacks of a study's ``study.optimize`` loop: when to stop (enough trials, a streak of failures)."""

from __future__ import annotations

import warnings

import optuna
from optuna.trial import TrialState

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # finished trials that count towards --trials


class Streaks:
    """Stop the study after ``max_failures`` FAIL trials in a row, or ``max_rejections`` rejections in a row."""

    def __init__(self, max_failures: int, max_rejections: int | None) -> None:
        self.max_failures, self.max_rejections = max_failures, max_rejections
        self.failures = self.rejections = 0
        self.last_error: str | None = None
        self.fastest: float | None = None
        self.stopped: str | None = None  # "failures" or "rejections"

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        ua = trial.user_attrs
        latency = ua.get("latency_ms", ua.get("predicted_latency_ms"))
        if latency is not None:
            self.fastest = latency if self.fastest is None else min(self.fastest, latency)
        failed = trial.state == TrialState.FAIL
        rejected = trial.state == TrialState.PRUNED and "rejected_reason" in ua
        self.failures = self.failures + 1 if failed else 0
        self.rejections = self.rejections + 1 if rejected else 0
        if failed:
            self.last_error = ua.get("error") or "no message"
        if self.failures >= self.max_failures:
            self.stopped = "failures"
            study.stop()
        elif self.max_rejections and self.rejections >= self.max_rejections:
            self.stopped = "rejections"
            study.stop()


def fail_stale(study: optuna.Study) -> None:
    """Fail the trials of dead workers (heartbeat older than the grace period) and queue each again once."""
    with warnings.catch_warnings():  # a no-op for storages without heartbeats (journal files)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def finished(study: optuna.Study, states: tuple[TrialState, ...] = COUNTED) -> int:
    """Trials in ``states``; PRUNED ones count only when a pruner stopped them (not latency rejections)."""
    trials = study.get_trials(deepcopy=False, states=states)
    return sum(t.state != TrialState.PRUNED or "rejected_reason" not in t.user_attrs for t in trials)


class MaxEvaluated:
    """Optuna's ``MaxTrialsCallback(n, states=(COMPLETE, PRUNED))``, except that candidates rejected over
    budget (PRUNED too, so the sampler learns the constraint) do not count: a filter on states alone
    cannot tell them from trials a pruner stopped at a rung."""

    def __init__(self, n_trials: int) -> None:
        self.n_trials = n_trials

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if finished(study) >= self.n_trials:
            study.stop()

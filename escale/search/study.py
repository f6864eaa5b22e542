"""Optuna studies over a search space, on Optuna's own loop: two modes, a latency budget, resumable storage.

Two modes, each meaning what it says:

- ``budget`` (the default when there is a budget): one objective, maximise mIoU %, subject to latency <=
  budget. With ``short-train`` accuracy the training reports its mIoU at evaluation rungs
  (``trial.report``) and a pruner (SuccessiveHalving or Hyperband) stops poor candidates early.
- ``front``: two objectives ``[miou, cost]`` (cost: latency ms, MACs or params), tracing the Pareto
  front. No pruning: Optuna does not prune multi-objective studies.

The latency budget is an Optuna constraint (``trial.set_constraint``): ``latency - budget`` ms, feasible
when <= 0, so best trials are feasible ones and the sampler learns where infeasible candidates lie. A
candidate predicted (latency table) or measured over budget is rejected before any training: the trial
ends PRUNED with ``rejected_reason`` set and no mIoU (never a made-up value).

The loop is ``study.optimize`` with a ``MaxTrialsCallback`` (the study holds ``n_trials`` evaluated trials:
complete or pruned at a rung; rejections over budget do not count, and ``max_rejections`` of them in a
row stop the study), RDB heartbeats with ``RetryHeartbeatStaleTrialCallback`` (a
killed worker loses only its running trial, which is queued again once), and a callback that stops the
study after ``max_failures`` failed trials in a row. Storage: :mod:`escale.search.storage`.
"""

from __future__ import annotations

import inspect
import os
import re
import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.trial import TrialState

from escale.errors import (
    BackendUnavailableError,
    EscaleError,
    SpecError,
    StudyStoppedError,
    describe,
    first_line,
)
from escale.search.callbacks import MaxEvaluated, Streaks, fail_stale, finished
from escale.search.guard import GUARD_ATTR, apply_guard, latency_guard
from escale.search.objectives import (
    ACCURACY_ALIASES,
    COST_UNITS,
    TrainSettings,
    accuracy,
    canonical_accuracy,
    check_accuracy,
    check_cost,
    check_training,
    measure,
)
from escale.search.space import SearchSpace
from escale.search.storage import default_storage_url, normalise, open_storage, shown_url, storage_url
from escale.spec import ESegSpec, family

__all__ = ["CONSTRAINT", "MODES", "PRUNERS", "Outcome", "StudyConfig", "check_feasible", "default_storage_url",
           "evaluate_candidate", "load_study", "open_storage", "open_study", "run_study", "shown_url",
           "storage_url"]

CONSTRAINT = "latency_over_budget_ms"
MODES = ("budget", "front")
PRUNERS = ("sha", "hyperband", "none")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
# Study attributes that must match when a study is resumed (the rest is informative).
RESUME_KEYS = ("mode", "cost_axis", "budget_ms", "backend", "device", "precision", "input_size", "space_params",
               "accuracy_objective", "pruner", "pruner_settings", "train")


@dataclass
class StudyConfig:
    """Everything that defines a study. ``predictor`` screens candidates (a LatencyPredictor or None);
    ``measure`` times the candidates that pass the screen for real. ``mode`` None: ``budget`` with a
    budget, else ``front``; ``pruner`` None: ``sha`` in budget mode (it acts on short-train rungs).
    ``min_resource`` (training steps before the pruner's first decision; None: the first rung) and
    ``reduction_factor`` are Optuna's SuccessiveHalving / Hyperband arguments of the same names."""

    space: SearchSpace
    input_size: tuple[int, int] = (512, 1024)
    cost: str = "latency"
    budget_ms: float | None = None
    accuracy: str = "paper-trend"
    backend: str = "onnxruntime"
    device: str = "cpu"
    precision: str = "fp32"
    threads: int | None = 1
    predictor: Any = None
    measure: bool = True
    train: TrainSettings = field(default_factory=TrainSettings)
    timing: Any = None
    study_name: str | None = None
    storage: str | None = None
    seed: int | None = None
    heartbeat_s: int = 10
    grace_s: int | None = None
    max_rejections: int | None = None
    mode: str | None = None
    pruner: str | None = None
    max_failures: int = 5
    min_resource: int | None = None
    reduction_factor: int = 3

    def __post_init__(self) -> None:
        self.accuracy = canonical_accuracy(self.accuracy)
        if self.mode is None:
            self.mode = "budget" if self.budget_ms is not None else "front"
        if self.pruner is None:
            self.pruner = "sha" if self.mode == "budget" else "none"
        if self.train.rungs and self.mode != "budget":  # Optuna takes no trial.report in multi-objective studies
            self.train = replace(self.train, rungs=0)

    @property
    def name(self) -> str:
        """The study name: ``study_name``, else derived from the settings so re-running resumes."""
        if self.study_name:
            return self.study_name
        h, w = self.input_size
        budget = f"-{self.budget_ms:g}ms" if self.budget_ms is not None else ""
        return f"{self.space.name}-{self.backend}-{self.device}-{h}x{w}-{self.mode}-{self.cost}{budget}-{self.accuracy}"

    def attrs(self) -> dict[str, Any]:
        """Study user attributes (the contract the reports read)."""
        return {
            "mode": self.mode, "pruner": self.pruner, "pruner_settings": self.pruner_settings(), "cost_axis": self.cost, "budget_ms": self.budget_ms,
            "backend": self.backend, "device": self.device, "precision": self.precision, "threads": self.threads,
            "input_size": list(self.input_size), "space": self.space.name, "space_source": self.space.source,
            "space_params": self.space.summary(), "accuracy_objective": self.accuracy, "measure": bool(self.measure),
            "latency_table": getattr(self.predictor, "source", None),
            "train": self.train.to_dict() if self.accuracy == "short-train" else None,
            "latency_calibration": getattr(getattr(self.predictor, "machine", None), "source", None),
        }

    def check(self) -> None:
        """Fail before any trial: bad names, a mode without its budget, training that cannot run here, ..."""
        check_cost(self.cost)
        check_accuracy(self.accuracy)
        self.space.check_input_size(tuple(self.input_size))
        if not _NAME_RE.match(self.name):
            raise SpecError(f"--study-name: {self.name!r} is not allowed (letters, digits, '_', '.', '-')")
        if self.budget_ms is not None and not self.budget_ms > 0:
            raise SpecError(f"--budget-ms: {self.budget_ms!r} must be > 0")
        if self.mode not in MODES:
            raise SpecError(f"--mode: {self.mode!r} is unknown (allowed: {', '.join(MODES)})")
        if self.pruner not in PRUNERS:
            raise SpecError(f"--pruner: {self.pruner!r} is unknown (allowed: {', '.join(PRUNERS)})")
        if self.mode == "budget" and self.budget_ms is None:
            raise SpecError("--mode: budget needs --budget-ms (allowed without a budget: --mode front)")
        if self.mode == "front" and self.pruner != "none":
            raise SpecError(f"--pruner: {self.pruner!r} is not allowed in front mode (Optuna does not prune "
                            "multi-objective studies; allowed: none, or --mode budget)")
        if not isinstance(self.reduction_factor, int) or self.reduction_factor < 2:
            raise SpecError(f"--reduction-factor: {self.reduction_factor!r} is not allowed (allowed: a whole number >= 2)")
        if self.min_resource is not None and (
                not isinstance(self.min_resource, int) or not 1 <= self.min_resource < self.train.steps):
            raise SpecError(f"--min-resource: {self.min_resource!r} is not allowed (allowed: training steps "
                            f"1..{self.train.steps - 1})")
        if self.min_resource is not None and self.pruner == "none":
            raise SpecError(f"--min-resource: is not allowed without a pruner ({self.mode} mode, pruner none; allowed: "
                            "--mode budget with --pruner sha or hyperband)")
        if not isinstance(self.max_failures, int) or self.max_failures < 1:
            raise SpecError(f"--max-failures: {self.max_failures!r} is not allowed (allowed: a whole number >= 1)")
        needs_latency = self.cost == "latency" or self.budget_ms is not None
        if needs_latency and self.predictor is None and not self.measure:
            raise SpecError("latency: a budget or --cost latency needs a latency table (--lut) or measurement "
                            "(drop --no-measure)")
        if self.accuracy == "short-train":
            self.train = check_training(self.train)
            self.space.check_input_size(tuple(self.train.input_size))

    def pruner_settings(self) -> dict[str, int] | None:
        """The pruner's arguments: ``min_resource`` (training steps; default the first rung) and
        ``reduction_factor``; None without a pruner."""
        if self.pruner in (None, "none"):
            return None
        first = self.min_resource if self.min_resource is not None else (self.train.eval_every or 1)
        return {"min_resource": first, "reduction_factor": self.reduction_factor}

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """The pruner: SuccessiveHalving / Hyperband over training steps. SuccessiveHalving decides at
        ``min_resource`` x ``reduction_factor``**k steps, on the latest rung reported by then."""
        settings = self.pruner_settings()
        if self.pruner == "sha":
            return optuna.pruners.SuccessiveHalvingPruner(**settings)
        if self.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(max_resource=self.train.steps, **settings)
        return optuna.pruners.NopPruner()


@dataclass
class Outcome:
    """What evaluating one candidate gave: user attributes, values or a rejection, the budget constraint."""

    attrs: dict[str, Any]
    values: list[float] | None = None
    rejected_reason: str | None = None
    constraint: float | None = None


Evaluator = Callable[..., Outcome]  # (spec, cfg), optionally also taking report= and before_training=


def evaluate_candidate(spec: ESegSpec, cfg: StudyConfig, report: Callable[[int, float], None] | None = None,
                       before_training: Callable[[dict[str, Any], float | None], None] | None = None) -> Outcome:
    """Size, predicted latency (screen), measured latency (screen), then accuracy; cost per ``cfg.cost``.
    ``before_training(attrs, constraint)`` lets the study record the screen before a long training, and
    ``report(step, miou)`` receives the mIoU at each evaluation rung."""
    from escale.profiler import profile

    rec = profile(spec, input_size=tuple(cfg.input_size))
    attrs: dict[str, Any] = {"macs": rec.macs, "params": rec.params}
    budget, latency = cfg.budget_ms, None
    if cfg.predictor is not None:
        latency = attrs["predicted_latency_ms"] = round(cfg.predictor.predict(spec).latency_ms, 4)
        if budget is not None and latency > budget:
            return _reject(attrs, f"predicted latency {latency:.2f} ms > budget {budget:g} ms", latency - budget)
    if cfg.measure and (cfg.cost == "latency" or budget is not None):
        attrs.update(measure(spec, cfg.backend, cfg.device, cfg.precision, cfg.input_size, cfg.threads, cfg.timing))
        latency = attrs["latency_ms"]
        if budget is not None and latency > budget:
            return _reject(attrs, f"measured latency {latency:.2f} ms > budget {budget:g} ms", latency - budget)
    constraint = None if budget is None else latency - budget
    if before_training is not None:
        before_training(attrs, constraint)
    attrs.update(accuracy(spec, cfg.accuracy, rec.macs, tuple(cfg.input_size), cfg.train, report))
    cost = {"latency": latency, "macs": rec.macs, "params": rec.params}[cfg.cost]
    return Outcome(attrs, [float(attrs["miou"]), float(cost)], None, constraint)


def _reject(attrs: dict[str, Any], reason: str, over_ms: float) -> Outcome:
    return Outcome({**attrs, "rejected_reason": reason}, None, reason, over_ms)


def open_study(cfg: StudyConfig) -> optuna.Study:
    """Create the study, or load it and check it was made with the same settings; enqueue the presets."""
    cfg.check()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(cfg.storage, cfg.name)
    storage = open_storage(url, cfg.heartbeat_s, cfg.grace_s)
    sampler = optuna.samplers.TPESampler(seed=cfg.seed, multivariate=True, n_startup_trials=8)
    directions = ["maximize"] if cfg.mode == "budget" else ["maximize", "minimize"]
    study = _create(cfg, url, storage, sampler, directions)
    stored = study.user_attrs
    if stored:
        mine = cfg.attrs()
        diff = [k for k in RESUME_KEYS if k in stored and _norm(stored[k]) != _norm(mine[k])]
        if diff:
            k = diff[0]
            raise EscaleError(f"study {cfg.name!r} in {shown_url(url)} was made with {k}={stored[k]!r}, not "
                              f"{mine[k]!r}; use another --study-name to start a new study")
    else:
        for key, value in cfg.attrs().items():
            study.set_user_attr(key, value)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["miou"] if cfg.mode == "budget" else ["miou", COST_UNITS[cfg.cost]])
    if not study.get_trials(deepcopy=False):
        for name, params in cfg.space.presets_inside(cfg.input_size).items():
            study.enqueue_trial(params, user_attrs={"preset": name}, skip_if_exists=True)
    return study


def _create(cfg: StudyConfig, url: str, storage: Any, sampler: Any, directions: list[str]) -> optuna.Study:
    try:
        return optuna.create_study(study_name=cfg.name, storage=storage, sampler=sampler, load_if_exists=True,
                                   directions=directions, pruner=cfg.make_pruner())
    except ValueError as exc:  # an existing study with other directions (the other mode)
        raise EscaleError(f"study {cfg.name!r} in {shown_url(url)} cannot be resumed in {cfg.mode} mode ({exc}); "
                          "use another --study-name to start a new study") from None


def load_study(name: str, storage: str | None = None) -> optuna.Study:
    """Open an existing study by name (default storage: ``<studies_dir>/<name>.db``); never creates one.

    The one reader of saved studies: ``escale study``, ``escale plot study`` and ``escale report`` use it.
    """
    from pathlib import Path

    url = default_storage_url(name) if storage is None else normalise(storage)
    if url.startswith(("sqlite:///", "journal:")):
        db = Path(url.split(":///", 1)[1] if url.startswith("sqlite") else url[len("journal:"):])
        if not db.is_file():  # Optuna would create an empty file; say what is missing instead
            found = sorted(p.stem for p in db.parent.glob("*.db")) if db.parent.is_dir() else []
            raise EscaleError(f"study: {name!r} not found: no database at {db} (databases there: "
                              f"{', '.join(found) or 'none'}; run escale propose first, or pass --storage URL)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opened = open_storage(url, None)
    try:
        return optuna.load_study(study_name=name, storage=opened)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage=opened)]
        raise EscaleError(f"study: {name!r} not found in {shown_url(url)} "
                          f"(studies there: {', '.join(names) or 'none'})") from None


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        return ACCURACY_ALIASES.get(value, value)
    return list(value) if isinstance(value, tuple) else value


# --- the loop: Optuna's, with three callbacks ------------------------------------------------------
class CandidateFailed(Exception):
    """One candidate could not be evaluated (its message is the trial's ``error``); the study goes on."""


def run_study(cfg: StudyConfig, n_trials: int, evaluate: Evaluator | None = None,
              on_trial: Callable[[optuna.trial.FrozenTrial, int], None] | None = None,
              on_start: Callable[[optuna.Trial], None] | None = None) -> optuna.Study:
    """Run (or resume) the study until it holds ``n_trials`` evaluated trials (complete or pruned at a rung;
    rejections over budget do not count). Several workers on one storage each stop at ``n_trials``; trials
    still running elsewhere then finish too, so a study may end with up to workers - 1 more.

    ``on_start(trial)`` is called as this worker starts a trial (params and ``spec``/``preset`` attributes
    set, not yet evaluated); ``on_trial(frozen_trial, n_finished)`` after each trial it finishes. Raises
    :class:`StudyStoppedError` after ``cfg.max_failures`` failed trials in a row (results are kept).
    """
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise SpecError(f"--trials: {n_trials!r} must be a whole number >= 1")
    study = open_study(cfg)
    check_feasible(cfg)
    apply_guard(cfg, study.user_attrs.get(GUARD_ATTR))
    if finished(study) >= n_trials:
        return study
    fail_stale(study)  # optimize() does this before each trial too; here so a finished study is seen as such
    if finished(study) >= n_trials:
        return study
    streaks = Streaks(cfg.max_failures, cfg.max_rejections or max(50, 10 * n_trials))
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = [MaxEvaluated(n_trials), streaks]
    if on_trial is not None:
        callbacks.append(lambda s, t: on_trial(t, finished(s)))
    objective = _Objective(cfg, evaluate or evaluate_candidate, on_start)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial's traceback: its `error` attribute says it
    try:
        study.optimize(objective, callbacks=callbacks, catch=(CandidateFailed,))
    finally:
        optuna.logging.set_verbosity(verbosity)
    if streaks.stopped == "failures":
        raise StudyStoppedError(f"study {cfg.name!r}: {cfg.max_failures} trials in a row failed, stopped (last: "
                                f"{streaks.last_error}); finished trials are kept in "
                                f"{shown_url(storage_url(cfg.storage, cfg.name))}")
    if streaks.stopped == "rejections":
        raise EscaleError(_infeasible_message(cfg, streaks.rejections, streaks.fastest,
                                              finished(study, (TrialState.COMPLETE,))))
    return study


class _Objective:
    """The function ``study.optimize`` calls: spec from params, screen, train (reporting rungs), values."""

    def __init__(self, cfg: StudyConfig, evaluate: Evaluator, on_start: Callable[[optuna.Trial], None] | None):
        self.cfg, self.evaluate, self.on_start = cfg, evaluate, on_start
        self.preset_ids = {s.spec_id: s.name for s in family("eseg")}

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        cfg = self.cfg
        params = {k: _suggest(trial, k, d) for k, d in cfg.space.distributions.items()}
        spec = cfg.space.to_spec(params, name=f"trial-{trial.number}")
        trial.set_user_attr("spec", spec.to_dict())
        trial.set_user_attr("spec_id", spec.spec_id)
        trial.set_user_attr("preset", trial.user_attrs.get("preset") or self.preset_ids.get(spec.spec_id))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if self.on_start:
            self.on_start(trial)
        constrained: list[bool] = []  # the constraint is set once: before training, or with the outcome
        try:
            out = self._evaluate(spec, trial, constrained)
        except (BackendUnavailableError, optuna.TrialPruned):
            raise  # every other trial would fail the same way / a pruner stopped the training
        except Exception as exc:  # noqa: BLE001 - one candidate failed: record why, go on (a streak stops)
            message = first_line(exc)
            trial.set_user_attr("error", message if isinstance(exc, EscaleError) else describe(exc))
            raise CandidateFailed(message) from exc
        for key, value in out.attrs.items():
            trial.set_user_attr(key, value)
        latency_guard(trial.study, trial, cfg)
        if out.constraint is not None and not constrained:
            trial.set_constraint(CONSTRAINT, out.constraint)
        if out.rejected_reason is not None:
            raise optuna.TrialPruned(out.rejected_reason)
        return out.values[0] if cfg.mode == "budget" else (out.values[0], out.values[1])

    def _evaluate(self, spec: ESegSpec, trial: optuna.Trial, constrained: list[bool]) -> Outcome:
        cfg = self.cfg

        def before_training(attrs: dict[str, Any], constraint: float | None) -> None:
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            if constraint is not None:
                trial.set_constraint(CONSTRAINT, constraint)
                constrained.append(True)

        def report(step: int, miou: float) -> None:
            trial.report(miou, step)
            trial.set_user_attr("train_steps_done", step)
            if cfg.mode == "budget" and trial.should_prune():
                trial.set_user_attr("pruned_at_step", step)
                raise optuna.TrialPruned(f"mIoU {miou:.2f} at step {step} is below the rung's cut")

        hooks = {"report": report, "before_training": before_training}  # passed to evaluators that take them
        accepted = inspect.signature(self.evaluate).parameters
        return self.evaluate(spec, cfg, **{k: v for k, v in hooks.items() if k in accepted})


def _suggest(trial: optuna.Trial, name: str, dist: Any) -> Any:
    """``trial.suggest_*`` for one distribution of the space (public API, any distribution kind)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    raise SpecError(f"space: {name} has a distribution escale cannot sample ({type(dist).__name__})")


def check_feasible(cfg: StudyConfig) -> None:
    """With a latency table and a budget: fail at once when even the space's smallest corner is over it."""
    if cfg.predictor is None or cfg.budget_ms is None:
        return
    from optuna.distributions import CategoricalDistribution

    lows = {k: d.low for k, d in cfg.space.distributions.items() if not isinstance(d, CategoricalDistribution)}
    best = None
    for combo in cfg.space.corners():
        if any(combo[k] != v for k, v in lows.items()):
            continue
        try:
            spec = cfg.space.to_spec(combo)
            ms = cfg.predictor.predict(spec).latency_ms
        except SpecError:
            continue
        best = ms if best is None else min(best, ms)
    if best is not None and best > cfg.budget_ms:
        raise EscaleError(f"--budget-ms: {cfg.budget_ms:g} ms is below anything in {cfg.space.source}: its "
                          f"smallest corner is predicted at {best:.2f} ms on {cfg.backend}/{cfg.device} "
                          f"(allowed: a budget >= {best:.2f} ms)")


def _infeasible_message(cfg: StudyConfig, rejected: int, fastest: float | None, done: int) -> str:
    seen = f"; fastest latency seen {fastest:.2f} ms" if fastest is not None else ""
    return (f"--budget-ms: {rejected} candidates in a row were over {cfg.budget_ms:g} ms and only {done} "
            f"fit{seen}; raise the budget or narrow the space (results so far are kept in the study)")


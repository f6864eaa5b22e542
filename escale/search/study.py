"""Optuna studies over a search space: ask/tell, two objectives, a latency budget, resumable storage.

Values are ``[miou, cost]`` (maximise mIoU %, minimise cost: latency ms, MACs or params). The
latency budget is an Optuna constraint (``trial.set_constraint``, Optuna >= 5): ``latency - budget``
ms, feasible when <= 0, so ``study.best_trials`` is the feasible Pareto front and the sampler learns
where infeasible candidates lie. A candidate predicted (latency table) or measured over budget is
rejected before any training: the trial ends PRUNED with ``rejected_reason`` set.

Storage is Optuna RDB: ``<home>/studies/<study-name>.db`` (SQLite, :func:`escale.paths.studies_dir`) by
default, or any SQLAlchemy URL (PostgreSQL, MySQL). Re-running the same command resumes the study;
several workers on one storage share it. Each running trial records a heartbeat; a trial whose worker
died (SIGKILL, lost machine) is failed once its heartbeat is ``grace_s`` old and queued again once, so
a killed worker loses only the trial it was running.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from escale import paths
from escale.errors import BackendUnavailableError, EscaleError, SpecError
from escale.search.guard import GUARD_ATTR, apply_guard, latency_guard
from escale.search.objectives import COST_UNITS, TrainSettings, accuracy, check_accuracy, check_cost, measure
from escale.search.space import SearchSpace
from escale.spec import ESegSpec, family

CONSTRAINT = "latency_over_budget_ms"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
# Study attributes that must match when a study is resumed (the rest is informative).
RESUME_KEYS = ("cost_axis", "budget_ms", "backend", "device", "precision", "input_size", "space_params",
               "accuracy_objective")


@dataclass
class StudyConfig:
    """Everything that defines a study. ``predictor`` screens candidates (a LatencyPredictor or None);
    ``measure`` times the candidates that pass the screen for real."""

    space: SearchSpace
    input_size: tuple[int, int] = (512, 1024)
    cost: str = "latency"
    budget_ms: float | None = None
    accuracy: str = "proxy"
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

    @property
    def name(self) -> str:
        """The study name: ``study_name``, else derived from the settings so re-running resumes."""
        if self.study_name:
            return self.study_name
        h, w = self.input_size
        budget = f"-{self.budget_ms:g}ms" if self.budget_ms is not None else ""
        return f"{self.space.name}-{self.backend}-{self.device}-{h}x{w}-{self.cost}{budget}-{self.accuracy}"

    def attrs(self) -> dict[str, Any]:
        """Study user attributes (the contract the reports read)."""
        return {
            "cost_axis": self.cost, "budget_ms": self.budget_ms, "backend": self.backend, "device": self.device,
            "precision": self.precision, "threads": self.threads, "input_size": list(self.input_size),
            "space": self.space.name, "space_source": self.space.source, "space_params": self.space.summary(),
            "accuracy_objective": self.accuracy, "measure": bool(self.measure),
            "latency_table": getattr(self.predictor, "source", None), "train": self.train.to_dict(),
            "latency_calibration": getattr(getattr(self.predictor, "machine", None), "source", None),
        }

    def check(self) -> None:
        """Fail before any trial: bad cost/accuracy names, a space that cannot run at the input size, ..."""
        check_cost(self.cost)
        check_accuracy(self.accuracy)
        self.space.check_input_size(tuple(self.input_size))
        if not _NAME_RE.match(self.name):
            raise SpecError(f"--study-name: {self.name!r} is not allowed (letters, digits, '_', '.', '-')")
        if self.budget_ms is not None and not self.budget_ms > 0:
            raise SpecError(f"--budget-ms: {self.budget_ms!r} must be > 0")
        needs_latency = self.cost == "latency" or self.budget_ms is not None
        if needs_latency and self.predictor is None and not self.measure:
            raise SpecError("latency: a budget or --cost latency needs a latency table (--lut) or measurement "
                            "(drop --no-measure)")


@dataclass
class Outcome:
    """What evaluating one candidate gave: user attributes, values or a rejection, the budget constraint."""

    attrs: dict[str, Any]
    values: list[float] | None = None
    rejected_reason: str | None = None
    constraint: float | None = None


Evaluator = Callable[[ESegSpec, StudyConfig], Outcome]


def evaluate_candidate(spec: ESegSpec, cfg: StudyConfig) -> Outcome:
    """Size, predicted latency (screen), measured latency (screen), then accuracy; cost per ``cfg.cost``."""
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
    attrs.update(accuracy(spec, cfg.accuracy, rec.macs, tuple(cfg.input_size), cfg.train))
    cost = {"latency": latency, "macs": rec.macs, "params": rec.params}[cfg.cost]
    return Outcome(attrs, [float(attrs["miou"]), float(cost)], None,
                   None if budget is None else latency - budget)


def _reject(attrs: dict[str, Any], reason: str, over_ms: float) -> Outcome:
    return Outcome({**attrs, "rejected_reason": reason}, None, reason, over_ms)


# --- storage -------------------------------------------------------------------------------------
def storage_url(storage: str | None, study_name: str) -> str:
    """``None`` -> ``sqlite:///<studies_dir>/<name>.db`` (:func:`escale.paths.studies_dir`); a bare path ->
    SQLite; a URL is kept."""
    if storage is None:
        paths.studies_dir().mkdir(parents=True, exist_ok=True)
        return default_storage_url(study_name)
    if "://" not in storage:
        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{storage}"
    return storage


def default_storage_url(study_name: str) -> str:
    """``sqlite:///`` URL of the study's database in :func:`escale.paths.studies_dir` (an absolute path)."""
    return f"sqlite:///{paths.studies_dir() / (study_name + '.db')}"


def shown_url(url: str) -> str:
    """The URL with any password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: show the scheme only
        return url.split("://", 1)[0] + "://..."


def open_storage(url: str, heartbeat_s: int | None = 10, grace_s: int | None = None) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats; an unreachable URL or a missing driver is one EscaleError line."""
    engine = _sqlite_engine(url) if url.startswith("sqlite:///") else {}
    for attempt in range(5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=heartbeat_s, grace_period=grace_s,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
                    if heartbeat_s else None)
            except Exception as exc:  # sqlalchemy OperationalError/ArgumentError, ImportError for a driver
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                racing = "already exists" in first or "UNIQUE constraint failed: alembic_version" in first
                if racing and attempt < 4:  # another worker is creating the tables right now
                    time.sleep(0.5 + attempt)
                    continue
                raise EscaleError(f"--storage: cannot open {shown_url(url)!r} ({type(exc).__name__}: {first})") from None
    raise AssertionError("unreachable")


def _sqlite_engine(url: str) -> dict[str, Any]:
    """SQLite in WAL mode with ``synchronous=NORMAL``: readers do not block the writer, a commit is ~1 ms
    instead of a full fsync, and a killed process still loses nothing committed (only power loss could)."""
    import sqlite3

    path = url[len("sqlite:///"):] or ":memory:"

    def connect() -> sqlite3.Connection:
        con = sqlite3.connect(path, timeout=60, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    return {"creator": connect}


def open_study(cfg: StudyConfig) -> optuna.Study:
    """Create the study, or load it and check it was made with the same settings; enqueue the presets."""
    cfg.check()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(cfg.storage, cfg.name)
    storage = open_storage(url, cfg.heartbeat_s, cfg.grace_s)
    sampler = optuna.samplers.TPESampler(seed=cfg.seed, multivariate=True, n_startup_trials=8)
    study = optuna.create_study(study_name=cfg.name, storage=storage, sampler=sampler, load_if_exists=True,
                                directions=["maximize", "minimize"])
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
            study.set_metric_names(["miou", COST_UNITS[cfg.cost]])
    if not study.get_trials(deepcopy=False):
        for name, params in cfg.space.presets_inside(cfg.input_size).items():
            study.enqueue_trial(params, user_attrs={"preset": name}, skip_if_exists=True)
    return study


def load_study(name: str, storage: str | None = None) -> optuna.Study:
    """Open an existing study by name (default storage: ``<studies_dir>/<name>.db``); never creates one.

    The one reader of saved studies: ``escale study``, ``escale plot study`` and ``escale report`` use it.
    """
    url = default_storage_url(name) if storage is None else (
        storage if "://" in storage else f"sqlite:///{storage}")
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        if not db.is_file():  # Optuna would create an empty database; say what is missing instead
            found = sorted(p.stem for p in db.parent.glob("*.db")) if db.parent.is_dir() else []
            raise EscaleError(f"study: {name!r} not found: no database at {db} (databases there: "
                              f"{', '.join(found) or 'none'}; run escale propose first, or pass --storage URL)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url, None))
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage=url)]
        raise EscaleError(f"study: {name!r} not found in {shown_url(url)} "
                          f"(studies there: {', '.join(names) or 'none'})") from None


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# --- the loop ------------------------------------------------------------------------------------
class _Heartbeat:
    """Record the trial's heartbeat every ``interval`` seconds while it runs (ask/tell has no built-in one)."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        self.storage, self.trial_id = storage, trial_id
        self.interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        if self.interval:
            self.storage.record_heartbeat(self.trial_id)
            self.thread = threading.Thread(target=self._beat, daemon=True)
            self.thread.start()
        return self

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            self.storage.record_heartbeat(self.trial_id)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


def fail_stale(study: optuna.Study) -> None:
    """Fail trials whose worker stopped beating (and queue each again once)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def run_study(cfg: StudyConfig, n_trials: int, evaluate: Evaluator | None = None,
              on_trial: Callable[[optuna.trial.FrozenTrial, int], None] | None = None,
              on_start: Callable[[optuna.Trial], None] | None = None) -> optuna.Study:
    """Run until the study has ``n_trials`` COMPLETE trials (rejections do not count; resumes a study).

    ``on_start(trial)`` is called as this worker starts a trial (params and ``spec``/``preset`` attributes
    set, not yet evaluated); ``on_trial(frozen_trial, n_complete)`` after each trial it finishes.
    """
    if not isinstance(n_trials, int) or n_trials < 1:
        raise SpecError(f"--trials: {n_trials!r} must be a whole number >= 1")
    study = open_study(cfg)
    check_feasible(cfg)
    apply_guard(cfg, study.user_attrs.get(GUARD_ATTR))
    evaluate = evaluate or evaluate_candidate
    preset_ids = {s.spec_id: s.name for s in family("eseg")}
    max_rejections = cfg.max_rejections or max(50, 10 * n_trials)
    rejected, fastest = 0, None
    while True:
        fail_stale(study)
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state == TrialState.COMPLETE for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if done >= n_trials:
            return study
        if done + running >= n_trials:  # the rest is in other workers' hands: wait for them (or their death)
            time.sleep(min(cfg.heartbeat_s or 1, 5))
            continue
        if rejected >= max_rejections:
            raise EscaleError(_infeasible_message(cfg, rejected, fastest, done))
        with warnings.catch_warnings():  # "heartbeat is meant for optimize()": we beat ourselves
            warnings.simplefilter("ignore", UserWarning)
            trial = study.ask(cfg.space.distributions)
        with _Heartbeat(study._storage, trial._trial_id):
            try:
                frozen, latency = _run_trial(study, trial, cfg, evaluate, preset_ids, on_start)
            except KeyboardInterrupt:  # Ctrl-C: end the running trial cleanly; completed ones are stored
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                raise
        if latency is not None:
            fastest = latency if fastest is None else min(fastest, latency)
        if frozen.state == TrialState.PRUNED:
            rejected += 1
        elif frozen.state == TrialState.COMPLETE:
            rejected = 0
        if on_trial:
            on_trial(frozen, done + (frozen.state == TrialState.COMPLETE))


def _run_trial(study: optuna.Study, trial: optuna.Trial, cfg: StudyConfig, evaluate: Evaluator,
               preset_ids: dict[str, str], on_start: Callable[[optuna.Trial], None] | None = None,
               ) -> tuple[optuna.trial.FrozenTrial, float | None]:
    spec = cfg.space.to_spec(trial.params, name=f"trial-{trial.number}")
    trial.set_user_attr("spec", spec.to_dict())
    trial.set_user_attr("spec_id", spec.spec_id)
    trial.set_user_attr("preset", preset_ids.get(spec.spec_id))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    if on_start:
        on_start(trial)
    try:
        out = evaluate(spec, cfg)
    except EscaleError as exc:
        trial.set_user_attr("error", str(exc))
        frozen = study.tell(trial, state=TrialState.FAIL)
        if isinstance(exc, BackendUnavailableError):
            raise  # every other trial would fail the same way
        return frozen, None
    for key, value in out.attrs.items():
        trial.set_user_attr(key, value)
    latency_guard(study, trial, cfg)
    if out.constraint is not None:
        trial.set_constraint(CONSTRAINT, out.constraint)
    latency = out.attrs.get("latency_ms", out.attrs.get("predicted_latency_ms"))
    if out.rejected_reason is not None:
        return study.tell(trial, state=TrialState.PRUNED), latency
    return study.tell(trial, out.values), latency


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

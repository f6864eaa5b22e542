"""Studies: ask/tell with proxy accuracy, budget screening, resume, killed workers, shared storage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState
from search_common import SIZE, TINY

import escale
from escale.errors import EscaleError
from escale.search import (
    Outcome,
    StudyConfig,
    load_study,
    pareto_frame,
    run_study,
    space_from_dict,
    trials_frame,
)
from escale.search.study import CONSTRAINT

ROOT = Path(__file__).resolve().parents[1]
TRIAL_ATTRS = {"miou", "accuracy_objective", "macs", "params", "spec", "spec_id", "preset"}
STUDY_ATTRS = {"cost_axis", "budget_ms", "backend", "input_size", "space"}


class MacsPredictor:
    """A stand-in latency table: 1 ms per million multiply-adds at 64x128."""

    source = "fake"

    def predict(self, spec: escale.ESegSpec) -> SimpleNamespace:
        return SimpleNamespace(latency_ms=escale.profile(spec, input_size=SIZE).macs / 1e6)


def config(tmp_path: Path, **kw: object) -> StudyConfig:
    base = {"input_size": SIZE, "cost": "macs", "measure": False, "storage": str(tmp_path / "s.db"),
            "study_name": "t", "seed": 0}
    return StudyConfig(space_from_dict(TINY), **{**base, **kw})


def test_study_with_paper_trend_and_macs_resumes_without_losing_trials(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    study = run_study(cfg, 3)
    first = {t.number: (t.params, t.values) for t in study.trials}
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    t0 = study.trials[0]
    assert TRIAL_ATTRS <= set(t0.user_attrs) and t0.user_attrs["accuracy_objective"] == "paper-trend"
    assert t0.values == [t0.user_attrs["miou"], t0.user_attrs["macs"]]
    assert t0.user_attrs["macs"] == escale.profile(cfg.space.to_spec(t0.params), input_size=SIZE).macs
    assert STUDY_ATTRS <= set(study.user_attrs) and study.user_attrs["cost_axis"] == "macs"
    again = run_study(cfg, 5)  # same command, more trials: resumes
    assert len(again.trials) == 5 and {t.number: (t.params, t.values) for t in again.trials[:3]} == first
    frame = trials_frame(again)
    assert list(frame["trial"]) == [0, 1, 2, 3, 4] and frame["pareto"].any()
    front = pareto_frame(again)
    assert list(front["miou"]) == sorted(front["miou"], reverse=True)
    with pytest.raises(EscaleError, match="was made with cost_axis='macs', not 'params'"):
        run_study(config(tmp_path, cost="params"), 6)


def test_budget_rejects_before_training_and_constrains(tmp_path: Path) -> None:
    cfg = config(tmp_path, cost="latency", budget_ms=20.0, predictor=MacsPredictor(), max_rejections=200,
                 mode="front")
    study = run_study(cfg, 6)
    states = {t.state for t in study.trials}
    assert TrialState.COMPLETE in states
    for t in study.trials:
        lat = t.user_attrs["predicted_latency_ms"]
        assert t.constraints[CONSTRAINT] == pytest.approx(lat - 20.0)
        if t.state == TrialState.PRUNED:
            assert lat > 20 and "predicted latency" in t.user_attrs["rejected_reason"] and "miou" not in t.user_attrs
        else:
            assert lat <= 20 and t.values == [t.user_attrs["miou"], lat]
    assert all(t.state == TrialState.COMPLETE for t in study.best_trials)
    with pytest.raises(EscaleError, match=r"--budget-ms: 5 ms is below anything .* smallest corner is predicted at"):
        run_study(config(tmp_path, cost="latency", budget_ms=5.0, predictor=MacsPredictor(), study_name="u",
                         mode="front"), 2)


def test_presets_are_enqueued_first(tmp_path: Path) -> None:
    space = escale.search.load_space(ROOT / "spaces" / "eseg-lite.yaml")
    cfg = StudyConfig(space, input_size=(512, 512), cost="params", measure=False, storage=str(tmp_path / "p.db"))
    study = run_study(cfg, 3)
    assert [t.user_attrs["preset"] for t in study.trials] == ["ESeg-Lite-S", "ESeg-Lite-M", "ESeg-Lite-L"]


def test_storage_errors_are_one_line_without_password(tmp_path: Path) -> None:
    with pytest.raises(EscaleError, match=r"--storage: cannot open") as info:
        run_study(config(tmp_path, storage="postgresql://user:secret@127.0.0.1:1/db"), 1)
    assert "secret" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(EscaleError, match="--storage: cannot open 'sqlite:////nonexistent-dir"):
        run_study(config(tmp_path, storage="sqlite:////nonexistent-dir/x.db"), 1)
    run_study(config(tmp_path), 1)
    with pytest.raises(EscaleError, match=r"study: 'nope' not found in .*studies there: t\)"):
        load_study("nope", storage=f"sqlite:///{tmp_path / 's.db'}")


def fake_evaluate(spec: escale.ESegSpec, cfg: StudyConfig) -> Outcome:
    """A stand-in evaluation without torch, so a worker process starts in about a second."""
    miou, macs = 70.0 + 10 * spec.encoder.width, float(spec.encoder.width * spec.decoder.channels * 1e6)
    return Outcome({"miou": miou, "accuracy_objective": "paper-trend", "macs": int(macs), "params": 1}, [miou, macs])


WORKER = """
import json, sys, time
sys.path.insert(0, sys.argv[6])
from test_search_study import fake_evaluate
from escale.search import StudyConfig, run_study, space_from_dict
space, storage, n, marker, hang_at = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
import glob, pathlib
pathlib.Path(marker + ".ready").touch()  # a barrier: start together once all workers have imported escale
deadline = time.time() + 120
while len(glob.glob(str(pathlib.Path(marker).parent / "marker*.ready"))) < int(sys.argv[7]) and time.time() < deadline:
    time.sleep(0.05)
def evaluate(spec, cfg):
    number = int(spec.name.split("-")[1])
    with open(marker, "a") as f:
        f.write(f"{number}\\n")
    time.sleep(600 if number == hang_at else 0.2)
    return fake_evaluate(spec, cfg)
cfg = StudyConfig(space_from_dict(space), input_size=(64, 128), cost="macs", measure=False, storage=storage,
                  study_name="w", heartbeat_s=1, grace_s=2)
run_study(cfg, n, evaluate=evaluate)
"""


def start_worker(tmp_path: Path, n: int, hang_at: int = -1, tag: str = "", workers: int = 1) -> subprocess.Popen:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    args = [sys.executable, str(script), json.dumps(TINY), str(tmp_path / "w.db"), str(n),
            str(tmp_path / f"marker{tag}"), str(hang_at), str(Path(__file__).parent), str(workers)]
    return subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE)


def test_sigkilled_worker_loses_only_its_trial(tmp_path: Path) -> None:
    worker = start_worker(tmp_path, 4, hang_at=2)
    marker = tmp_path / "marker"
    deadline = time.time() + 90
    while not (marker.is_file() and "2" in marker.read_text().split()):
        assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "worker never reached trial 2"
        time.sleep(0.1)
    os.kill(worker.pid, signal.SIGKILL)  # mid-trial: trial 2 is RUNNING
    worker.wait()
    time.sleep(3)  # its heartbeat is now older than the grace period (2 s)
    cfg = StudyConfig(space_from_dict(TINY), input_size=SIZE, cost="macs", measure=False,
                      storage=str(tmp_path / "w.db"), study_name="w", heartbeat_s=1, grace_s=2)
    before = optuna.load_study(study_name="w", storage=f"sqlite:///{tmp_path / 'w.db'}").trials
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.RUNNING]
    study = run_study(cfg, 4, evaluate=fake_evaluate)  # the same command again
    after = study.trials
    for old in before[:2]:  # earlier completed trials are intact
        new = after[old.number]
        assert (new.state, new.params, new.values, new.user_attrs) == (old.state, old.params, old.values, old.user_attrs)
    assert after[2].state == TrialState.FAIL
    assert sum(t.state == TrialState.COMPLETE for t in after) == 4
    retried = [t for t in after if t.system_attrs.get("failed_trial") == 2]
    assert len(retried) == 1 and retried[0].params == before[2].params and retried[0].state == TrialState.COMPLETE


def test_two_workers_share_one_storage(tmp_path: Path) -> None:
    workers = [start_worker(tmp_path, 6, tag=str(i), workers=2) for i in range(2)]  # they start together
    for w in workers:
        assert w.wait(timeout=120) == 0, w.stderr.read().decode()[-2000:]
    trials = optuna.load_study(study_name="w", storage=f"sqlite:///{tmp_path / 'w.db'}").trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert 6 <= len(complete) <= 7  # each stops once 6 are complete or running; a race may add one
    assert len({t.user_attrs["worker"] for t in complete}) == 2
    assert len({t.number for t in trials}) == len(trials)


@pytest.mark.slow  # escale.train takes ~17 s for 2 steps + 16 eval images at 64x64 on the shared 2 cores
def test_short_train_objective_reports_miou_in_percent(tmp_path: Path) -> None:
    from escale.search import TrainSettings

    cfg = config(tmp_path, accuracy="short-train", train=TrainSettings(steps=2, input_size=(64, 64), batch_size=2))
    t = run_study(cfg, 1).trials[0]
    assert t.user_attrs["accuracy_objective"] == "short-train" and t.user_attrs["train_steps"] == 2
    assert 0.0 <= t.user_attrs["miou"] <= 100.0 and t.values[0] == t.user_attrs["miou"]
    assert t.user_attrs["train_input_size"] == [64, 64]


def test_budget_mode_short_train_reports_rungs_to_the_pruner(tmp_path: Path) -> None:
    from escale.search import TrainSettings

    cfg = config(tmp_path, accuracy="short-train", cost="latency", budget_ms=1e6, predictor=MacsPredictor(),
                 train=TrainSettings(steps=4, input_size=(64, 64), batch_size=2, eval_images=2, rungs=1))
    study = run_study(cfg, 2)
    assert study.user_attrs["train"]["input_size"] == [64, 64] and study.user_attrs["pruner"] == "sha"
    for t in study.trials:
        assert t.intermediate_values and set(t.intermediate_values) == {2}  # the rung at half the steps
        assert t.user_attrs["train_steps_done"] in (2, 4)


def test_short_train_with_two_seeds_scores_the_mean_and_reports_each_seed(tmp_path: Path, monkeypatch) -> None:
    import escale.train
    from escale.search import TrainSettings
    from escale.search.objectives import accuracy

    calls = []

    def fake_train(spec, **kw):  # noqa: ANN001, ANN202 - escale.train.train's signature, without training
        calls.append(kw)
        if kw["on_eval"] is not None:
            kw["on_eval"](kw["eval_every"], 0.25)
        return SimpleNamespace(miou=0.5 + 0.1 * kw["seed"], pixel_acc=0.9, train_seconds=1.5)

    monkeypatch.setattr(escale.train, "train", fake_train)
    reports: list = []
    cfg = TrainSettings(steps=10, input_size=(64, 64), seed=3, seeds=2, rungs=1)
    out = accuracy(escale.preset("ESeg-Lite-S"), "short-train", 1, (64, 64), cfg, lambda s, m: reports.append((s, m)))
    assert [c["seed"] for c in calls] == [3, 4] and [c["eval_every"] for c in calls] == [5, None]
    assert reports == [(5, 25.0), (10, pytest.approx(80.0))]  # the first seed's rung, then the mean after seed 3
    assert out["miou"] == pytest.approx(85.0) and out["miou_per_seed"] == [80.0, 90.0]
    assert out["train_steps_done"] == 20 and out["train_seconds"] == 3.0 and out["train_seeds"] == 2
    assert "seeds" not in TrainSettings().to_dict() and TrainSettings(seeds=2).to_dict()["seeds"] == 2
    reports.clear()  # no rungs (front mode: Optuna takes no reports in multi-objective studies): nothing reported
    accuracy(escale.preset("ESeg-Lite-S"), "short-train", 1, (64, 64), TrainSettings(steps=10, input_size=(64, 64),
             seeds=2), lambda s, m: reports.append((s, m)))
    assert reports == []


def test_budget_mode_with_two_seeds_runs_and_refuses_a_resume_with_one(tmp_path: Path) -> None:
    from escale.search import TrainSettings

    train = TrainSettings(steps=4, input_size=(64, 64), batch_size=2, eval_images=2, rungs=1, seeds=2)
    cfg = config(tmp_path, accuracy="short-train", cost="latency", budget_ms=1e6, predictor=MacsPredictor(),
                 train=train)
    study = run_study(cfg, 2)
    assert study.user_attrs["train"]["seeds"] == 2
    first = study.trials[0]  # Optuna's SHA always lets the first trial through
    assert first.state == TrialState.COMPLETE and set(first.intermediate_values) == {2, 4}
    assert first.user_attrs["train_steps_done"] == 8 and len(first.user_attrs["miou_per_seed"]) == 2
    assert first.values[0] == pytest.approx(sum(first.user_attrs["miou_per_seed"]) / 2, abs=1e-3)
    with pytest.raises(EscaleError, match="train"):
        run_study(config(tmp_path, accuracy="short-train", cost="latency", budget_ms=1e6, predictor=MacsPredictor(),
                         train=TrainSettings(steps=4, input_size=(64, 64), batch_size=2, eval_images=2, rungs=1)), 1)

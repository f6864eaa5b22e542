"""The latency guard of studies: drift between measured and predicted latency is corrected once, visibly."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from optuna.trial import TrialState
from search_common import SIZE, TINY

import escale
from escale.cli.main import main
from escale.search import Outcome, StudyConfig, run_study, space_from_dict
from escale.search import study as study_mod


class MacsPredictor:
    """A stand-in latency table: 1 ms per million multiply-adds."""

    source = "fake"

    def predict(self, spec: escale.ESegSpec) -> SimpleNamespace:
        return SimpleNamespace(latency_ms=escale.profile(spec, input_size=SIZE).macs / 1e6)


def drifting(factor: float):  # noqa: ANN201 - an Evaluator
    """Measured latency = ``factor`` x the uncorrected table; the prediction is whatever cfg.predictor says."""
    def evaluate(spec: escale.ESegSpec, cfg: StudyConfig) -> Outcome:
        predicted = cfg.predictor.predict(spec).latency_ms
        measured = factor * MacsPredictor().predict(spec).latency_ms
        attrs = {"predicted_latency_ms": predicted, "latency_ms": measured, "miou": 50.0, "macs": 1, "params": 1,
                 "accuracy_objective": "paper-trend"}
        return Outcome(attrs, [50.0, measured])
    return evaluate


def config(tmp_path: Path, name: str = "g") -> StudyConfig:
    return StudyConfig(space_from_dict(TINY), input_size=SIZE, cost="latency", predictor=MacsPredictor(),
                       storage=str(tmp_path / "s.db"), study_name=name, seed=0)


def test_the_guard_fires_once_and_corrects_later_predictions(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    study = run_study(cfg, 6, evaluate=drifting(1.4))
    guard = study.user_attrs["latency_guard"]
    assert guard["median_ratio"] == pytest.approx(1.4) and guard["measured_candidates"] == 3
    assert guard["action"] == "recalibrated" and guard["trial"] == 2
    marked = [t for t in study.trials if "latency_guard" in t.user_attrs]
    assert [t.number for t in marked] == [2] and "measured/predicted latency is 1.40" in marked[0].user_attrs[
        "latency_guard"]
    after = [t for t in study.trials if t.number > 2 and t.state == TrialState.COMPLETE]
    assert after and all(t.user_attrs["predicted_latency_ms"] == pytest.approx(t.user_attrs["latency_ms"])
                         for t in after)
    # resumed by a new worker with a fresh predictor: the correction is applied again, the guard stays quiet
    again = config(tmp_path)
    study = run_study(again, 8, evaluate=drifting(1.4))
    late = [t for t in study.trials if t.number > 5]
    assert late and all(t.user_attrs["predicted_latency_ms"] == pytest.approx(t.user_attrs["latency_ms"])
                        for t in late)
    assert sum("latency_guard" in t.user_attrs for t in study.trials) == 1


@pytest.mark.parametrize("factor", [1.1, 0.9])
def test_the_guard_stays_quiet_within_15_percent(tmp_path: Path, factor: float) -> None:
    study = run_study(config(tmp_path), 5, evaluate=drifting(factor))
    assert "latency_guard" not in study.user_attrs
    assert not any("latency_guard" in t.user_attrs for t in study.trials)


def test_the_guard_waits_for_three_measured_candidates(tmp_path: Path) -> None:
    study = run_study(config(tmp_path), 2, evaluate=drifting(2.0))
    assert "latency_guard" not in study.user_attrs
    study = run_study(config(tmp_path), 3, evaluate=drifting(2.0))
    assert study.user_attrs["latency_guard"]["median_ratio"] == pytest.approx(2.0)


def test_propose_prints_the_guard_once(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    from escale.search.lut import build_table
    from escale.search.predictor import work

    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(TINY))
    space = space_from_dict(TINY)
    ends = [space.to_spec(space.corners()[0]), space.to_spec(space.corners()[-1])]
    lut = build_table(ends, SIZE, timer=lambda k: {"raw_ms": 0.01 + 1e-6 * work(k)}).save(tmp_path / "lut.json")

    def evaluate(spec: escale.ESegSpec, cfg: StudyConfig) -> Outcome:  # measured: 0.5x the table's prediction
        predicted = cfg.predictor.predict(spec).latency_ms
        measured = 0.5 * cfg.predictor.inner.predict(spec).latency_ms if hasattr(cfg.predictor, "inner") else (
            0.5 * predicted)
        return Outcome({"predicted_latency_ms": predicted, "latency_ms": measured, "miou": 50.0, "macs": 1,
                        "params": 1, "accuracy_objective": "paper-trend"}, [50.0, measured])

    monkeypatch.setattr(study_mod, "evaluate_candidate", evaluate)
    args = ["propose", "--space", str(space_file), "--input-size", "64x128", "--trials", "5", "--lut", str(lut),
            "--storage", f"sqlite:///{tmp_path / 's.db'}", "--study-name", "guard", "--out", str(tmp_path / "o"),
            "--seed", "0", "--format", "json"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    guard = [ln for ln in err.splitlines() if "latency guard" in ln]
    assert json.loads(out) and len(guard) == 1
    assert guard[0].startswith("escale: latency guard: measured/predicted latency is 0.50 (median of 3 measured")

"""Studies on Optuna's loop: budget mode with pruning, front mode, the K-failures stop, Ctrl-C, training checks."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from search_common import SIZE, TINY

import escale
from escale.cli.main import main
from escale.errors import BackendUnavailableError, EscaleError, SpecError, StudyStoppedError
from escale.search import Outcome, StudyConfig, TrainSettings, run_study, space_from_dict, trials_frame
from escale.search import study as study_mod
from escale.search.study import CONSTRAINT


def config(tmp_path: Path, **kw: object) -> StudyConfig:
    base = {"input_size": SIZE, "cost": "macs", "measure": False, "storage": str(tmp_path / "s.db"),
            "study_name": "t", "seed": 0}
    return StudyConfig(space_from_dict(TINY), **{**base, **kw})


def macs_budget_evaluate(spec: escale.ESegSpec, cfg: StudyConfig, report=None,  # noqa: ANN001
                         before_training=None) -> Outcome:  # noqa: ANN001
    """A stand-in short training: 'latency' = channels / 2 ms, mIoU rises with width and with the steps."""
    latency, final = spec.decoder.channels / 2, 40.0 + 40 * spec.encoder.width + spec.decoder.repeats
    if latency > cfg.budget_ms:
        return Outcome({"macs": 1, "params": 1, "latency_ms": latency}, None, "measured latency over budget",
                       latency - cfg.budget_ms)
    before_training({"macs": 1, "params": 1, "latency_ms": latency}, latency - cfg.budget_ms)
    for step in (25, 50, 75):
        if report is not None:
            report(step, final * step / 100)
    return Outcome({"miou": final, "accuracy_objective": "short-train", "macs": 1, "params": 1,
                    "latency_ms": latency, "train_steps_done": 100}, [final, latency], None, latency - cfg.budget_ms)


def test_budget_mode_is_one_objective_with_a_constraint_and_prunes_at_rungs(tmp_path: Path) -> None:
    cfg = config(tmp_path, cost="latency", budget_ms=12.0, measure=True)  # the stand-in 'measures'
    assert (cfg.mode, cfg.pruner) == ("budget", "sha")
    study = run_study(cfg, 12, evaluate=macs_budget_evaluate)
    assert [d.name for d in study.directions] == ["MAXIMIZE"] and study.user_attrs["mode"] == "budget"
    states = [t.state for t in study.trials]
    evaluated = [t for t in study.trials if "rejected_reason" not in t.user_attrs and t.state != TrialState.FAIL]
    assert len(evaluated) == 12  # --trials counts evaluated trials, rejections do not
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED and "pruned_at_step" in t.user_attrs]
    assert pruned, states  # SuccessiveHalving stopped some at a rung
    assert all(t.user_attrs["pruned_at_step"] in (25, 75) and "miou" not in t.user_attrs for t in pruned)
    rejected = [t for t in study.trials if "rejected_reason" in t.user_attrs]
    assert all(t.state == TrialState.PRUNED and t.constraints[CONSTRAINT] > 0 for t in rejected)
    best = study.best_trial
    assert best.constraints[CONSTRAINT] <= 0 and best.value == max(
        t.value for t in study.trials if t.state == TrialState.COMPLETE)
    frame = trials_frame(study)
    assert frame.loc[frame["pareto"], "trial"].tolist() == [best.number]
    assert set(frame["latency_source"].dropna()) == {"measured"} and frame["cost"].notna().all()


def test_front_mode_has_two_objectives_and_refuses_a_pruner(tmp_path: Path) -> None:
    study = run_study(config(tmp_path), 3)
    assert len(study.directions) == 2 and study.user_attrs["mode"] == "front" and study.user_attrs["pruner"] == "none"
    with pytest.raises(SpecError, match="--pruner: 'sha' is not allowed in front mode .*Optuna does not prune"):
        run_study(config(tmp_path, pruner="sha", study_name="f"), 1)
    with pytest.raises(SpecError, match="--mode: budget needs --budget-ms"):
        run_study(config(tmp_path, mode="budget", study_name="g"), 1)
    with pytest.raises(SpecError, match=r"--mode: 'fast' is unknown \(allowed: budget, front\)"):
        run_study(config(tmp_path, mode="fast", study_name="h"), 1)
    with pytest.raises(EscaleError, match="was made with mode='front', not 'budget'"):
        run_study(config(tmp_path, mode="budget", budget_ms=12.0, cost="latency", predictor=None, measure=True), 1)


def test_k_failures_in_a_row_stop_the_study_and_keep_results(tmp_path: Path) -> None:
    calls = []

    def evaluate(spec: escale.ESegSpec, cfg: StudyConfig) -> Outcome:
        calls.append(spec.name)
        if len(calls) > 2:
            raise RuntimeError("out of memory\nsecond line")
        return Outcome({"miou": 50.0, "accuracy_objective": "paper-trend", "macs": 1, "params": 1}, [50.0, 1.0])

    with pytest.raises(StudyStoppedError, match=r"3 trials in a row failed, stopped \(last: RuntimeError: out of "
                                                r"memory\); finished trials are kept in sqlite") as info:
        run_study(config(tmp_path, max_failures=3), 10, evaluate=evaluate)
    assert "\n" not in str(info.value) and info.value.exit_code == 1
    trials = escale.search.load_study("t", str(tmp_path / "s.db")).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] * 3
    assert trials[-1].user_attrs["error"] == "RuntimeError: out of memory"

    def unavailable(spec: escale.ESegSpec, cfg: StudyConfig) -> Outcome:
        raise BackendUnavailableError("tensorrt: not installed")

    with pytest.raises(BackendUnavailableError):  # every other candidate would fail the same way: at once
        run_study(config(tmp_path, study_name="u"), 10, evaluate=unavailable)


def test_ctrl_c_ends_the_running_trial_and_keeps_the_rest(tmp_path: Path) -> None:
    def evaluate(spec: escale.ESegSpec, cfg: StudyConfig) -> Outcome:
        if spec.name == "trial-2":
            raise KeyboardInterrupt
        return Outcome({"miou": 50.0, "accuracy_objective": "paper-trend", "macs": 1, "params": 1}, [50.0, 1.0])

    with pytest.raises(KeyboardInterrupt):
        run_study(config(tmp_path), 5, evaluate=evaluate)
    trials = escale.search.load_study("t", str(tmp_path / "s.db")).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_cli_failures_exit_1_and_ctrl_c_exits_130_in_one_line(tmp_path: Path, space_file: Path, capsys,
                                                              monkeypatch) -> None:  # noqa: ANN001
    def broken(spec: escale.ESegSpec, cfg: StudyConfig) -> Outcome:
        raise RuntimeError("bad candidate")

    monkeypatch.setattr(study_mod, "evaluate_candidate", broken)
    args = ["propose", "--space", str(space_file), "--input-size", "64x128", "--cost", "macs", "--no-measure",
            "--trials", "4", "--storage", str(tmp_path / "c.db"), "--study-name", "c", "--max-failures", "2"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("escale: error: study 'c': 2 trials in a row failed") and \
        "Traceback" not in err

    def interrupt(spec: escale.ESegSpec, cfg: StudyConfig) -> Outcome:
        raise KeyboardInterrupt

    monkeypatch.setattr(study_mod, "evaluate_candidate", interrupt)
    assert main([*args[:-4], "--study-name", "k"]) == 130
    err = capsys.readouterr().err
    assert "interrupted: the running trial ended as FAIL" in err and "Traceback" not in err


def test_training_settings_are_checked_before_the_first_trial(tmp_path: Path) -> None:
    def short(**kw: object) -> StudyConfig:
        return config(tmp_path, accuracy="short-train", train=TrainSettings(**kw), study_name="s")

    cases = [({"dataset": "imagenet"}, r"--dataset: 'imagenet' is unknown \(allowed: synthetic, cityscapes, ade20k"),
             ({"dataset": "cityscapes"}, "--data-root: cityscapes needs the folder"),
             ({"dataset": "cityscapes", "data_root": str(tmp_path / "none")}, "data_root: .* does not exist"),
             ({"device": "cuda:0"} if not _cuda() else {"device": "tpu"}, "device:"),
             ({"schedule": "linear"}, r"--schedule: 'linear' is unknown \(allowed: cosine, onecycle\)"),
             ({"weight_decay": -1.0}, r"--weight-decay: -1.0 is not allowed")]
    for kw, message in cases:
        with pytest.raises(EscaleError, match=message) as info:
            run_study(short(**kw), 1)
        assert "\n" not in str(info.value)
    with pytest.raises(SpecError, match=r"--rungs: 4 is not allowed \(allowed: 0..3\)"):
        config(tmp_path, accuracy="short-train", train=TrainSettings(steps=4, rungs=4), budget_ms=9.0,
               measure=True).check()
    cfg = short(steps=4)
    cfg.check()
    assert cfg.train.input_size == (128, 256)  # the synthetic protocol crop, the same for every candidate
    assert cfg.attrs()["train"]["input_size"] == [128, 256] and cfg.train.rungs == 0  # front mode: no rungs
    assert "schedule" not in cfg.attrs()["train"]  # unset: the attributes of studies made before it existed
    assert short(steps=4, schedule="onecycle", weight_decay=1e-4).train.to_dict()["schedule"] == "onecycle"


def test_resuming_with_other_training_settings_is_refused(tmp_path: Path) -> None:
    def evaluate(spec: escale.ESegSpec, cfg: StudyConfig) -> Outcome:
        return Outcome({"miou": 50.0, "accuracy_objective": "short-train", "macs": 1, "params": 1}, [50.0, 1.0])

    first = config(tmp_path, accuracy="short-train", train=TrainSettings(steps=4, input_size=(64, 64)))
    run_study(first, 1, evaluate=evaluate)
    other = config(tmp_path, accuracy="short-train", train=TrainSettings(steps=8, input_size=(64, 64)))
    with pytest.raises(EscaleError, match=r"study 't' in .* was made with train=\{.*'steps': 4.*not \{.*'steps': 8"):
        run_study(other, 2, evaluate=evaluate)
    onecycle = config(tmp_path, accuracy="short-train", train=TrainSettings(steps=4, input_size=(64, 64),
                                                                             schedule="onecycle"))
    with pytest.raises(EscaleError, match=r"not \{.*'schedule': 'onecycle'"):
        run_study(onecycle, 2, evaluate=evaluate)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_hyperband_pruner_runs_on_the_same_rungs(tmp_path: Path) -> None:
    cfg = config(tmp_path, cost="latency", budget_ms=12.0, measure=True, pruner="hyperband",
                 train=TrainSettings(steps=100, rungs=3))
    assert cfg.make_pruner().__class__.__name__ == "HyperbandPruner"
    study = run_study(cfg, 8, evaluate=macs_budget_evaluate)
    assert study.user_attrs["pruner"] == "hyperband" and study.best_trial.constraints[CONSTRAINT] <= 0


def test_pruner_settings_are_optunas_arguments_and_move_the_first_decision(tmp_path: Path) -> None:
    default = config(tmp_path, cost="latency", budget_ms=12.0, measure=True, train=TrainSettings(steps=100, rungs=3))
    assert default.pruner_settings() == {"min_resource": 25, "reduction_factor": 3}  # the first rung
    cfg = config(tmp_path, cost="latency", budget_ms=12.0, measure=True, train=TrainSettings(steps=100, rungs=3),
                 min_resource=50, reduction_factor=2, study_name="late")
    pruner = cfg.make_pruner()
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)
    study = run_study(cfg, 12, evaluate=macs_budget_evaluate)  # reports at 25, 50, 75; decisions at 50 (, 100)
    pruned = [t for t in study.trials if "pruned_at_step" in t.user_attrs]
    assert pruned and {t.user_attrs["pruned_at_step"] for t in pruned} == {50}
    assert study.user_attrs["pruner_settings"] == {"min_resource": 50, "reduction_factor": 2}
    other = config(tmp_path, cost="latency", budget_ms=12.0, measure=True, train=TrainSettings(steps=100, rungs=3),
                   min_resource=50, reduction_factor=3, study_name="late")
    with pytest.raises(EscaleError, match=r"was made with pruner_settings=.*'reduction_factor': 2"):
        run_study(other, 13, evaluate=macs_budget_evaluate)


@pytest.mark.parametrize(("kw", "message"), [
    ({"reduction_factor": 1}, r"--reduction-factor: 1 is not allowed \(allowed: a whole number >= 2\)"),
    ({"min_resource": 0}, r"--min-resource: 0 is not allowed \(allowed: training steps 1..99\)"),
    ({"min_resource": 100}, r"--min-resource: 100 is not allowed"),
    ({"min_resource": 10, "pruner": "none"}, r"--min-resource: is not allowed without a pruner \(budget mode, pruner none"),
])
def test_bad_pruner_settings_are_one_line_errors(tmp_path: Path, kw: dict, message: str) -> None:
    cfg = config(tmp_path, cost="latency", budget_ms=12.0, measure=True, train=TrainSettings(steps=100, rungs=3), **kw)
    with pytest.raises(SpecError, match=message) as info:
        cfg.check()
    assert "\n" not in str(info.value)


def test_budget_mode_without_a_pruner_keeps_the_rungs_as_learning_curves(tmp_path: Path) -> None:
    cfg = config(tmp_path, cost="latency", budget_ms=12.0, measure=True, pruner="none",
                 train=TrainSettings(steps=100, rungs=3))
    assert cfg.train.rungs == 3 and cfg.pruner_settings() is None
    study = run_study(cfg, 6, evaluate=macs_budget_evaluate)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done and not [t for t in study.trials if "pruned_at_step" in t.user_attrs]
    assert all(sorted(t.intermediate_values) == [25, 50, 75] for t in done)
    assert all(t.intermediate_values[75] == pytest.approx(0.75 * t.value) for t in done)

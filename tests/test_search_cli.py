"""CLI: escale propose / study show / lut build / lut predict (exit codes, JSON, files written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from search_common import SIZE, TINY

import escale
from escale.cli.main import main
from escale.search import space_from_dict
from escale.search.lut import build_table
from escale.search.predictor import LatencyPredictor, work


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """A tiny space file, a latency table (fake timer: linear in work) from its smallest and largest corner
    (the rest is estimated from neighbours), and a budget half way between the two."""
    tmp_path = tmp_path_factory.mktemp("cli")
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(TINY))
    space = space_from_dict(TINY)
    corners = space.corners()
    ends = [space.to_spec(corners[0]), space.to_spec(corners[-1])]
    table = build_table(ends, SIZE, timer=lambda k: {"raw_ms": 0.01 + 1e-6 * work(k), "iqr_ms": 0, "runs": 1})
    lut = table.save(tmp_path / "lut.json")
    lat = sorted(LatencyPredictor(table).predict(s).latency_ms for s in ends)
    return space_file, lut, (lat[0] + lat[-1]) / 2


def test_propose_prints_writes_specs_and_study_show_reads_it(setup, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    space_file, lut, budget = setup
    db = f"sqlite:///{tmp_path / 's.db'}"
    args = ["propose", "--space", str(space_file), "--input-size", "64x128", "--budget-ms", f"{budget:.3f}",
            "--trials", "3", "--lut", str(lut), "--no-measure", "--storage", db, "--study-name", "cli",
            "--out", str(tmp_path / "out"), "--seed", "0"]
    assert main([*args, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["predicted_latency_ms"] <= budget and r["accuracy_objective"] == "paper-trend" for r in rows)
    assert [r["miou"] for r in rows] == sorted((r["miou"] for r in rows), reverse=True)
    for r in rows:
        spec = escale.ESegSpec.from_file(r["spec_file"])
        assert spec.spec_id == r["spec_id"] and r["nearest_preset"] in escale.spec.TABLE3
    assert main(args) == 0  # resumes: the table form, nothing new to run
    out = capsys.readouterr().out
    assert "ESeg proposals" in out and "paper-trend" in out and "nearest preset" in out
    assert main(["study", "show", "cli", "--storage", db, "--format", "json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert {r["spec_id"] for r in front} == {r["spec_id"] for r in rows}
    assert main(["study", "show", "cli", "--storage", db, "--all"]) == 0
    assert "all trials" in capsys.readouterr().out


def test_bad_inputs_are_one_line_and_exit_2(setup, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    space_file, lut, _ = setup
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "params": {"encoder.wide": {"type": "int", "low": 1, "high": 2}}}))
    base = ["propose", "--input-size", "64x128", "--trials", "1", "--storage", f"sqlite:///{tmp_path / 'x.db'}"]
    cases = [
        ([*base, "--space", str(bad), "--cost", "macs"], "params.encoder.wide: unknown field"),
        ([*base, "--space", str(space_file), "--lut", str(lut), "--input-size", "64x64"], "was built for input_size"),
        ([*base, "--space", str(space_file), "--cost", "watts"], "--cost: 'watts' is unknown"),
        ([*base, "--space", str(space_file), "--lut", str(lut), "--budget-ms", "0.001", "--no-measure"],
         "is below anything"),
        (["study", "show", "missing", "--storage", f"sqlite:///{tmp_path / 'x.db'}"], "study: 'missing' not found in"),
        ([*base, "--space", str(space_file), "--cost", "macs", "--accuracy", "short-train", "--train-seeds", "0"],
         "--train-seeds: 0 is not allowed (allowed: a whole number >= 1)"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_lut_predict_and_quick_build(setup, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    _, lut, _ = setup
    spec_file = tmp_path / "spec.yaml"
    spec = space_from_dict(TINY).to_spec(space_from_dict(TINY).corners()[0], name="corner")
    spec_file.write_text(spec.to_yaml())
    assert main(["lut", "predict", str(spec_file), "--lut", str(lut), "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["spec_id"] == spec.spec_id and row["kernels_in_table"] == row["kernels"] and row["unpriced"] == []
    assert row["predicted_latency_ms"] > 0
    out = tmp_path / "real.json"
    assert main(["lut", "build", str(spec_file), "--input-size", "64x128", "--quick", "--out", str(out)]) == 0
    table = json.loads(out.read_text())
    assert table["input_size"] == [64, 128] and table["timing"]["clock"] == "thread_cpu"
    assert len(table["kernels"]) == len(set(escale.search.kernels.model_kernels(spec, SIZE)))
    assert all(e["latency_ms"] >= 0 for e in table["kernels"].values())


def test_propose_runs_below_the_top_level_and_names_the_collapsed_levels(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(TINY))
    args = ["propose", "--space", str(space_file), "--input-size", "32x64", "--cost", "macs", "--no-measure",
            "--trials", "4", "--storage", f"sqlite:///{tmp_path / 'small.db'}", "--study-name", "small",
            "--out", str(tmp_path / "out"), "--seed", "0", "--top", "4"]
    assert main([*args, "--format", "json"]) == 0  # P6 is 1x1 at 32x64: allowed, and said
    rows = json.loads(capsys.readouterr().out)
    six = [r for r in rows if r["max_level"] == 6]
    assert six, rows  # seed 0: the front holds P6 models
    assert {r["input_size_note"] for r in six} == {"P6 is 1x1 at 32x64 (levels below one pixel are clamped to 1)"}
    assert all(r["input_size_note"] is None for r in rows if r["max_level"] == 5)  # P5 is 1x2: nothing collapses
    assert "# P6 is 1x1 at 32x64" in Path(six[0]["spec_file"]).read_text()
    assert main(args) == 0  # the table says it too
    assert "Rank 1: P6 is 1x1 at 32x64" in capsys.readouterr().out


def test_propose_short_train_budget_mode_end_to_end(setup, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    space_file, lut, budget = setup
    db = str(tmp_path / "st.db")
    args = ["propose", "--space", str(space_file), "--input-size", "64x128", "--budget-ms", "1000", "--trials", "2",
            "--lut", str(lut), "--no-measure", "--storage", db, "--study-name", "st", "--out", str(tmp_path / "o"),
            "--seed", "0", "--accuracy", "short-train", "--dataset", "synthetic", "--train-size", "64x64",
            "--train-steps", "4", "--batch", "2", "--eval-images", "2", "--rungs", "1", "--device", "cpu",
            "--min-resource", "1", "--reduction-factor", "2"]
    assert main([*args, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["accuracy_objective"] == "short-train" for r in rows)
    study = escale.search.load_study("st", db)
    assert study.user_attrs["mode"] == "budget" and study.user_attrs["train"]["input_size"] == [64, 64]
    assert study.user_attrs["pruner_settings"] == {"min_resource": 1, "reduction_factor": 2}
    assert all(set(t.intermediate_values) == {2} for t in study.trials)  # one rung, at half the steps
    assert main([*args, "--train-steps", "8"]) == 2  # resuming with other training settings: one line
    assert "was made with train=" in capsys.readouterr().err
    assert main(["study", "show", "st", "--storage", db]) == 0
    out = capsys.readouterr().out
    assert "budget mode" in out and "short-train" in out and "64x64" in out
    assert main(["plot", "study", "st", "--storage", db, "--out", str(tmp_path / "plot")]) == 0
    assert (tmp_path / "plot.png").is_file()


def test_train_phrase_is_one_caption_for_propose_and_study_show():
    from escale.cli.cmd_study import train_phrase
    from escale.search import TrainSettings

    one = TrainSettings(steps=150, input_size=(768, 256), batch_size=8, dataset="synthetic")
    assert train_phrase(one.to_dict(), "short training: ") == (
        " (short training: synthetic, 150 steps x batch 8 at 768x256, cpu)")
    two = TrainSettings(steps=150, input_size=(768, 256), batch_size=8, dataset="synthetic", seeds=2)
    assert train_phrase(two.to_dict()) == " (synthetic, 150 steps x batch 8 at 768x256, mean of 2 seeds, cpu)"
    assert train_phrase(None) == ""

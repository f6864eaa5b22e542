"""Studies in reports: Pareto front by hand, a small SQLite study with the search's attributes, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import escale
from escale.cli.main import main
from escale.errors import EscaleError
from escale.report import cost_axis, front_table, load_study, pareto_mask, plot_study_front, trials_frame
from escale.report.style import DOMINATED

# (miou %, latency ms, preset, feasible) -- the front (max mIoU, min latency, feasible) is trials 6, 0, 1, 3.
TRIALS = [
    (70.0, 10.0, "ESeg-Lite-S", True),
    (72.0, 12.0, None, True),
    (69.0, 11.0, None, True),   # dominated by 0
    (75.0, 20.0, None, True),
    (74.0, 25.0, None, True),   # dominated by 3
    (78.0, 40.0, None, False),  # over the 30 ms budget
    (65.0, 5.0, None, True),
    (71.0, 12.0, None, True),   # dominated by 1 (same latency, lower mIoU)
]
FRONT = {6, 0, 1, 3}
BUDGET_MS = 30.0


def make_study(storage: str, name: str = "demo"):
    """A study shaped like escale propose's: values [miou, latency_ms], the search's user attributes."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize"])
    study.set_metric_names(["miou", "latency_ms"])
    study.set_user_attr("budget_ms", BUDGET_MS)
    base = escale.preset("ESeg-Lite-S")
    for i, (miou, latency, preset, feasible) in enumerate(TRIALS):
        spec = base if preset else base.with_overrides({"encoder.width": 0.3 + 0.1 * i, "decoder.repeats": 1 + i % 3})
        study.add_trial(optuna.trial.create_trial(
            values=[miou, latency],
            user_attrs={"miou": miou, "latency_ms": latency, "macs": int((10 + i) * 1e9), "params": int(2e6 + i),
                        "spec": spec.to_dict(), "preset": preset},
            constraints={"latency_over_budget_ms": latency - BUDGET_MS}))  # as escale.search records it
        assert feasible == (latency <= BUDGET_MS)
    return study


@pytest.fixture(scope="module")
def study_db(tmp_path_factory) -> tuple[str, str]:
    path = tmp_path_factory.mktemp("studies") / "demo.db"
    storage = f"sqlite:///{path}"
    make_study(storage)
    return "demo", storage


def test_pareto_mask_by_hand():
    miou = np.array([70, 72, 69, 75, 74, 65, 71, 75])
    cost = np.array([10, 12, 11, 20, 25, 5, 12, 20])
    # the last point duplicates point 3: neither dominates the other, both stay on the front
    assert pareto_mask(miou, cost).tolist() == [True, True, False, True, False, True, False, True]
    assert pareto_mask(np.array([1.0, np.nan]), np.array([1.0, 0.5])).tolist() == [True, False]


def test_trials_frame_front_and_feasibility(study_db):
    study = load_study(*study_db)
    frame = trials_frame(study)
    assert len(frame) == len(TRIALS)
    assert set(frame.loc[frame["on_front"], "trial"]) == FRONT
    assert frame["feasible"].tolist() == [t[3] for t in TRIALS]
    assert frame.loc[0, "preset"] == "ESeg-Lite-S" and frame.loc[0, "gmacs"] == pytest.approx(10.0)
    assert cost_axis(study) == ("latency_ms", "Latency (ms)")
    front = front_table(frame)
    assert front["trial"].tolist() == [6, 0, 1, 3]  # cheapest first
    assert front.loc[1, "width"] == 0.4 and front.loc[1, "levels"] == "P3-P9"
    assert front.loc[0, "width"] == pytest.approx(0.9)


def test_study_front_plot_greys_dominated_and_connects_the_front(study_db):
    study = load_study(*study_db)
    frame = trials_frame(study)
    fig = plot_study_front(frame, "Latency (ms)", "demo", budget=BUDGET_MS)
    ax = fig.axes[0]
    front_line = [ln for ln in ax.get_lines() if ln.get_drawstyle() == "steps-post"]
    assert len(front_line) == 1
    assert front_line[0].get_xdata().tolist() == [5.0, 10.0, 12.0, 20.0]
    grey = ax.collections[0]
    assert np.allclose(grey.get_facecolor()[0][:3], tuple(int(DOMINATED[i:i + 2], 16) / 255 for i in (1, 3, 5)))
    assert sorted(grey.get_offsets()[:, 0].tolist()) == [11.0, 12.0, 25.0]
    texts = {t.get_text() for t in ax.texts if t.get_text()}
    assert texts == {"ESeg-Lite-S", "#6", "#1", "#3"}  # the preset by name, the other front points by number
    assert ax.get_xlabel() == "Latency (ms)" and "mIoU" in ax.get_ylabel()


def test_macs_cost_axis_is_shown_in_billions_and_old_style_constraints_count(tmp_path):
    import optuna

    study = optuna.create_study(study_name="flops", storage=f"sqlite:///{tmp_path / 'f.db'}",
                                directions=["maximize", "minimize"])
    study.set_metric_names(["miou", "macs"])
    for miou, macs, over in ((70.0, 30e9, -1.0), (75.0, 60e9, 2.0), (72.0, 40e9, -1.0)):
        study.add_trial(optuna.trial.create_trial(values=[miou, macs], system_attrs={"constraints": [over]}))
    frame = trials_frame(load_study("flops", f"sqlite:///{tmp_path / 'f.db'}"))
    assert cost_axis(study) == ("gmacs", "FLOPs (B multiply-adds)")
    assert frame["cost"].tolist() == [30.0, 60.0, 40.0]
    assert frame["feasible"].tolist() == [True, False, True] and frame["on_front"].tolist() == [True, False, True]


def test_missing_study_is_one_clear_line_and_creates_nothing(tmp_path, study_db):
    with pytest.raises(EscaleError, match="no database at"):
        load_study("nope", f"sqlite:///{tmp_path / 'nope.db'}")
    assert not (tmp_path / "nope.db").exists()
    with pytest.raises(EscaleError, match=r"'other' not found in .*studies there: demo"):
        load_study("other", study_db[1])


def test_cli_plot_study_and_report_with_study(study_db, tmp_path, capsys):
    name, storage = study_db
    out = tmp_path / "front"
    assert main(["plot", "study", name, "--storage", storage, "--out", str(out)]) == 0
    assert (tmp_path / "front.pdf").read_bytes()[:4] == b"%PDF"
    assert (tmp_path / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = Path(__file__).parents[1] / "reports" / "eseg-family" / "records.json"
    rep = tmp_path / "rep"
    assert main(["report", "--study", name, "--storage", storage, "--records", str(records), "--out", str(rep)]) == 0
    page = (rep / "README.md").read_text()
    assert "## Study `demo`" in page and "4 on the Pareto front" in page
    assert "| 6 | – | 65.00 | – | 5.00 |" in page  # the front table, cheapest first (no accuracy objective)
    assert (rep / "figures" / "study-front.png").exists() and (rep / "study_trials.csv").exists()
    assert main(["plot", "study", "missing", "--storage", storage]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'missing' not found" in err


def test_latency_axis_says_measured_or_predicted_backend_and_threads_and_long_titles_wrap(tmp_path):
    from escale.report import plot_study_front
    from escale.report.study import mode_line

    study = make_study(f"sqlite:///{tmp_path / 'p.db'}", "a-rather-long-study-name-" * 4)
    for key, value in {"measure": False, "backend": "onnxruntime", "device": "cpu", "threads": 1,
                       "input_size": [512, 1024], "accuracy_objective": "proxy"}.items():
        study.set_user_attr(key, value)
    label = cost_axis(study)[1]
    assert label == "Latency (ms, predicted, onnxruntime/cpu, 1 thread, 512×1024)"
    assert mode_line(study) == "front mode, paper-trend"
    fig = plot_study_front(trials_frame(study), label, study.study_name)
    title = fig.get_suptitle()
    assert max(len(line) for line in title.splitlines()) <= 60 and "mIoU vs. Latency" in title.replace("\n", " ")

"""Pure helpers of benchmarks/bench_search.py (the benchmark itself trains for ~20-40 minutes)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load():  # noqa: ANN202 - the benchmark module (it imports bench_rank from its own folder)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("_bench_search_helpers", ROOT / "benchmarks" / "bench_search.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


bench = _load()
P = {"encoder.width": 0.25, "encoder.depth": 0.3, "decoder.channels": 16, "decoder.repeats": 2, "decoder.max_level": 9}


def trial(n: int, state: str, miou: float | None, steps: int, macs: int = 1, trend: float = 70.0,
          params: dict | None = None) -> dict:
    return {"trial": n, "state": state, "miou": miou, "train_steps_done": steps, "params": params or {**P, "n": n},
            "rejected_reason": None, "macs": macs, "paper_trend": trend}


def test_summary_counts_steps_compares_best_and_correlates():
    full = [trial(0, "COMPLETE", 60.0, 100, 3, 71), trial(1, "COMPLETE", 80.0, 100, 1, 73, P),
            trial(2, "COMPLETE", 70.0, 100, 2, 72)]
    pruned = [trial(0, "COMPLETE", 60.0, 100), trial(1, "COMPLETE", 79.5, 100, params=P), trial(2, "PRUNED", None, 25)]
    args = vars(bench.parse_args([]))
    result = {"config": args, "studies": [{"pruner": "sha", "trials": pruned, "wall_seconds": 1.0},
                                          {"pruner": "none", "trials": full, "wall_seconds": 2.0}],
              "machine": "test", "wall_seconds": 3.0}
    s = bench.summarise(result)
    assert (s["steps_pruned"], s["steps_unpruned"]) == (225, 300) and s["same_best"] and s["miou_gap_points"] == 0.5
    assert not s["met"]  # 75% of the steps
    assert s["spearman_vs_short_train"] == {"paper_trend": 1.0, "macs": -1.0, "naswot": None}  # not scored yet
    for r, score in zip(full, (3.0, 1.0, 2.0), strict=True):
        r["naswot"] = score
    assert bench.summarise(result)["spearman_vs_short_train"]["naswot"] == -1.0
    result["summary"] = s
    text = bench.markdown(result)
    assert "Target: MISSED" in text and "Command: `python benchmarks/bench_search.py`" in text
    assert "first decision at the first rung" in text and "at each rung" not in text  # an old report: no curves


def test_rungs_of_the_unpruned_study_are_scored_against_the_final_miou():
    full = [trial(i, "COMPLETE", final, 100) for i, final in enumerate((60.0, 80.0, 70.0, 90.0))]
    for r, early, late in zip(full, (50, 40, 45, 30), (55, 75, 65, 85), strict=True):
        r["intermediate"] = {"25": float(early), "75": float(late)}
    result = {"config": {**vars(bench.parse_args([])), "min_resource": 50},
              "studies": [{"pruner": "sha", "trials": full[:2], "wall_seconds": 1.0,
                           "pruner_settings": {"min_resource": 50, "reduction_factor": 2}},
                          {"pruner": "none", "trials": full, "wall_seconds": 1.0, "pruner_settings": None}],
              "machine": "test", "wall_seconds": 1.0}
    s = bench.summarise(result)
    assert s["rung_vs_final"] == {"25": -1.0, "75": 1.0}
    result["summary"] = s
    text = bench.markdown(result)
    assert "step 25: -1.00, step 75: +1.00" in text and "reduction factor 2, first decision at step 50" in text
    assert "--min-resource 50" in text
    for r in full:  # every candidate still predicts only the background at step 25: no ranking there
        r["intermediate"]["25"] = 12.5
    result["summary"] = bench.summarise(result)
    assert "step 25: n/a (all tied), step 75: +1.00" in bench.markdown(result)


def test_naswot_counts_agreeing_relu_codes():
    import torch

    import escale

    spec = escale.preset("ESeg-Lite-S").with_overrides({"encoder.width": 0.1, "encoder.depth": 0.1,
                                                        "decoder.channels": 8, "decoder.max_level": 5})
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    score = bench.naswot(spec, images)
    assert score == bench.naswot(spec, images) and 0 < score < 4 * 30  # log|K| of a 4x4 K, entries < e^30
    same = images[:1].expand(4, -1, -1, -1).clone()  # identical samples: identical codes, K singular
    assert bench.naswot(spec, same) < score - 10 or bench.naswot(spec, same) == float("-inf")



def _run(seed: int, pruned_best: float, pruned_steps: int, **changes) -> dict:  # noqa: ANN003
    """A bench run: the unpruned study trains 3 candidates (900 steps, best 90.0 = P); the pruned study trains
    one to the end (``pruned_best``; P when 90.0) and prunes two after ``pruned_steps`` each."""
    full = [trial(0, "COMPLETE", 90.0, 300, params=P), trial(1, "COMPLETE", 80.0, 300), trial(2, "COMPLETE", 70.0, 300)]
    pruned = [trial(0, "COMPLETE", pruned_best, 300, params=P if pruned_best == 90.0 else None),
              trial(1, "PRUNED", None, pruned_steps), trial(2, "PRUNED", None, pruned_steps)]
    for r in full:
        r["intermediate"] = {"50": 100.0 - r["miou"], "150": r["miou"]}  # the first rung ranks backwards
    result = {"config": {**vars(bench.parse_args([])), "seed": seed, **changes}, "machine": "test",
              "wall_seconds": 1.0, "studies": [
                  {"pruner": "sha", "trials": pruned, "wall_seconds": 1.0,
                   "pruner_settings": {"min_resource": 50, "reduction_factor": 3}},
                  {"pruner": "none", "trials": full, "wall_seconds": 1.0, "pruner_settings": None}]}
    result["summary"] = bench.summarise(result)
    return result


def test_seeds_summary_counts_the_seeds_that_met_the_target():
    met = _run(0, 90.0, 25)  # the same best for 350 / 900 steps = 39%
    worse = _run(1, 85.0, 25)  # 5 points worse
    costly = _run(2, 89.5, 150)  # within 1 point, but 600 / 900 steps = 67%
    text = bench.seeds_summary([("c", costly), ("a", met), ("b", worse)])
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [r.split(" | ")[0] for r in rows] == ["| 0", "| 1", "| 2"]  # sorted by seed
    assert "| #0 w0.25 d0.3 c16 r2 P3-P9: 90.0% |" in rows[0]
    assert "| +0.00 | 350 / 900 = 38.9% | yes | met | -1.00 | a |" in rows[0]
    assert "| +5.00 | 350 / 900 = 38.9% | no | MISSED |" in rows[1]
    assert "| +0.50 | 600 / 900 = 66.7% | no | MISSED |" in rows[2]
    assert "met in **1 of 3**" in text and "median 38.9% (range 38.9%-66.7%)" in text
    assert "median +0.50 points (range +0.00 to +5.00); same best candidate in 1 of 3" in text


def test_seeds_summary_refuses_other_designs_and_repeated_seeds():
    import pytest

    with pytest.raises(ValueError, match=r"b differs from a in steps \(allowed"):
        bench.seeds_summary([("a", _run(0, 90.0, 50)), ("b", _run(1, 90.0, 50, steps=150))])
    with pytest.raises(ValueError, match=r"sampler seeds \[3, 3\] repeat"):
        bench.seeds_summary([("a", _run(3, 90.0, 50)), ("b", _run(3, 90.0, 50))])


def test_replay_tells_the_recorded_curves_to_optunas_successive_halving():
    rows = [trial(i, "COMPLETE", final, 300) for i, final in enumerate((60.0, 90.0, 70.0, 80.0))]
    for row, early in zip(rows, (40.0, 10.0, 30.0, 20.0), strict=True):  # the curves cross after step 50
        row["intermediate"] = {"50": early, "150": row["miou"]}
    rows.insert(1, {**trial(9, "PRUNED", None, 0), "intermediate": {}})  # rejected (over budget): not replayed
    early = bench.replay(rows, 50, 3, 300)  # the first trial goes on (no competitor); the others lose at step 50
    assert (early["steps"], early["best"]["miou"], early["complete"]) == (300 + 3 * 50, 60.0, 1)
    late = bench.replay(rows, 150, 3, 300)  # at step 150 the best so far goes on, the others stop
    assert (late["steps"], late["best"]["miou"], late["complete"]) == (2 * 300 + 2 * 150, 90.0, 2)


def test_replay_with_hyperband_hedges_and_repeats():
    rows = [trial(i, "COMPLETE", final, 300) for i, final in enumerate((60.0, 90.0, 70.0, 80.0, 85.0, 50.0))]
    for row, early in zip(rows, (40.0, 10.0, 30.0, 20.0, 15.0, 35.0), strict=True):  # crossing curves
        row["intermediate"] = {"50": early, "150": row["miou"]}
    sha = bench.replay(rows, 50, 3, 300)  # #0 goes on, #5 is cut at 150, the rest at 50
    assert (sha["steps"], sha["best"]["miou"]) == (300 + 4 * 50 + 150, 60.0)
    # Hyperband's second bracket makes no decision at step 50: more steps, a better best; the brackets come from
    # a hash of the (fixed) study name and the trial number, so the replay gives the same figures every time
    runs = [bench.replay(rows, 50, 3, 300, "hyperband") for _ in range(2)]
    assert runs[0] == runs[1] and runs[0]["steps"] == 900 and runs[0]["best"]["miou"] == 90.0
    assert bench.replay(rows, 50, 2, 300, "hyperband")["steps"] == 1400  # three brackets at factor 2


def test_replay_markdown_has_one_row_per_pruner_setting():
    text = bench.replay_markdown([("b", _run(1, 90.0, 25)), ("a", _run(0, 90.0, 25))])
    assert "| pruner: min_resource, factor | seed 0 | seed 1 | target met |" in text
    # first rung backwards: the best candidate (#0, told first) goes on, the others stop at step 150
    assert "| SuccessiveHalving: 50, 3 | 66.7%, +0.00 | 66.7%, +0.00 | 0 of 2 |" in text
    assert len([line for line in text.splitlines() if line.startswith(("| Succ", "| Hyp"))]) == len(
        bench.REPLAY_GRID)


def test_replay_refuses_runs_of_other_designs_naming_its_own_option():
    import pytest

    with pytest.raises(ValueError, match=r"^--replay: b differs from a in batch_size"):
        bench.replay_markdown([("a", _run(0, 90.0, 50)), ("b", _run(1, 90.0, 50, batch_size=8))])


def test_pooled_runs_from_unreadable_folders_are_one_line(tmp_path):
    import pytest

    with pytest.raises(ValueError, match=r"^--replay: .*nowhere/search.json cannot be read \(No such file"):
        bench.load_run(str(tmp_path / "nowhere"), "--replay")
    (tmp_path / "search.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"^--seeds-summary: .*search.json cannot be read \(not JSON: "):
        bench.load_run(str(tmp_path), "--seeds-summary")

"""Pure helpers and output folders of benchmarks/bench_rank.py (the benchmark itself trains for ~25 minutes)."""

from __future__ import annotations

import importlib.util
import math
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():  # noqa: ANN202 - the benchmark module
    spec = importlib.util.spec_from_file_location("_bench_rank_helpers", ROOT / "benchmarks" / "bench_rank.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load()


def test_ranks_share_the_mean_rank_on_ties():
    assert bench.ranks([10.0, 20.0, 20.0, 5.0]) == [2.0, 3.5, 3.5, 1.0]
    assert bench.ranks([3.0, 1.0, 2.0]) == [3.0, 1.0, 2.0]


def test_spearman_of_known_values():
    assert bench.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233)  # scipy's example
    assert bench.spearman([1, 2, 3, 4], [10, 40, 90, 160]) == pytest.approx(1.0)  # monotone, not linear
    assert bench.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert bench.spearman([1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5]) == pytest.approx(1 - 6 * 6 / (6 * 35))
    assert math.isnan(bench.spearman([1, 2, 3], [7, 7, 7]))
    with pytest.raises(ValueError, match="equal lengths"):
        bench.spearman([1, 2], [1, 2, 3])


def test_seed_pair_correlations_and_summary():
    scores = {"a": {0: 0.1, 1: 0.2, 2: 0.3}, "b": {0: 0.2, 1: 0.1, 2: 0.2}, "c": {0: 0.3, 1: 0.3, 2: 0.1}}
    pairs = bench.seed_pair_correlations(scores, [0, 1, 2])
    assert set(pairs) == {"0-1", "0-2", "1-2"}
    assert pairs["0-1"] == pytest.approx(0.5) and pairs["0-2"] == pytest.approx(-1.0)  # 1 - 6 * sum d^2 / 24
    assert pairs["1-2"] == pytest.approx(-0.5)
    rows = [{"variant": v, "seed": k, "miou": m} for v, s in scores.items() for k, m in s.items()]
    s = bench.summarise(rows, [0, 1, 2])
    assert s["spearman_mean"] == pytest.approx(-1 / 3) and s["met"] is False
    assert s["variants"]["a"]["mean"] == pytest.approx(0.2) and s["variants"]["a"]["n"] == 3


def test_variants_span_width_depth_and_levels():
    assert bench.parse_args([]).variants == bench.DEFAULT_VARIANTS
    assert bench.parse_args([]).dataset == "synthetic:task=cue,context_distance=0..0.6,band_label=colour"
    specs = {n: bench.variant_spec(n, 5) for n in bench.DEFAULT_VARIANTS}
    assert len(specs) == 6 and {s.num_classes for s in specs.values()} == {5}
    assert len({s.encoder.width for s in specs.values()}) > 1 and len({s.encoder.depth for s in specs.values()}) > 1
    assert len({s.decoder.max_level for s in specs.values()}) > 1
    assert {s.encoder.se for s in specs.values()} == {False} and {s.decoder.min_level for s in specs.values()} == {3}
    assert set(bench.GRADED_512) <= set(bench.VARIANTS)  # the earlier reference stays reproducible by name
    args = bench.parse_args([])
    assert (args.input_size, args.batch_size, args.steps, args.eval_every) == ("768x256", 8, 150, 25)


def test_default_output_is_ignored_and_the_reference_only_on_request(monkeypatch, tmp_path):
    monkeypatch.delenv("ESCALE_HOME", raising=False)
    default = bench.output_dir(bench.parse_args([]))
    assert default == ROOT / "reports" / "bench" / "rank"
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(default / "rank.json")])
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.returncode == 0
    assert bench.output_dir(bench.parse_args(["--update-reference"])) == ROOT / "reports" / "rank"
    assert bench.output_dir(bench.parse_args(["--out", str(tmp_path)])) == tmp_path
    with pytest.raises(SystemExit):
        bench.parse_args(["--out", str(tmp_path), "--update-reference"])


def test_run_jobs_returns_rows_in_plan_order_serial_and_in_processes():
    from bench_jobs import run_jobs

    for jobs in (1, 2):
        shown: list = []
        assert run_jobs(max, 1, [(3,), (0,), (5, 2)], jobs, shown.append) == [3, 1, 5]
        assert sorted(shown) == [1, 3, 5]


def test_rung_vs_final_is_the_mean_over_seeds_of_each_rungs_spearman():
    finals = {"a": 0.9, "b": 0.8, "c": 0.7}
    rows = [{"variant": v, "seed": 0, "miou": m, "curve": {"50": {"a": 0.1, "b": 0.2, "c": 0.3}[v], "100": m - 0.1}}
            for v, m in finals.items()]
    rows += [{"variant": v, "seed": 1, "miou": m, "curve": {"50": m, "100": m}} for v, m in finals.items()]
    rho = bench.rung_vs_final(rows, [0, 1])
    assert list(rho) == ["50", "100"]  # steps in numeric order
    assert rho["50"] == pytest.approx(0.0)  # -1 in seed 0, +1 in seed 1
    assert rho["100"] == pytest.approx(1.0)
    assert bench.rung_vs_final([{**r, "curve": {}} for r in rows], [0, 1]) == {}
    flat = [{**r, "curve": {"25": 0.175}} for r in rows]  # every variant still predicts the background
    assert bench.rung_vs_final(flat, [0, 1]) == {"25": None}
    text = bench.markdown({"summary": {**bench.summarise(rows, [0, 1])}, "machine": "m", "wall_seconds": 1.0,
                           "runs": [{**r, "params": 1, "macs": 1e9} for r in rows],
                           "config": {**vars(bench.parse_args(["--variants", "w.15-d.3-c12-P5"])),
                                      "variants": ["a", "b", "c"], "ema_decay": 0.99}})
    assert "step 50: +0.00, step 100: +1.00" in text and "n/a" not in text and "EMA of the weights (decay 0.99)" in text
    assert text.startswith("# Rank stability") and "3 ESeg-Lite-style variants" in text


def test_grouped_correlations_score_the_mean_of_k_seeds_between_disjoint_groups():
    # variant c is noisy seed by seed, its 2-seed means sit between a and b every time
    scores = {"a": {0: 0.1, 1: 0.1, 2: 0.1, 3: 0.1, 4: 0.1}, "b": {0: 0.9, 1: 0.9, 2: 0.9, 3: 0.9, 4: 0.9},
              "c": {0: 0.0, 1: 1.0, 2: 1.0, 3: 0.0, 4: 0.5}}
    g = bench.grouped_correlations(scores, [0, 1, 2, 3, 4], 2)
    assert g["groups"] == [[0, 1], [2, 3]]  # seed 4 is left over
    assert g["spearman"] == {"0+1 vs 2+3": pytest.approx(1.0)} and g["met"] is True
    assert bench.seed_pair_correlations(scores, [0, 1])["0-1"] == pytest.approx(-0.5)  # one seed: c jumps
    assert bench.grouped_correlations(scores, [0, 1, 2], 2) == {}  # one group only
    assert bench.grouped_correlations(scores, [0, 1, 2], 1) == {}


def test_merge_joins_runs_of_one_design_and_refuses_others():
    def result(seeds, **cfg):  # noqa: ANN001, ANN202
        rows = [{"variant": v, "seed": s, "miou": m + 0.01 * s} for s in seeds for v, m in (("a", 0.1), ("b", 0.2))]
        return {"config": {**vars(bench.parse_args(["--seeds", *map(str, seeds)])), **cfg}, "runs": rows,
                "machine": "m", "wall_seconds": 10.0, "summary": bench.summarise(rows, seeds)}

    merged = bench.merge([result([0, 1]), result([2, 3])])
    assert merged["config"]["seeds"] == [0, 1, 2, 3] and merged["wall_seconds"] == 20.0
    assert len(merged["runs"]) == 8 and merged["summary"]["spearman_mean"] == pytest.approx(1.0)
    assert merged["summary"]["grouped"]["groups"] == [[0, 1], [2, 3]]
    with pytest.raises(SystemExit, match="differ in steps"):
        bench.merge([result([0, 1]), result([2, 3], steps=99)])
    with pytest.raises(SystemExit, match="repeat"):
        bench.merge([result([0, 1]), result([1, 2])])

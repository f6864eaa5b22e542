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

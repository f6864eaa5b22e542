"""Pure helpers of benchmarks/bench_context.py (the benchmark itself trains for ~25 minutes; not run here)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):  # noqa: ANN202 - the benchmark module
    spec = importlib.util.spec_from_file_location(f"_bench_{name}_helpers", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load("bench_context")


@pytest.mark.parametrize(("df", "expected"), [(1, 12.706205), (2, 4.302653), (4, 2.776445), (30, 2.042272)])
def test_t_quantile_matches_the_printed_tables(df, expected):
    assert bench.t_quantile(0.975, df) == pytest.approx(expected, abs=2e-5)


def test_t_interval_of_known_values():
    d = bench.t_interval([1.0, 2.0, 3.0])
    half = 4.302653 / math.sqrt(3)  # sd = 1
    assert d["mean"] == 2.0 and d["n"] == 3 and d["sd"] == pytest.approx(1.0)
    assert d["low"] == pytest.approx(2.0 - half, abs=1e-5) and d["high"] == pytest.approx(2.0 + half, abs=1e-5)
    one = bench.t_interval([0.5])
    assert one["mean"] == 0.5 and math.isnan(one["low"]) and math.isnan(one["high"])


def test_context_accuracy_counts_only_the_two_classes():
    cm = [[50, 0, 1, 1],
          [0, 20, 0, 0],
          [3, 0, 6, 2],  # true class 2: 6 right, 2 as class 3 (3 as background do not count)
          [0, 0, 0, 0]]
    assert bench.context_accuracy(cm, (2, 3)) == pytest.approx(6 / 8)
    assert bench.context_accuracy([[1, 0, 0], [0, 0, 0], [0, 0, 0]], (1, 2)) is None


def _rows(far_deep: list[float], local_deep: list[float]) -> list[dict]:
    rows = []
    for task, deep in (("far", far_deep), ("local", local_deep)):
        for seed, value in enumerate(deep):
            rows += [{"task": task, "seed": seed, "max_level": 5, "miou": 0.6, "context_accuracy": 0.5,
                      "context_miou": 0.3, "pixel_acc": 0.9, "train_seconds": 1.0},
                     {"task": task, "seed": seed, "max_level": 9, "miou": value, "context_accuracy": 0.5,
                      "context_miou": 0.3, "pixel_acc": 0.9, "train_seconds": 1.0}]
    return rows


def test_differences_are_paired_by_seed_and_skip_a_missing_partner():
    rows = _rows([0.9, 0.8, 0.7], [0.6, 0.6, 0.6])
    assert bench.paired_differences(rows, "miou", "far", 9, 5) == pytest.approx([0.3, 0.2, 0.1])
    rows = [r for r in rows if not (r["task"] == "far" and r["seed"] == 1 and r["max_level"] == 5)]
    assert bench.paired_differences(rows, "miou", "far", 9, 5) == pytest.approx([0.3, 0.1])


def test_summary_and_verdict_for_a_clear_far_effect_and_a_null_control():
    s = bench.summarise(_rows([0.90, 0.92, 0.88], [0.61, 0.59, 0.60]), {"far": [5, 9], "local": [5, 9]})
    far, local = s["far"]["P9_minus_P5_miou"], s["local"]["P9_minus_P5_miou"]
    assert far["mean"] == pytest.approx(0.30) and far["low"] > 0
    assert local["low"] < 0 < local["high"]
    assert s["far_minus_local_P9_minus_P5_miou"]["mean"] == pytest.approx(0.30)
    assert bench.verdict(s) == [
        f"far task: MET (interval {bench._iv(far)} excludes 0)",
        f"local control: MET (interval {bench._iv(local)} includes 0)"]
    s = bench.summarise(_rows([0.70, 0.50, 0.66], [0.70, 0.71, 0.72]), {"far": [5, 9], "local": [5, 9]})
    assert [line.split(" (")[0] for line in bench.verdict(s)] == ["far task: MISSED", "local control: MISSED"]


def test_the_far_task_name_carries_the_distance_and_each_task_its_levels():
    args = bench.parse_args(["--far-distance", "0.5"])
    assert bench.task_levels(args) == {"far": [5, 8], "local": [5, 8]} and args.ohem and args.seeds == [15, 16, 17, 18, 19]
    assert (args.input_size, args.schedule, args.steps, args.lr, args.jobs) == ("512x512", "onecycle", 300, 0.05, 2)
    assert not bench.parse_args(["--no-ohem"]).ohem
    assert bench.task_dataset(args, "far") == "synthetic:task=cue,context_distance=0.5"
    assert bench.task_dataset(args, "local") == "synthetic:task=cue,context_distance=0"

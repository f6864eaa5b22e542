"""The shared timing methodology: warm-up and run counts, stopping rules, statistics (closed form)."""

from __future__ import annotations

import time

import pytest

from escale.errors import SpecError
from escale.profiler.latency import QUICK, TimingConfig, time_callable


class FakeTime:
    """A clock that advances by each fake sample; the timer returns the samples in order."""

    def __init__(self, samples_ms: list[float]) -> None:
        self.now, self.samples, self.calls = 0.0, list(samples_ms), 0

    def clock(self) -> float:
        return self.now

    def timer(self, fn) -> float:  # noqa: ANN001
        fn()
        ms = self.samples.pop(0) if len(self.samples) > 1 else self.samples[0]
        self.now += ms / 1000
        return ms


def count_calls():
    calls = []
    return calls, lambda: calls.append(1)


def test_statistics_closed_form():
    fake = FakeTime([100, 100, 1, 2, 3, 4, 5])
    calls, fn = count_calls()
    cfg = TimingConfig(warmup_runs=2, warmup_s=0, min_runs=5, min_duration_s=0)
    s = time_callable(fn, cfg, timer=fake.timer, clock=fake.clock)
    assert s.warmup_runs == 2 and s.samples_ms == [1, 2, 3, 4, 5] and len(calls) == 7
    assert s.median_ms == 3 and s.min_ms == 1 and s.max_ms == 5 and s.mean_ms == 3
    assert s.p90_ms == pytest.approx(4.6) and s.p99_ms == pytest.approx(4.96)  # linear interpolation
    assert (s.q1_ms, s.q3_ms, s.iqr_ms) == (2, 4, 2)
    assert s.stopped_by == "target" and s.timed_s == pytest.approx(0.015)


def test_warmup_by_time_as_well_as_count():
    fake = FakeTime([100])
    s = time_callable(lambda: None, TimingConfig(warmup_runs=1, warmup_s=0.25, min_runs=1, min_duration_s=0),
                      timer=fake.timer, clock=fake.clock)
    assert s.warmup_runs == 3  # 0.1 s, 0.2 s, then 0.3 s >= 0.25 s
    assert s.warmup_s == pytest.approx(0.3)


def test_runs_continue_until_min_duration():
    fake = FakeTime([300])
    s = time_callable(lambda: None, TimingConfig(warmup_runs=0, warmup_s=0, min_runs=2, min_duration_s=1.0),
                      timer=fake.timer, clock=fake.clock)
    assert s.runs == 4 and s.stopped_by == "target"  # 0.3, 0.6, 0.9, 1.2 s


def test_max_runs_and_max_duration_caps():
    fake = FakeTime([1])
    s = time_callable(lambda: None, TimingConfig(warmup_runs=0, warmup_s=0, min_runs=2, min_duration_s=10,
                                                 max_runs=5), timer=fake.timer, clock=fake.clock)
    assert s.runs == 5 and s.stopped_by == "max_runs"
    fake = FakeTime([400])
    s = time_callable(lambda: None, TimingConfig(warmup_runs=0, warmup_s=0, min_runs=100, min_duration_s=0,
                                                 max_duration_s=1.0), timer=fake.timer, clock=fake.clock)
    assert s.runs == 3 and s.stopped_by == "max_duration"  # 1.2 s > 1 s, and at least 3 runs


def test_wall_timer_measures_real_time_and_cpu_time_excludes_waiting():
    s = time_callable(lambda: time.sleep(0.003), QUICK)
    assert s.runs == 3 and s.warmup_runs == 1 and len(s.cpu_samples_ms) == 3
    assert 3.0 <= s.median_ms < 200
    assert s.cpu_median_ms < 1.5  # sleeping is waiting, not computing
    assert s.to_dict(with_samples=False)["runs"] == 3


@pytest.mark.parametrize("bad", [{"min_runs": 0}, {"warmup_runs": -1}, {"min_duration_s": -1.0},
                                 {"min_runs": 5, "max_runs": 4}, {"warmup_runs": True}])
def test_config_validation(bad):
    with pytest.raises(SpecError, match="timing"):
        TimingConfig(**bad)


def test_config_round_trip_and_unknown_key():
    cfg = TimingConfig(min_runs=7)
    assert TimingConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(SpecError, match="unknown field"):
        TimingConfig.from_dict({"runs": 3})

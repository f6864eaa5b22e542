"""The shared timing methodology (one place for every backend), modelled on trtexec and spaCy's benchmark.

1. Warm-up until *both* ``warmup_runs`` calls and ``warmup_s`` seconds have passed (trtexec: 200 ms).
2. Timed runs until *both* ``min_runs`` runs and ``min_duration_s`` seconds have passed (trtexec: 10
   iterations, 3 s), capped by ``max_runs`` and, once 3 runs exist, by ``max_duration_s``.
3. Report the median (the headline latency), p90, p99 and the inter-quartile range, all in ms, from the
   per-run samples (percentiles by linear interpolation, numpy's default). Never a mean of a few runs.
4. Beside each wall-clock sample, the process CPU time of the run (all threads, ms). On a shared machine
   wall time includes waiting for a CPU; CPU time does not, so ``cpu_median_ms`` is the load-robust
   figure (with 1 thread it equals the latency an idle core would give, up to cache effects).

A *timer* runs ``fn`` once and returns its duration in ms: :func:`wall_timer` (``perf_counter``, for CPU work
that is finished when ``fn`` returns) or :class:`CudaEventTimer` (CUDA events around ``fn`` on a stream,
then a synchronisation, as trtexec times GPU compute).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from escale.errors import SpecError

Timer = Callable[[Callable[[], Any]], float]


@dataclass(frozen=True)
class TimingConfig:
    """How long to warm up and to measure. Durations in seconds."""

    warmup_runs: int = 3
    warmup_s: float = 0.5
    min_runs: int = 10
    min_duration_s: float = 3.0
    max_runs: int = 10_000
    max_duration_s: float = 120.0

    def __post_init__(self) -> None:
        for name in ("warmup_runs", "min_runs", "max_runs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SpecError(f"timing.{name}: {value!r} is not allowed (a whole number >= 0)")
        for name in ("warmup_s", "min_duration_s", "max_duration_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise SpecError(f"timing.{name}: {value!r} is not allowed (seconds >= 0)")
        if self.min_runs < 1 or self.max_runs < self.min_runs:
            raise SpecError(f"timing.min_runs/max_runs: {self.min_runs}/{self.max_runs} is not allowed "
                            "(need 1 <= min_runs <= max_runs)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimingConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise SpecError(f"timing: unknown field(s) {unknown} (allowed: {', '.join(cls.__dataclass_fields__)})")
        return cls(**data)


QUICK = TimingConfig(warmup_runs=1, warmup_s=0.0, min_runs=3, min_duration_s=0.0)  # tests, smoke runs


@dataclass
class TimingStats:
    """Per-run latencies (ms) and their summary. ``stopped_by`` says which limit ended the timed runs."""

    samples_ms: list[float]
    cpu_samples_ms: list[float]
    warmup_runs: int
    warmup_s: float
    timed_s: float
    stopped_by: str
    median_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    q1_ms: float = 0.0
    q3_ms: float = 0.0
    iqr_ms: float = 0.0
    mean_ms: float = 0.0
    min_ms: float = 0.0
    max_ms: float = 0.0
    cpu_median_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        a = np.asarray(self.samples_ms, dtype=np.float64)
        q1, med, q3, p90, p99 = np.percentile(a, [25, 50, 75, 90, 99])
        self.median_ms, self.p90_ms, self.p99_ms = float(med), float(p90), float(p99)
        self.q1_ms, self.q3_ms, self.iqr_ms = float(q1), float(q3), float(q3 - q1)
        self.mean_ms, self.min_ms, self.max_ms = float(a.mean()), float(a.min()), float(a.max())
        self.cpu_median_ms = float(np.median(self.cpu_samples_ms)) if self.cpu_samples_ms else 0.0

    @property
    def runs(self) -> int:
        return len(self.samples_ms)

    def to_dict(self, with_samples: bool = True) -> dict[str, Any]:
        d = asdict(self)
        d["runs"] = self.runs
        if not with_samples:
            d.pop("samples_ms"), d.pop("cpu_samples_ms")
        return d


def wall_timer(fn: Callable[[], Any]) -> float:
    """Run ``fn`` once; wall-clock milliseconds (``time.perf_counter_ns``)."""
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e6


class CudaEventTimer:
    """CUDA events recorded around ``fn`` on ``stream`` (default: the current stream), then synchronised."""

    def __init__(self, stream: Any = None) -> None:
        import torch

        self.stream = stream
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def __call__(self, fn: Callable[[], Any]) -> float:
        self.start.record(self.stream)
        fn()
        self.end.record(self.stream)
        self.end.synchronize()
        return float(self.start.elapsed_time(self.end))


def time_callable(fn: Callable[[], Any], config: TimingConfig | None = None, *, timer: Timer | None = None,
                  clock: Callable[[], float] = time.perf_counter) -> TimingStats:
    """Warm up, then time ``fn`` by the shared methodology; per-run figures in ms (see module docstring).

    ``timer(fn) -> ms`` measures one run (default :func:`wall_timer`); ``clock() -> s`` paces the loops.
    """
    cfg = config or TimingConfig()
    timer = timer or wall_timer
    start, warm = clock(), 0
    while warm < cfg.warmup_runs or clock() - start < cfg.warmup_s:
        timer(fn)
        warm += 1
    warmup_s = clock() - start
    samples: list[float] = []
    cpu: list[float] = []
    faults0 = _minor_faults()
    start = clock()
    while True:
        cpu0 = time.process_time_ns()
        samples.append(float(timer(fn)))
        cpu.append((time.process_time_ns() - cpu0) / 1e6)
        elapsed = clock() - start
        if len(samples) >= cfg.min_runs and elapsed >= cfg.min_duration_s:
            stopped_by = "target"
        elif len(samples) >= cfg.max_runs:
            stopped_by = "max_runs"
        elif elapsed >= cfg.max_duration_s and len(samples) >= min(3, cfg.min_runs):
            stopped_by = "max_duration"
        else:
            continue
        break
    timed_s = clock() - start
    faults = _minor_faults()
    extra = {} if faults is None else {"minor_faults_per_run": (faults - faults0) / len(samples)}
    return TimingStats(samples_ms=samples, cpu_samples_ms=cpu, warmup_runs=warm, warmup_s=warmup_s,
                       timed_s=timed_s, stopped_by=stopped_by, extra=extra)


def _minor_faults() -> int | None:
    """Minor page faults of this process so far (Linux/macOS), a sign of allocator churn."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

""":func:`measure_latency`: spec -> folded model -> backend timing -> :class:`LatencyResult`, by default in a
child process with fixed allocator settings (see :mod:`escale.profiler.latency.isolate`)."""

from __future__ import annotations

import os
from typing import Any

import torch

from escale.errors import SpecError
from escale.profiler.latency.base import LatencyResult, environment, get_backend
from escale.profiler.latency.fingerprint import record_fingerprint
from escale.profiler.latency.isolate import run_in_child
from escale.profiler.latency.timing import TimingConfig
from escale.spec import ESegSpec

DEFAULT_INPUT_SIZE = (1024, 2048)  # the paper's Cityscapes resolution; batch 1


def default_threads() -> int:
    """The CPUs this process may run on (``sched_getaffinity``), else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_threads(threads: int) -> None:
    """torch intra-op threads = ``threads``; inter-op threads = 1 where still settable."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or inter-op work already started in this process
        pass


def measure_latency(spec: ESegSpec, backend: str = "torch", device: str = "cpu", precision: str = "fp32",
                    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE, batch: int = 1, threads: int | None = None,
                    isolate: bool = True, config: TimingConfig | None = None,
                    options: dict[str, Any] | None = None, timeout_s: float | None = None) -> LatencyResult:
    """Latency (ms per batch), FPS and peak activation memory of ``spec`` on one backend.

    The model is built with seed 0, folded (softmax level weights, BN into convs) and fed a random
    ``batch x 3 x H x W`` input. Bad backend/device/precision/option -> one clear EscaleError, raised
    before any work. ``isolate=True`` measures in a fresh child process (allocator settings fixed).
    """
    b = get_backend(backend)
    opts = b.check(device, precision, options)
    input_size = spec.check_input_size(tuple(input_size))
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise SpecError(f"--batch: {batch!r} is not allowed (a whole number >= 1)")
    threads = threads or default_threads()
    if not isinstance(threads, int) or threads < 1:
        raise SpecError(f"--threads: {threads!r} is not allowed (a whole number >= 1)")
    request = {"spec": spec.to_dict(), "backend": backend, "device": device, "precision": precision,
               "input_size": list(input_size), "batch": batch, "threads": threads,
               "config": (config or TimingConfig()).to_dict(), "options": opts}
    if isolate:
        data = run_in_child("escale.profiler.latency.measure:measure_in_process", {**request, "isolated": True},
                            threads=threads, timeout_s=timeout_s)
    else:
        data = measure_in_process(**request, isolated=False)
    return LatencyResult.from_dict(data)


def measure_in_process(spec: dict, backend: str, device: str, precision: str, input_size: list[int], batch: int,
                       threads: int, config: dict, options: dict, isolated: bool) -> dict[str, Any]:
    """The measurement itself, in this process; returns ``LatencyResult.to_dict()`` (JSON-safe)."""
    from escale.profiler.latency.fold import build_folded
    from escale.profiler.latency.memory import estimate_spec_memory

    spec_obj = ESegSpec.from_dict(spec)
    b = get_backend(backend)
    opts = b.check(device, precision, options)
    set_threads(threads)
    size = (int(input_size[0]), int(input_size[1]))
    model, fold = build_folded(spec_obj)
    example = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0))
    m = b.measure(model, example, spec=spec_obj, device=device, precision=precision, threads=threads,
                  config=TimingConfig.from_dict(config), options=opts)
    if m.peak_mem_mb is None:
        est = estimate_spec_memory(spec_obj, size, batch)
        m.peak_mem_mb, m.peak_mem_method = est.peak_mb, est.method
    s = m.stats
    env = environment(b, device, threads)
    env["isolated"] = isolated
    env["fingerprint"] = record_fingerprint(backend, device, precision, threads, size)  # after timing: no disturbance
    details = {**fold.to_dict(), **s.extra, "options": opts, "stopped_by": s.stopped_by,
               "warmup_s": s.warmup_s, "timing_config": config, **m.details}
    result = LatencyResult(
        name=spec_obj.name, spec_id=spec_obj.spec_id, backend=backend, device=device, precision=precision,
        input_size=size, batch=batch, threads=threads, latency_ms=s.median_ms, latency_p90_ms=s.p90_ms,
        latency_p99_ms=s.p99_ms, iqr_ms=s.iqr_ms, mean_ms=s.mean_ms, min_ms=s.min_ms,
        fps=batch * 1000.0 / s.median_ms, cpu_time_ms=s.cpu_median_ms, runs=s.runs, warmup_runs=s.warmup_runs,
        timed_s=s.timed_s,
        peak_mem_mb=m.peak_mem_mb, peak_mem_method=m.peak_mem_method, isolated=isolated, env=env,
        details=details, samples_ms=s.samples_ms, cpu_samples_ms=s.cpu_samples_ms,
        notes=[n for n in [spec_obj.input_size_note(size), *m.notes] if n])
    return result.to_dict()

"""Latency and memory: backends in a registry (``torch``, ``onnxruntime``, ``tensorrt``), one timing
methodology (:mod:`~escale.profiler.latency.timing`), inference folding, memory, process isolation.

>>> from escale.profiler.latency import measure_latency
>>> res = measure_latency(spec, backend="onnxruntime", device="cpu", input_size=(512, 1024))
>>> res.latency_ms, res.fps, res.peak_mem_mb
"""

from escale.profiler.latency import onnxrt, tensorrt_backend, torch_backend  # noqa: F401 - register backends
from escale.profiler.latency.base import (
    BACKENDS,
    LatencyBackend,
    LatencyResult,
    Measurement,
    get_backend,
    register_backend,
)
from escale.profiler.latency.isolate import ALLOCATOR_ENV, MeasurementError, run_in_child
from escale.profiler.latency.measure import DEFAULT_INPUT_SIZE, default_threads, measure_latency
from escale.profiler.latency.timing import QUICK, TimingConfig, TimingStats, time_callable


def backend_table(device: str | None = None) -> list[dict]:
    """One row per backend: name, devices, precisions, options, available per device and why not."""
    rows = []
    for name, cls in BACKENDS.items():
        b = cls()
        for dev in b.devices if device is None else [device]:
            if dev not in b.devices:
                continue
            ok, why = b.is_available(dev)
            rows.append({"backend": name, "device": dev, "available": ok, "reason": why,
                         "precisions": list(b.precisions[dev]), "options": dict(b.options)})
    return rows


__all__ = [
    "ALLOCATOR_ENV", "BACKENDS", "DEFAULT_INPUT_SIZE", "QUICK", "LatencyBackend", "LatencyResult", "Measurement",
    "MeasurementError", "TimingConfig", "TimingStats", "backend_table", "default_threads", "get_backend",
    "measure_latency", "register_backend", "run_in_child", "time_callable",
]

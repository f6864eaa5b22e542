"""Latency backends behind a registry, the result record, and :func:`measure_latency` (one path for all).

A backend is a small class: ``name``, the devices and precisions it supports, its options with
defaults, ``is_available(device)`` with an honest reason, ``versions()`` and ``measure(...)``, which
receives the folded fp32 model and a CPU input and returns timing stats (via :func:`time_callable`).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from escale.errors import BackendUnavailableError, SpecError
from escale.profiler.latency.timing import TimingConfig, TimingStats
from escale.registry import Registry

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")  # tf32: CUDA only, fp32 storage with TF32 convs/matmuls
DEVICES = ("cpu", "cuda")


@dataclass
class Measurement:
    """What a backend's ``measure`` returns: timing, and peak memory where the backend measures it.

    ``output_fn`` (where the backend sets it) runs the timed path once more, with the same settings, and
    returns its output on the example (a tensor or array), for a caller's numerics check (``escale
    benchmark``); nothing runs unless it is called. It keeps the path's model, session or engine alive.
    """

    stats: TimingStats
    peak_mem_mb: float | None = None
    peak_mem_method: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    output_fn: Callable[[], Any] | None = None
    notes: list[str] = field(default_factory=list)  # one line each, printed beside the figure (e.g. a fallback)


class LatencyBackend:
    """Base class; subclasses set the class attributes and implement :meth:`measure`."""

    name: str = ""
    precisions: dict[str, tuple[str, ...]] = {"cpu": ("fp32",)}  # device -> precisions
    options: dict[str, Any] = {}  # option -> default

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(self.precisions)

    def is_available(self, device: str | None = None) -> tuple[bool, str]:
        return True, "ok"

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__}

    def measure(self, model: torch.nn.Module, example: torch.Tensor, *, spec: Any, device: str, precision: str,
                threads: int, config: TimingConfig, options: dict[str, Any]) -> Measurement:
        raise NotImplementedError

    def check(self, device: str, precision: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Raise one clear error for an unsupported device/precision/option; returns options with defaults."""
        if device not in self.precisions:
            raise BackendUnavailableError(f"--device: {device!r} is not supported by backend {self.name!r} "
                                          f"(supported: {', '.join(self.devices)})")
        ok, why = self.is_available(device)
        if not ok:
            raise BackendUnavailableError(f"backend {self.name!r} cannot run on {device} here: {why}")
        if precision not in self.precisions[device]:
            raise BackendUnavailableError(f"--precision: {precision!r} is not supported by backend {self.name!r} "
                                          f"on {device} (supported: {', '.join(self.precisions[device])})")
        unknown = sorted(set(options or {}) - set(self.options))
        if unknown:
            raise SpecError(f"--latency-opt: {', '.join(unknown)} unknown for backend {self.name!r} "
                            f"(allowed: {', '.join(self.options) or 'none'})")
        given = {k: coerce_option(k, v, self.options[k]) for k, v in (options or {}).items()}
        return {**self.options, **given}


def coerce_option(name: str, value: Any, default: Any) -> Any:
    """Convert an option (e.g. the string from ``--latency-opt compile=1``) to its default's type."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise SpecError(f"--latency-opt: {name}={value!r} is not allowed (true/false, 1/0)")
    if isinstance(default, (int, float)):
        try:
            return type(default)(value)
        except (TypeError, ValueError):
            raise SpecError(f"--latency-opt: {name}={value!r} is not allowed (a {type(default).__name__})") from None
    return str(value)


BACKENDS: Registry[type[LatencyBackend]] = Registry("latency backend", "--latency: backend ")
register_backend = BACKENDS.decorator()


def get_backend(name: str) -> LatencyBackend:
    """An instance of the named backend; an unknown name lists the known ones."""
    return BACKENDS[name]()


def cache_dir(kind: str) -> Path:
    """``$ESCALE_CACHE_DIR/<kind>`` (default ``~/.cache/escale/<kind>``), created if needed."""
    root = Path(os.environ.get("ESCALE_CACHE_DIR") or Path.home() / ".cache" / "escale")
    path = root / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(backend: LatencyBackend, device: str, threads: int) -> dict[str, Any]:
    """Device name, library versions, threads, allocator settings and machine load, for every record."""
    from escale.profiler.latency.isolate import ALLOCATOR_ENV, THREAD_ENV

    env: dict[str, Any] = {
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else cpu_name(),
        "python": platform.python_version(), "platform": platform.platform(),
        "versions": backend.versions(), "threads": threads, "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "allocator": {k: os.environ.get(k) for k in ALLOCATOR_ENV},
        "omp": {k: os.environ.get(k) for k in (*THREAD_ENV, "OMP_NUM_THREADS")},
    }
    if device == "cuda":
        env.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return env


@dataclass
class LatencyResult:
    """One latency measurement: ms per batch (median and spread), images/s, peak activation MB, environment."""

    name: str
    spec_id: str
    backend: str
    device: str
    precision: str
    input_size: tuple[int, int]
    batch: int
    threads: int
    latency_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    iqr_ms: float
    mean_ms: float
    min_ms: float
    fps: float
    cpu_time_ms: float
    runs: int
    warmup_runs: int
    timed_s: float
    peak_mem_mb: float | None
    peak_mem_method: str | None
    isolated: bool
    env: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    samples_ms: list[float] = field(default_factory=list)
    cpu_samples_ms: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. "P8-P9 are 1x1 at 128x256 (...)"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["units"] = {"*_ms": "milliseconds per batch", "fps": "images per second = batch * 1000 / latency_ms",
                      "cpu_time_ms": "median process CPU time per run, all threads (not waiting for a CPU)",
                      "peak_mem_mb": "MB = 2**20 bytes of activations"}
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyResult:
        kwargs = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        kwargs["input_size"] = tuple(kwargs["input_size"])
        return cls(**kwargs)

    def to_extra(self) -> dict[str, Any]:
        """Flat fields (and the environment dict) for ``ProfileRecord.extra``."""
        return {
            "latency_ms": self.latency_ms, "latency_p90_ms": self.latency_p90_ms,
            "latency_p99_ms": self.latency_p99_ms, "iqr_ms": self.iqr_ms, "fps": self.fps,
            "cpu_time_ms": self.cpu_time_ms,
            "peak_mem_mb": self.peak_mem_mb, "peak_mem_method": self.peak_mem_method, "latency_backend": self.backend, "latency_device": self.device,
            "latency_precision": self.precision, "latency_batch": self.batch, "latency_threads": self.threads,
            "latency_input_size": f"{self.input_size[0]}x{self.input_size[1]}", "latency_runs": self.runs,
            "device_name": self.env.get("device_name"), "env": self.env, "latency_details": self.details,
            "latency_notes": self.notes,
        }

"""Machine fingerprints: what a latency figure depends on, recorded with every table and latency record.

A fingerprint has a **static part** (read, never timed) and a **performance part** (timed):

- static: CPU model, the instruction-set flags that change kernel speed (AVX2, AVX-512 variants, AMX,
  VNNI, ... from ``/proc/cpuinfo``; elsewhere the ISA torch detects), physical cores, logical CPUs and
  this process's affinity, architecture, backend and provider, library versions (torch, onnxruntime),
  precision, threads and input size;
- performance: :data:`REFERENCE_KERNELS` (3x3 conv, depthwise conv, 1x1 conv, bilinear resize, weighted
  sum at fixed, cache-resident sizes), each timed alone as a one-kernel ONNX model with ONNX Runtime, one
  thread, thread CPU time, median (lowest of two passes) -- the same machinery as the kernel latency
  tables -- about 2 s in all.

Two fingerprints **match** (:func:`mismatch` returns None) when every field of :data:`MATCH_KEYS` is equal
and the reference kernels run equally fast: the geometric mean of the per-kernel time ratios within
±:data:`PERF_TOLERANCE_MEAN` and every ratio within ±:data:`PERF_TOLERANCE_EACH`. The CPU name alone does
not tell two cloud VMs apart ("AMD EPYC" covers several generations); the timings do.

The performance part is cached (:func:`perf_cache_dir`, one JSON file per static machine part and boot)
and measured again after :data:`PERF_MAX_AGE_S` (24 h), after a reboot, or when asked (``refresh=True``:
each kernel keeps the lower of the new and the cached timing). :func:`mismatch_here` measures once more
before it calls a table foreign for its timings alone: a job on the sibling vCPU can slow one
reference kernel by 30% for a while.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FORMAT = "escale-fingerprint/1"
PERF_VERSION = 2  # bumped when REFERENCE_KERNELS change: older timings are not compared
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl",
             "avx512ifma", "avx512vbmi", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile",
             "amx_int8", "amx_bf16", "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16")
MACHINE_KEYS = ("cpu_model", "cpu_flags", "physical_cores", "logical_cpus", "arch", "versions")
MATCH_KEYS = (*MACHINE_KEYS, "backend", "provider", "device", "device_name", "precision", "threads", "input_size")
PERF_TOLERANCE_MEAN = 0.10   # geometric mean of the reference-kernel time ratios within ±10%
PERF_TOLERANCE_EACH = 0.25   # and each reference kernel within ±25%
PERF_MAX_AGE_S = 24 * 3600   # the cached performance part is measured again after a day (or a reboot)
PROVIDERS = {("onnxruntime", "cpu"): "CPUExecutionProvider", ("onnxruntime", "cuda"): "CUDAExecutionProvider",
             ("tensorrt", "cuda"): "TensorRT", ("torch", "cpu"): "eager", ("torch", "cuda"): "eager"}


# --- the static part -----------------------------------------------------------------------------
def cpu_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU model, ISA flags (subset :data:`ISA_FLAGS`), physical cores, logical CPUs, affinity.

    From ``/proc/cpuinfo`` (or the text given); elsewhere from ``platform`` and the ISA torch detects.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags, cores = None, set(), set()
    phys = core = None
    for line in cpuinfo.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key in ("model name", "Processor", "cpu model") and model is None:
            model = value
        elif key in ("flags", "Features"):
            flags |= set(value.split())
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
            cores.add((phys, core))
    if not flags:
        flags = _torch_isa()
    logical = os.cpu_count() or 1
    return {"cpu_model": model or platform.processor() or platform.machine() or "unknown",
            "cpu_flags": sorted(f for f in flags if f in ISA_FLAGS),
            "physical_cores": len(cores) or _physical_cores() or logical, "logical_cpus": logical,
            "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical}


def _torch_isa() -> set[str]:
    try:
        import torch

        cap = torch.backends.cpu.get_cpu_capability().lower()  # "avx2", "avx512", "default", ...
    except Exception:  # noqa: BLE001 - no torch, or an old one: no flags
        return set()
    return {"avx2", "fma"} if cap == "avx2" else ({"avx2", "fma", "avx512f"} if cap.startswith("avx512") else set())


def _physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except Exception:  # noqa: BLE001 - psutil is optional
        return None


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in ("torch", "onnxruntime"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return versions


def static_fingerprint(backend: str = "onnxruntime", device: str = "cpu", precision: str = "fp32", threads: int = 1,
                       input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The static part for these settings (see the module docstring); ``id`` hashes its :data:`MATCH_KEYS`."""
    info = cpu_info()
    device_name = info["cpu_model"]
    if device == "cuda":
        import torch

        device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cuda (not available)"
    fp = {"format": FORMAT, **info, "arch": platform.machine(), "versions": library_versions(),
          "backend": backend, "provider": PROVIDERS.get((backend, device), device), "device": device,
          "device_name": device_name, "precision": precision, "threads": int(threads),
          "input_size": list(input_size) if input_size is not None else None}
    fp["id"] = fingerprint_id(fp)
    return fp


def _digest(data: dict[str, Any], keys: tuple[str, ...]) -> str:
    text = json.dumps({k: data.get(k) for k in keys}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def fingerprint_id(fp: dict[str, Any]) -> str:
    """12 hex digits of the SHA-256 of the :data:`MATCH_KEYS` fields: equal ids, equal static parts."""
    return _digest(fp, MATCH_KEYS)


def machine_id(fp: dict[str, Any]) -> str:
    """Like :func:`fingerprint_id` over the machine fields only (the perf cache key)."""
    return _digest(fp, MACHINE_KEYS)


# --- the performance part --------------------------------------------------------------------------
REFERENCE_KERNELS = {  # name -> what is timed (fixed sizes, batch 1, fp32). Working sets fit a core's L2 cache, so
    # another job streaming memory on the next core moves them by a few % at most (4-8 MB ones moved 1.5-2x).
    "conv3x3": "3x3 conv 32->32 + ReLU at 32x32",
    "conv_dw3x3": "depthwise 3x3 conv, 64 channels + ReLU at 32x32",
    "conv1x1": "1x1 conv 128->128 at 32x32",
    "resize_bilinear": "bilinear resize, 32 channels, 32x32 -> 64x64",
    "wsum2": "weighted sum of two 64x32x32 tensors",
}
PERF_PASSES = 2  # interleaved passes over the kernels; each keeps its lowest median


def reference_module(name: str) -> tuple[Any, tuple[Any, ...]]:
    """The module and inputs (seeded) of one :data:`REFERENCE_KERNELS` entry."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    g = torch.Generator().manual_seed(0)

    def x(c: int, h: int, w: int) -> torch.Tensor:
        return torch.randn(1, c, h, w, generator=g)

    class Fn(nn.Module):
        def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
            super().__init__()
            self.fn = fn

        def forward(self, *xs: torch.Tensor) -> torch.Tensor:
            return self.fn(*xs)

    torch.manual_seed(0)
    if name == "conv3x3":
        return nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()), (x(32, 32, 32),)
    if name == "conv_dw3x3":
        return nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, groups=64), nn.ReLU()), (x(64, 32, 32),)
    if name == "conv1x1":
        return nn.Conv2d(128, 128, 1), (x(128, 32, 32),)
    if name == "resize_bilinear":
        return Fn(lambda t: F.interpolate(t, size=(64, 64), mode="bilinear", align_corners=False)), (x(32, 32, 32),)
    if name == "wsum2":
        return Fn(lambda a, b: a * 0.7 + b * 0.3), (x(64, 32, 32), x(64, 32, 32))
    raise KeyError(name)


def perf_timing() -> Any:
    from escale.profiler.latency.timing import TimingConfig

    return TimingConfig(warmup_runs=3, warmup_s=0.03, min_runs=15, min_duration_s=0.12, max_duration_s=1.0)


def thread_cpu_timer(fn: Callable[[], Any]) -> float:
    """Run ``fn`` once; CPU time of this thread in ms. With one intra-op thread ONNX Runtime computes in the
    calling thread, so this equals wall time on an idle machine and ignores time spent descheduled on a
    shared one (other jobs on the same cores)."""
    t0 = time.thread_time_ns()
    fn()
    return (time.thread_time_ns() - t0) / 1e6


def bound_call(session: Any, inputs: tuple[Any, ...]) -> Callable[[], Any]:
    """A zero-argument ``run_with_iobinding`` on fixed numpy inputs and preallocated outputs (CPU)."""
    import numpy as np

    binding = session.io_binding()
    keep = []
    for meta, x in zip(session.get_inputs(), inputs, strict=True):
        arr = np.ascontiguousarray(x.numpy())
        keep.append(arr)
        binding.bind_cpu_input(meta.name, arr)
    for meta in session.get_outputs():
        out = np.empty([int(d) for d in meta.shape], dtype=np.float32)
        keep.append(out)
        binding.bind_output(meta.name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)

    def run() -> None:
        session.run_with_iobinding(binding)
        assert keep  # the buffers live as long as the call

    return run


def time_onnx_module(module: Any, inputs: tuple[Any, ...], folder: str | Path, threads: int = 1,
                     device: str = "cpu", config: Any = None, timer: Callable | None = None) -> Any:
    """Export ``module`` to ONNX, open a session like the onnxruntime backend, time it with I/O binding."""
    from escale.profiler.latency.onnxrt import OrtRunner, export_onnx
    from escale.profiler.latency.timing import time_callable

    path = export_onnx(module.eval(), inputs, Path(folder) / "kernel.onnx")
    runner = OrtRunner(path, threads=threads, device=device)
    return time_callable(bound_call(runner.session, inputs), config or perf_timing(), timer=timer)


def measure_perf() -> dict[str, float]:
    """Median thread-CPU ms of each :data:`REFERENCE_KERNELS` entry (ONNX Runtime CPU, 1 thread), the lowest
    of :data:`PERF_PASSES` interleaved passes (about 2 s in all)."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="escale-fp-") as tmp:
        for _ in range(PERF_PASSES):
            for name in REFERENCE_KERNELS:
                module, inputs = reference_module(name)
                ms = round(time_onnx_module(module, inputs, tmp, timer=thread_cpu_timer).median_ms, 5)
                out[name] = min(ms, out.get(name, ms))
    return out


def perf_cache_dir() -> Path:
    """``$ESCALE_CACHE_DIR/fingerprint`` (default ``~/.cache/escale/fingerprint``; ``escale paths``)."""
    from escale.paths import fingerprint_cache_dir

    return fingerprint_cache_dir()


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def perf_fingerprint(static: dict[str, Any], refresh: bool = False,
                     measure: Callable[[], dict[str, float]] | None = None) -> dict[str, Any]:
    """``{"perf_ms": {...}, "perf_version", "perf_measured_at"}`` for this machine: from the cache when it is
    younger than :data:`PERF_MAX_AGE_S` and from this boot, else measured. ``refresh`` measures again and keeps,
    per kernel, the lower of the new and the cached timing (other jobs only ever slow a kernel down)."""
    path = perf_cache_dir() / f"{machine_id(static)}.json"
    now = time.time()
    cached = None
    if path.is_file():
        try:
            entry = json.loads(path.read_text())
            fresh = now - float(entry["measured_at_s"]) < PERF_MAX_AGE_S and entry.get("boot_id") == _boot_id()
            if fresh and entry.get("perf_version") == PERF_VERSION and set(entry["perf_ms"]) == set(REFERENCE_KERNELS):
                cached = entry
        except (ValueError, KeyError, TypeError, OSError):
            pass  # unreadable cache: measure again
    if cached is not None and not refresh:
        return {"perf_ms": cached["perf_ms"], "perf_version": PERF_VERSION, "perf_measured_at": cached["measured_at"]}
    t0 = time.perf_counter()
    perf = (measure or measure_perf)()
    if cached is not None:
        perf = {k: min(v, cached["perf_ms"][k]) for k, v in perf.items()}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
    entry = {"perf_ms": perf, "perf_version": PERF_VERSION, "measured_at": stamp, "measured_at_s": now,
             "boot_id": _boot_id(), "measure_s": round(time.perf_counter() - t0, 2),
             "machine": {k: static.get(k) for k in MACHINE_KEYS}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry, indent=1))
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache: measure every time
    return {"perf_ms": perf, "perf_version": PERF_VERSION, "perf_measured_at": stamp}


def current_fingerprint(backend: str = "onnxruntime", device: str = "cpu", precision: str = "fp32",
                        threads: int = 1, input_size: tuple[int, int] | None = None, perf: bool = True,
                        refresh: bool = False) -> dict[str, Any]:
    """This machine's fingerprint for these settings; with ``perf`` the (cached) performance part."""
    fp = static_fingerprint(backend, device, precision, threads, input_size)
    if perf:
        try:
            fp.update(perf_fingerprint(fp, refresh=refresh))
        except ImportError as exc:  # no onnxruntime here: a static fingerprint only
            fp["perf_ms"], fp["perf_error"] = None, f"not measured ({exc})"
    return fp


def record_fingerprint(backend: str, device: str, precision: str, threads: int,
                       input_size: tuple[int, int]) -> dict[str, Any]:
    """The fingerprint stored in a latency record's ``env``: the performance part on CPU only (cached);
    never fails a measurement (a failure is recorded as ``error``)."""
    try:
        return current_fingerprint(backend, device, precision, threads, input_size, perf=device == "cpu")
    except Exception as exc:  # noqa: BLE001 - a record without a perf fingerprint is still a record
        return {"format": FORMAT, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}


# --- matching --------------------------------------------------------------------------------------
def mismatch(theirs: dict[str, Any] | None, mine: dict[str, Any], what: str = "the table") -> str | None:
    """None when the fingerprints match (module docstring), else one line saying what differs first."""
    if not theirs:
        return f"{what} records no machine fingerprint"
    for key in MATCH_KEYS:
        a, b = theirs.get(key), mine.get(key)
        if _norm(a) != _norm(b):
            return f"{key} differs ({what}: {a!r}, this machine: {b!r})"
    if theirs.get("perf_version") != mine.get("perf_version"):
        return (f"reference kernels of another kind ({what}: perf_version {theirs.get('perf_version')!r}, this "
                f"machine: {mine.get('perf_version')!r})")
    pa, pb = theirs.get("perf_ms") or {}, mine.get("perf_ms") or {}
    common = sorted(set(pa) & set(pb))
    if not common:
        return f"no reference-kernel timings to compare ({what}: {len(pa)}, this machine: {len(pb)})"
    ratios = {k: pb[k] / pa[k] for k in common if pa[k] > 0 and pb[k] > 0}
    if len(ratios) != len(common):
        return f"a reference-kernel timing is not positive ({what}: {pa}, this machine: {pb})"
    mean = math.exp(sum(math.log(r) for r in ratios.values()) / len(ratios))
    worst = max(ratios, key=lambda k: abs(math.log(ratios[k])))
    if abs(mean - 1) > PERF_TOLERANCE_MEAN or abs(ratios[worst] - 1) > PERF_TOLERANCE_EACH:
        each = ", ".join(f"{k} {r:.2f}x" for k, r in ratios.items())
        return (f"reference kernels take {mean:.2f}x {what}'s time here ({each}; allowed: "
                f"±{100 * PERF_TOLERANCE_MEAN:.0f}% on average, ±{100 * PERF_TOLERANCE_EACH:.0f}% each)")
    return None


def mismatch_here(theirs: dict[str, Any] | None, backend: str, device: str, precision: str, threads: int,
                  input_size: tuple[int, int] | None, what: str = "the table") -> tuple[str | None, dict[str, Any]]:
    """(:func:`mismatch` against this machine, this machine's fingerprint); a mismatch in the timings alone is
    checked once more with a fresh measurement (``refresh``) before it stands."""
    mine = current_fingerprint(backend, device, precision, threads, input_size)
    why = mismatch(theirs, mine, what)
    if why and why.startswith("reference kernels take"):
        mine = current_fingerprint(backend, device, precision, threads, input_size, refresh=True)
        why = mismatch(theirs, mine, what)
    return why, mine


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value

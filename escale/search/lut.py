"""Latency lookup tables: every distinct kernel of a set of models, measured once (nn-Meter, Once-for-All).

A table holds, for one backend / device / precision / input size / thread count, the median latency
(ms) of each kernel (see :mod:`escale.search.kernels`), each measured alone as a one-kernel ONNX model
(exported and run exactly as the onnxruntime latency backend runs whole models, outputs bound to
preallocated buffers) by the shared methodology (:func:`escale.profiler.latency.time_callable`), minus
the fixed per-call overhead (a one-element add, measured the same way). With one thread the clock is
the thread's CPU time (see :func:`thread_cpu_timer`): on shared cores a kernel is then not charged for
time other jobs hold the CPU. Saved as JSON (the table) plus a CSV of the kernels for reading;
:mod:`escale.search.predictor` prices models from it. A table records the fingerprint of the machine that
built it (:mod:`escale.profiler.latency.fingerprint`); :mod:`escale.search.calibration` carries it to
another machine. Every field is checked on load (:mod:`escale.search.tablecheck`).
"""

from __future__ import annotations

import hashlib
import json
import platform
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from escale import paths
from escale.errors import BackendUnavailableError, SpecError
from escale.profiler.latency.fingerprint import (  # noqa: F401 - thread_cpu_timer, bound_call: re-exported
    bound_call,
    current_fingerprint,
    mismatch,
    mismatch_here,
    thread_cpu_timer,
    time_onnx_module,
)
from escale.search.kernels import Kernel, model_kernels
from escale.search.tablecheck import FORMAT, TableError, check_table_dict
from escale.spec import ESegSpec

BACKENDS = ("onnxruntime",)
ACT_MODULES = {"relu": nn.ReLU, "silu": nn.SiLU, "sigmoid": nn.Sigmoid, "hardswish": nn.Hardswish}


@dataclass
class LatencyTable:
    """Measured kernel latencies (ms, overhead removed) for one backend/device/precision/input size/threads."""

    backend: str
    device: str
    precision: str
    input_size: tuple[int, int]
    threads: int
    overhead_ms: float = 0.0
    kernels: dict[str, dict[str, Any]] = field(default_factory=dict)   # key -> {latency_ms, raw_ms, iqr_ms, runs}
    calibration: dict[str, Any] | None = None
    built_from: list[dict[str, Any]] = field(default_factory=list)      # {name, spec_id} of the source models
    timing: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] | None = None   # the machine it was built on (escale.profiler.latency.fingerprint)
    source: str | None = None

    def settings(self) -> dict[str, Any]:
        return {"backend": self.backend, "device": self.device, "precision": self.precision,
                "input_size": list(self.input_size), "threads": self.threads}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("source")
        d["format"] = FORMAT
        d["input_size"] = list(self.input_size)
        d["units"] = {"latency_ms": "median ms per call minus overhead_ms", "raw_ms": "median ms per call"}
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> LatencyTable:
        """A table from its JSON form, every field checked (:func:`check_table_dict`)."""
        check_table_dict(data, source or "table")
        kwargs = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "source"}
        kwargs["input_size"] = tuple(kwargs["input_size"])
        return cls(**kwargs, source=source)

    def identity(self) -> str:
        """16 hex digits of the SHA-256 of what predictions depend on: settings, overhead, every kernel's
        latency and the calibration (a calibration for this machine records it, see escale.search.calibration)."""
        core = {"settings": self.settings(), "overhead_ms": self.overhead_ms, "calibration": self.calibration,
                "kernels": {k: e["latency_ms"] for k, e in sorted(self.kernels.items())}}
        return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]

    def mismatch(self, fingerprint: dict[str, Any] | None = None) -> str | None:
        """None when the table was built on this machine (its fingerprint matches ``fingerprint``, default this
        machine's, see :func:`~escale.profiler.latency.fingerprint.mismatch_here`), else why not (one line)."""
        if fingerprint is not None:
            return mismatch(self.fingerprint, fingerprint, "the table")
        return mismatch_here(self.fingerprint, self.backend, self.device, self.precision, self.threads,
                             self.input_size)[0]

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (JSON) and a CSV of the kernels next to it; returns the JSON path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n")
        rows = ["key,op,latency_ms,raw_ms,iqr_ms,runs"]
        for key, e in sorted(self.kernels.items()):
            rows.append(f"\"{key}\",{key.split(':')[0]},{e['latency_ms']:.6f},{e['raw_ms']:.6f},"
                        f"{e.get('iqr_ms', 0):.6f},{e.get('runs', 0)}")
        path.with_suffix(".csv").write_text("\n".join(rows) + "\n")
        self.source = str(path)
        return path


def load_table(path: str | Path) -> LatencyTable:
    """Read a table written by :meth:`LatencyTable.save`; a malformed one is a one-line :class:`TableError`."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"--lut: {str(path)!r} does not exist (build one with `escale lut build`)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TableError(f"--lut: {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return LatencyTable.from_dict(data, source=str(path))


def table_name(backend: str, device: str, precision: str, input_size: tuple[int, int], threads: int) -> str:
    """``<backend>-<device>-<precision>-<H>x<W>-t<threads>.json``: the file name a table's settings give."""
    h, w = input_size
    return f"{backend}-{device}-{precision}-{h}x{w}-t{threads}.json"


def default_table_path(backend: str, device: str, precision: str, input_size: tuple[int, int], threads: int) -> Path:
    """Where ``escale lut build`` writes by default: :func:`escale.paths.lut_dir` (never the committed
    ``reports/lut/``)."""
    return paths.lut_dir() / table_name(backend, device, precision, input_size, threads)


def find_table(backend: str, device: str, precision: str, input_size: tuple[int, int], threads: int) -> Path | None:
    """The first table named for these settings in :func:`escale.paths.lut_search_path`, or None."""
    name = table_name(backend, device, precision, input_size, threads)
    return next((d / name for d in paths.lut_search_path() if (d / name).is_file()), None)


# --- one-kernel modules ----------------------------------------------------------------------------
class _Fn(nn.Module):
    def __init__(self, fn: Callable[..., torch.Tensor], **consts: torch.Tensor) -> None:
        super().__init__()
        self.fn = fn
        for name, value in consts.items():
            self.register_buffer(name, value)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(self, *xs)


def kernel_module(k: Kernel) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A module computing exactly kernel ``k`` (folded BN = conv bias) and example inputs of its shapes."""
    g = torch.Generator().manual_seed(0)

    def x(c: int, h: int, w: int) -> torch.Tensor:
        return torch.randn(1, c, h, w, generator=g)

    a = dict(k.attrs)
    if k.op == "conv":
        conv = nn.Conv2d(a["cin"], a["cout"], a["k"], stride=a["s"], padding=a["p"], dilation=a["d"],
                         groups=a["g"], bias=bool(a["bias"]))
        act = [ACT_MODULES[a["act"]]()] if a["act"] != "none" else []
        return nn.Sequential(conv, *act), (x(a["cin"], a["h"], a["w"]),)
    chw = (a.get("c"), a.get("h"), a.get("w"))
    if k.op == "act":
        return ACT_MODULES[a["act"]](), (x(*chw),)
    if k.op == "pool":
        pool = (nn.MaxPool2d(a["k"], a["s"], a["p"]) if a["kind"] == "max"
                else nn.AvgPool2d(a["k"], a["s"], a["p"], count_include_pad=bool(a.get("cip", 1))))
        return pool, (x(*chw),)
    if k.op == "resize":
        size, mode = (a["ho"], a["wo"]), a["mode"]
        align = False if mode == "bilinear" else None
        return _Fn(lambda m, t: F.interpolate(t, size=size, mode=mode, align_corners=align)), (x(*chw),)
    if k.op == "wsum":
        n = a["n"]
        return (_Fn(lambda m, *ts: sum(t * m.w[i] for i, t in enumerate(ts)), w=torch.rand(n, generator=g) + 0.1),
                tuple(x(*chw) for _ in range(n)))
    if k.op == "add":
        return _Fn(lambda m, s, t: s + t), (x(*chw), x(*chw))
    if k.op == "mul":
        return _Fn(lambda m, s, t: s * t), (x(*chw), x(a["c"], a["hb"], a["wb"]))
    if k.op == "scale":
        return _Fn(lambda m, t: t * m.w, w=torch.tensor(0.5)), (x(*chw),)
    if k.op == "mean":
        return _Fn(lambda m, t: t.mean((2, 3), keepdim=True)), (x(*chw),)
    raise TableError(f"kernel {k.key!r}: no module for op {k.op!r} (cannot be measured)")


OVERHEAD_KERNEL = Kernel.make("add", c=1, h=1, w=1)


# --- measuring ---------------------------------------------------------------------------------------
def kernel_timing() -> Any:
    """Timing for one kernel: short but many runs for fast kernels (the shared methodology's knobs)."""
    from escale.profiler.latency import TimingConfig

    return TimingConfig(warmup_runs=2, warmup_s=0.02, min_runs=7, min_duration_s=0.15, max_duration_s=2.0)


class OrtKernelTimer:
    """Times one-kernel modules with ONNX Runtime as full models are timed (same export, session options).

    Outputs are bound to preallocated buffers (I/O binding), so a kernel's time holds no output allocation;
    ``clock`` is ``thread_cpu`` (default with one thread, see :func:`thread_cpu_timer`) or ``wall``.
    """

    def __init__(self, device: str = "cpu", threads: int = 1, config: Any = None, clock: str | None = None) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailableError(f"lut: onnxruntime is not available ({exc})") from None
        self.device, self.threads = device, threads
        self.clock = clock or ("thread_cpu" if threads == 1 else "wall")
        if self.clock not in CLOCKS or (self.clock == "thread_cpu" and threads != 1):
            raise SpecError(f"lut: clock {self.clock!r} with {threads} threads is not allowed "
                            "(allowed: wall, or thread_cpu with threads=1)")
        self.config = config or kernel_timing()
        self._tmp = tempfile.TemporaryDirectory(prefix="escale-lut-")

    def __call__(self, k: Kernel) -> dict[str, Any]:
        module, inputs = kernel_module(k)
        stats = time_onnx_module(module, inputs, self._tmp.name, threads=self.threads, device=self.device,
                                 config=self.config, timer=CLOCKS[self.clock])
        return {"raw_ms": stats.median_ms, "iqr_ms": stats.iqr_ms, "runs": stats.runs}

    def env(self) -> dict[str, Any]:
        import onnxruntime

        from escale.profiler.latency.base import cpu_name

        return {"onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "clock": self.clock,
                "cpu": cpu_name(), "python": platform.python_version()}


CLOCKS = {"thread_cpu": thread_cpu_timer, "wall": None}


def get_kernel_timer(backend: str, device: str, precision: str, threads: int, config: Any = None,
                     clock: str | None = None) -> OrtKernelTimer:
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"lut: backend {backend!r} has no kernel timer (allowed: {', '.join(BACKENDS)})")
    if device != "cpu" or precision != "fp32":
        raise BackendUnavailableError(f"lut: {backend} tables are built for device=cpu precision=fp32 here "
                                      f"(got device={device}, precision={precision})")
    return OrtKernelTimer(device=device, threads=threads, config=config, clock=clock)


def model_call(spec: ESegSpec, input_size: tuple[int, int], threads: int = 1,
               cache: str | Path | None = None) -> Callable[[], Any]:
    """A zero-argument call running ``spec`` the onnxruntime backend's way (build with seed 0, fold softmax and
    BN, ONNX export, session with ``threads``) on a fixed input: prepared once, timed as often as wanted.
    With ``cache`` (a folder) the export is kept there, keyed by spec id, input size and torch version."""
    import os
    import shutil

    from escale.models import build_model
    from escale.profiler.latency.fold import prepare_for_inference
    from escale.profiler.latency.onnxrt import OPSET, OrtRunner, export_onnx

    x = torch.randn(1, 3, *input_size, generator=torch.Generator().manual_seed(0))
    h, w = input_size
    kept = Path(cache) / f"{spec.spec_id}-{h}x{w}-torch{torch.__version__}-opset{OPSET}.onnx" if cache else None
    if kept is not None and kept.is_file():
        return OrtRunner(kept, threads=threads).bind(x)
    torch.manual_seed(0)
    model = build_model(spec).eval()
    side = 2 ** spec.decoder.max_level
    prepare_for_inference(model, torch.randn(1, 3, side, side))
    with tempfile.TemporaryDirectory(prefix="escale-cal-") as tmp:
        path = export_onnx(model, x, Path(tmp) / "model.onnx")
        runner = OrtRunner(path, threads=threads)
        if kept is not None:  # copy, then rename: a reader never sees half a file
            kept.parent.mkdir(parents=True, exist_ok=True)
            part = kept.with_suffix(f".{os.getpid()}.part")
            shutil.copyfile(path, part)
            os.replace(part, kept)
    return runner.bind(x)


def time_model_call(call: Callable[[], Any], threads: int = 1, clock: str | None = None,
                    config: Any = None) -> dict[str, Any]:
    """Median ms of a :func:`model_call` (1 warm-up + 5 runs by default), timed with the table's ``clock``."""
    from escale.profiler.latency import TimingConfig, time_callable

    clock = clock or ("thread_cpu" if threads == 1 else "wall")
    cfg = config or TimingConfig(warmup_runs=1, warmup_s=0.0, min_runs=5, min_duration_s=0.0)
    stats = time_callable(call, cfg, timer=CLOCKS[clock])
    return {"latency_ms": stats.median_ms, "iqr_ms": stats.iqr_ms, "runs": stats.runs, "clock": clock}


def measure_model_ms(spec: ESegSpec, input_size: tuple[int, int], threads: int = 1, clock: str | None = None,
                     config: Any = None) -> dict[str, Any]:
    """Median latency (ms) of a whole model (:func:`model_call`, :func:`time_model_call`) -- for calibration."""
    return time_model_call(model_call(spec, input_size, threads), threads, clock, config)


def distinct_kernels(specs: Iterable[ESegSpec], input_size: tuple[int, int]) -> list[Kernel]:
    """The distinct kernels of all ``specs`` at ``input_size``, in first-seen order."""
    seen: dict[Kernel, None] = {}
    for spec in specs:
        for k in model_kernels(spec, input_size):
            seen.setdefault(k)
    return list(seen)


def check_extendable(table: LatencyTable, fingerprint: dict[str, Any] | None = None) -> None:
    """A table with kernels is extended only on the machine that built it (else a one-line TableError)."""
    why = table.mismatch(fingerprint) if table.kernels else None
    if why:
        raise TableError(f"lut build: {table.source or 'the existing table'} was built on another machine ({why}); "
                         "extend it there, or build a new table (--out NEW.json)")


def build_table(specs: list[ESegSpec], input_size: tuple[int, int], backend: str = "onnxruntime",
                device: str = "cpu", precision: str = "fp32", threads: int = 1, table: LatencyTable | None = None,
                timer: Callable[[Kernel], dict[str, Any]] | None = None,
                on_kernel: Callable[[int, int, Kernel], None] | None = None, passes: int = 1) -> LatencyTable:
    """Measure every kernel of ``specs`` not yet in ``table`` (a new table when None); returns the table.

    With ``passes`` > 1 every kernel is measured once per pass and keeps its lowest median: on shared
    cores that is the least disturbed one. ``on_kernel(i, n, kernel)`` reports progress; ``timer``
    replaces the backend timer (tests). A new table records this machine's fingerprint (its performance
    part measured afresh with a real kernel timer, from the cache with a test timer); a table built on another
    machine is never extended (its kernels and the new ones would not be comparable).
    """
    if not isinstance(passes, int) or passes < 1:
        raise SpecError(f"lut build: passes={passes!r} is not allowed (a whole number >= 1)")
    if not specs:
        raise SpecError("lut build: no models to take kernels from")
    input_size = tuple(input_size)
    if table is None:
        table = LatencyTable(backend=backend, device=device, precision=precision, input_size=input_size,
                             threads=threads)
    elif table.settings() != {"backend": backend, "device": device, "precision": precision,
                              "input_size": list(input_size), "threads": threads}:
        raise TableError(f"lut build: the existing table was made for {table.settings()}, not "
                         f"{backend}/{device}/{precision}/{input_size}/threads={threads}")
    check_extendable(table)
    real_timer = timer is None or isinstance(timer, OrtKernelTimer)
    fp = current_fingerprint(backend, device, precision, threads, input_size, refresh=real_timer and not table.kernels)
    real = timer or get_kernel_timer(backend, device, precision, threads)
    if not table.kernels:
        table.fingerprint = fp
        table.overhead_ms = real(OVERHEAD_KERNEL)["raw_ms"]
        table.env = real.env() if hasattr(real, "env") else {}
        table.timing = real.config.to_dict() if hasattr(real, "config") else {}
        table.timing["clock"] = getattr(real, "clock", "wall")
    todo = [k for k in distinct_kernels(specs, input_size) if k.key not in table.kernels and not k.op.startswith("unknown:")]
    for p in range(passes):  # pass after pass, so each kernel is sampled at different times
        for i, k in enumerate(todo):
            if on_kernel:
                on_kernel(p * len(todo) + i, passes * len(todo), k)
            res = real(k)
            old = table.kernels.get(k.key)
            if old is None or res["raw_ms"] < old["raw_ms"]:
                table.kernels[k.key] = {"latency_ms": max(res["raw_ms"] - table.overhead_ms, 0.0), **res}
            table.kernels[k.key]["passes"] = p + 1
    known = {m["spec_id"] for m in table.built_from}
    table.built_from += [{"name": s.name, "spec_id": s.spec_id, "spec": s.to_dict()} for s in specs
                         if s.spec_id not in known]
    if todo or "built_at" not in table.env:  # when kernels were last measured
        table.env["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    if todo:
        table.calibration = None  # kernels changed: an old calibration no longer applies
    return table

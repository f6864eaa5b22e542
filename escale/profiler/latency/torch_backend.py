"""``torch`` backend: eager PyTorch on CPU or CUDA.

Options: ``channels_last`` (NHWC memory format), ``compile`` (``torch.compile``; with ``cuda_graphs``
it uses mode ``reduce-overhead``), ``cuda_graphs`` (capture one forward in a CUDA graph and time
``replay()``), ``cast_model`` (convert weights and input to the precision instead of autocast).
Precision fp16/bf16 runs under ``torch.autocast`` unless ``cast_model``. CPU timing: wall clock after
the call returns; CUDA timing: CUDA events around the call, then a synchronisation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from escale.profiler.latency.base import LatencyBackend, Measurement, register_backend
from escale.profiler.latency.isolate import MeasurementError
from escale.profiler.latency.memory import cuda_peak_memory
from escale.profiler.latency.timing import CudaEventTimer, TimingConfig, time_callable

DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def cuda_reason() -> str | None:
    """Why CUDA cannot be used here, or None if it can."""
    if not torch.cuda.is_available():
        built = torch.version.cuda
        return (f"no CUDA GPU visible (torch {torch.__version__} built with CUDA {built}; "
                "torch.cuda.is_available() is False)")
    return None


@register_backend
class TorchBackend(LatencyBackend):
    """Eager PyTorch (optionally channels_last, autocast, torch.compile, CUDA graphs)."""

    name = "torch"
    precisions = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")}
    options = {"channels_last": False, "compile": False, "cuda_graphs": False, "cast_model": False}

    def is_available(self, device: str | None = None) -> tuple[bool, str]:
        if device == "cuda" and (why := cuda_reason()):
            return False, why
        return True, "ok"

    def measure(self, model: torch.nn.Module, example: torch.Tensor, *, spec: Any, device: str, precision: str,
                threads: int, config: TimingConfig, options: dict[str, Any]) -> Measurement:
        if options["cuda_graphs"] and device != "cuda":
            raise MeasurementError("--latency-opt: cuda_graphs=1 needs --device cuda")
        dev = torch.device(device)
        fmt = torch.channels_last if options["channels_last"] else torch.contiguous_format
        dtype = DTYPES[precision]
        model = model.to(dev, memory_format=fmt)
        x = example.to(dev, memory_format=fmt)
        if dtype is not None and options["cast_model"]:
            model, x = model.to(dtype), x.to(dtype)
        autocast = dtype is not None and not options["cast_model"]
        forward: Callable = model
        if options["compile"]:
            mode = "reduce-overhead" if options["cuda_graphs"] else None
            forward = torch.compile(model, mode=mode)

        def step() -> torch.Tensor:
            ctx = torch.autocast(dev.type, dtype=dtype) if autocast else contextlib.nullcontext()
            with torch.inference_mode(), ctx:
                return forward(x)

        try:
            step()  # first call: compiles, allocates; errors surface here as one line
        except Exception as exc:  # noqa: BLE001 - compile/backend errors come in many types
            first = (str(exc).strip().splitlines() or [""])[0]
            raise MeasurementError(f"torch backend: forward failed ({type(exc).__name__}: {first})") from None
        details: dict[str, Any] = {"autocast": autocast, "memory_format": "channels_last"
                                   if options["channels_last"] else "contiguous"}
        if device != "cuda":
            return Measurement(stats=time_callable(step, config), details=details)
        mem = cuda_peak_memory(step, dev)
        fn: Callable[[], Any] = step
        if options["cuda_graphs"] and not options["compile"]:
            fn = _capture_graph(step)
            details["cuda_graphs"] = True
        stats = time_callable(fn, config, timer=CudaEventTimer())
        return Measurement(stats=stats, peak_mem_mb=mem.peak_mb, peak_mem_method=mem.method, details=details)

    def versions(self) -> dict[str, str]:
        v = {"torch": torch.__version__}
        if torch.cuda.is_available():
            v.update(cuda=str(torch.version.cuda), cudnn=str(torch.backends.cudnn.version()))
        return v


def _capture_graph(step: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """Capture ``step`` in a CUDA graph (after warm-up on a side stream); returns ``graph.replay``."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()  # the graph's static output, kept alive by the closure

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay

"""``torch`` backend: eager PyTorch on CPU or CUDA.

Options: ``channels_last`` (NHWC memory format), ``compile`` (``torch.compile``; with ``cuda_graphs``
it uses mode ``reduce-overhead``), ``cuda_graphs`` (capture one forward in a CUDA graph and time
``replay()``), ``cast_model`` (convert weights and input to the precision instead of autocast).
Precision fp16/bf16 runs under ``torch.autocast`` unless ``cast_model``. CPU timing: wall clock after
the call returns; CUDA timing: CUDA events around the call, then a synchronisation.

On CUDA, fp32 means IEEE fp32: TF32 is turned off for convolutions and matmuls while measuring (torch
2.14 lets cuDNN convolutions use TF32 by default); ``tf32`` (CUDA only) turns it on, as TensorRT treats
TF32 as its own precision; fp16/bf16 leave the caller's TF32 setting as it is. CUDA timing also sets
``torch.backends.cudnn.benchmark = True`` (as timm's benchmark does: cuDNN picks the fastest algorithm
per shape on the first call). The caller's settings come back afterwards; the record's details state
the settings in force (``tf32_conv``, ``tf32_matmul``, ``tf32_api``, ``cudnn_benchmark``).

TF32 API: torch >= 2.9 documents per-operator ``fp32_precision`` ("ieee"/"tf32") and deprecates the
``allow_tf32`` flags, and torch 2.14's cuDNN convolutions read ``torch.backends.cudnn.conv.fp32_precision``;
older torch gets ``torch.backends.cudnn.allow_tf32``. Matmuls go through
``torch.set_float32_matmul_precision`` ("highest"/"high"), which in torch 2.14 sets
``torch.backends.cuda.matmul.fp32_precision`` too, so the legacy and the new matmul flags agree (torch
raises on a mix when, e.g., torch.compile reads ``torch.get_float32_matmul_precision()``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch

from escale.errors import describe
from escale.profiler.latency.base import LatencyBackend, Measurement, register_backend
from escale.profiler.latency.isolate import MeasurementError
from escale.profiler.latency.memory import cuda_peak_memory
from escale.profiler.latency.timing import CudaEventTimer, TimingConfig, time_callable

DTYPES = {"fp32": None, "tf32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
TF32 = {"fp32": False, "tf32": True}  # precision -> TF32 for fp32 convs/matmuls on CUDA; others: left as found


def cuda_reason() -> str | None:
    """Why CUDA cannot be used here, or None if it can."""
    if not torch.cuda.is_available():
        built = torch.version.cuda
        return (f"no CUDA GPU visible (torch {torch.__version__} built with CUDA {built}; "
                "torch.cuda.is_available() is False)")
    return None


def tf32_api() -> str:
    """``"fp32_precision"`` (torch >= 2.9: per-operator "ieee"/"tf32") or ``"allow_tf32"`` (older torch)."""
    version = tuple(int(p) for p in re.findall(r"\d+", torch.__version__)[:2])
    conv = getattr(torch.backends.cudnn, "conv", None)
    return "fp32_precision" if version >= (2, 9) and hasattr(conv, "fp32_precision") else "allow_tf32"


def _matmul_precision() -> str | None:
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:  # the caller mixed the legacy and new matmul flags; restored from the new ones
        return None


def _tf32_snapshot() -> dict[str, Any]:
    b = torch.backends
    state: dict[str, Any] = {"matmul": _matmul_precision()}
    if tf32_api() == "fp32_precision":
        state["conv"] = b.cudnn.conv.fp32_precision
        state["cuda_matmul"] = b.cuda.matmul.fp32_precision
        mkldnn_matmul = getattr(getattr(b, "mkldnn", None), "matmul", None)  # set_float32_matmul_precision sets it
        state["mkldnn_matmul"] = getattr(mkldnn_matmul, "fp32_precision", None)
    else:
        state["conv"] = b.cudnn.allow_tf32
    return state


def _tf32_restore(state: dict[str, Any]) -> None:
    b = torch.backends
    if state["matmul"] is not None:
        torch.set_float32_matmul_precision(state["matmul"])
    if "cuda_matmul" in state:
        b.cudnn.conv.fp32_precision = state["conv"]
        b.cuda.matmul.fp32_precision = state["cuda_matmul"]
        if state["mkldnn_matmul"] is not None:
            b.mkldnn.matmul.fp32_precision = state["mkldnn_matmul"]
    else:
        b.cudnn.allow_tf32 = state["conv"]


@contextlib.contextmanager
def tf32_mode(enabled: bool | None) -> Iterator[None]:
    """TF32 on (True) or off (False) for CUDA convolutions and matmuls inside the block, then the caller's
    settings again; ``None`` changes nothing. See the module docstring for the API used."""
    if enabled is None:
        yield
        return
    saved = _tf32_snapshot()
    try:
        if tf32_api() == "fp32_precision":
            torch.backends.cudnn.conv.fp32_precision = "tf32" if enabled else "ieee"
        else:
            torch.backends.cudnn.allow_tf32 = enabled
        torch.set_float32_matmul_precision("high" if enabled else "highest")
        yield
    finally:
        _tf32_restore(saved)


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool = True) -> Iterator[None]:
    """``torch.backends.cudnn.benchmark = enabled`` inside the block, the caller's value afterwards."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def cuda_math_settings() -> dict[str, Any]:
    """The TF32 and cuDNN settings in force now, as recorded with a CUDA measurement."""
    b = torch.backends
    if tf32_api() == "fp32_precision":
        conv, matmul = b.cudnn.conv.fp32_precision == "tf32", b.cuda.matmul.fp32_precision == "tf32"
    else:
        conv, matmul = bool(b.cudnn.allow_tf32), bool(b.cuda.matmul.allow_tf32)
    return {"tf32_conv": conv, "tf32_matmul": matmul, "tf32_api": tf32_api(),
            "cudnn_benchmark": bool(b.cudnn.benchmark)}


@register_backend
class TorchBackend(LatencyBackend):
    """Eager PyTorch (optionally channels_last, autocast, torch.compile, CUDA graphs)."""

    name = "torch"
    precisions = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "tf32", "fp16", "bf16")}
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

        details: dict[str, Any] = {"autocast": autocast, "memory_format": "channels_last"
                                   if options["channels_last"] else "contiguous"}
        if device != "cuda":
            _first_call(step)
            return Measurement(stats=time_callable(step, config), details=details,
                               output_fn=lambda: step().detach().clone())
        return _measure_cuda(step, dev, precision, config, options, details)

    def versions(self) -> dict[str, str]:
        v = {"torch": torch.__version__}
        if torch.cuda.is_available():
            v.update(cuda=str(torch.version.cuda), cudnn=str(torch.backends.cudnn.version()))
        return v


def _first_call(step: Callable[[], Any]) -> None:
    """The first call compiles and allocates; its errors surface here as one line."""
    try:
        step()
    except Exception as exc:  # noqa: BLE001 - compile/backend errors come in many types
        raise MeasurementError(f"torch backend: forward failed ({describe(exc)})") from None


def _measure_cuda(step: Callable[[], Any], dev: torch.device, precision: str, config: TimingConfig,
                  options: dict[str, Any], details: dict[str, Any]) -> Measurement:
    """First call, peak memory, optional CUDA graph and timing, all with this precision's TF32 setting and
    ``cudnn.benchmark`` on (restored afterwards); the settings in force go into ``details``."""
    skips = cudagraph_skips() if options["compile"] and options["cuda_graphs"] else None
    with tf32_mode(TF32.get(precision)), cudnn_benchmark(True):
        details.update(cuda_math_settings())
        _first_call(step)
        mem = cuda_peak_memory(step, dev)
        fn: Callable[[], Any] = step
        if options["cuda_graphs"] and not options["compile"]:
            fn = _capture_graph(step)
            details["cuda_graphs"] = True
        stats = time_callable(fn, config, timer=CudaEventTimer())
    notes: list[str] = []
    if skips is not None:  # reduce-overhead falls back to plain compiled code where a graph cannot be recorded
        details["cudagraph_skips"] = cudagraph_skips() - skips
        details["cuda_graphs"] = details["cudagraph_skips"] == 0
        notes = [cudagraph_note(details["cudagraph_skips"])] if details["cudagraph_skips"] else []

    def output() -> torch.Tensor:  # the timed callable (graph replay included) under the same settings
        with tf32_mode(TF32.get(precision)), cudnn_benchmark(True):
            out = fn().detach().clone()  # a graph's static output is overwritten by the next replay
            torch.cuda.synchronize()
        return out

    return Measurement(stats=stats, peak_mem_mb=mem.peak_mb, peak_mem_method=mem.method, details=details,
                       output_fn=output, notes=notes)


def cudagraph_note(skips: int) -> str:
    """The note for a compile=1,cuda_graphs=1 measurement that inductor ran without CUDA graphs."""
    return (f"inductor skipped CUDA graphs ({skips} time{'s' if skips > 1 else ''}; its warning says why): timed "
            "as compiled code without them")


def cudagraph_skips() -> int | None:
    """How often inductor has fallen back from CUDA graphs in this process (its ``cudagraph_skips`` counter, also
    logged as a warning with the cause), or None where this torch does not count them."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return None
    return int(counters["inductor"]["cudagraph_skips"])


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
